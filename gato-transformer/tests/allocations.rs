//! What decoding one token allocates, counted by a global allocator (its own test binary, so no other test's
//! allocations mix in). Guards the KV cache against copying itself per token: a decoded token may allocate its
//! own activations, never a buffer the size of the cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gato_core::cpu::CpuBackend;
use gato_core::GatoConfig;
use gato_transformer::{last_logits_in, single_token, DecodeState, GatoTransformer};

struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_decoded_token_allocates_its_activations_not_the_cache() {
    let c = GatoConfig::tiny();
    let be = CpuBackend::new(Some(2)).unwrap();
    let model = GatoTransformer::init(&be, &c, 0).unwrap();
    let mut state = DecodeState::new(&model);
    // 300 cached tokens; then decode 20 more, as acting does (legal-id logits, push_last).
    let prompt: Vec<_> = (0..300u32)
        .map(|i| single_token(32000 + i % 1024, i / 10, None))
        .collect();
    for t in &prompt {
        state.push_last(&model, &be, t).unwrap();
    }
    let h = state
        .push_last(&model, &be, &single_token(32000, 30, None))
        .unwrap();
    last_logits_in(&model, &be, &h, 32000..33024).unwrap(); // warm the output-row cache
    let (calls0, bytes0) = (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    LARGEST.store(0, Ordering::Relaxed);
    let n = 20;
    let mut h = h;
    for i in 0..n {
        let logits = last_logits_in(&model, &be, &h, 32000..33024).unwrap();
        assert_eq!(logits.len(), 1024);
        h = state
            .push_last(&model, &be, &single_token(32000 + i, 31, None))
            .unwrap();
    }
    let calls = (CALLS.load(Ordering::Relaxed) - calls0) / n as usize;
    let bytes = (BYTES.load(Ordering::Relaxed) - bytes0) / n as usize;
    let largest = LARGEST.load(Ordering::Relaxed);
    // One layer's cached keys (or values): heads · kv · 4 bytes per token.
    let cache_layer_bytes = c.attention_width() * 4 * state.len();
    eprintln!(
        "per decoded token ({} cached): {calls} allocations, {bytes} bytes, largest {largest} bytes; \
         one layer's cached keys: {cache_layer_bytes} bytes",
        state.len()
    );
    assert!(
        largest < cache_layer_bytes / 2,
        "a {largest}-byte allocation per token: something copies the KV cache ({cache_layer_bytes} bytes per layer)"
    );
    assert!(
        bytes < 2 * cache_layer_bytes,
        "{bytes} bytes allocated per token"
    );
}
