//! What acting allocates, counted by a global allocator (its own test binary, one test, so no other test's
//! allocations mix in).
//!
//! The per-token acting loop — logits of the legal ids into a reused vector, sampling, pushing the sampled token —
//! must allocate nothing once warm (issue 7): the CPU backend recycles its output buffers, shapes are inline,
//! scratch space is kept per thread. An observation pushed as a batch may allocate (its token batch, attention
//! tiles), but never a buffer the size of the KV cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gato_core::{run_scoped, DType, GatoConfig, MatmulPrecision, Modality, TokenBatch};
use gato_cpu::CpuBackend;
use gato_transformer::{
    last_logits_in_into, single_token, ActionSampler, DecodeState, GatoTransformer, Sampling,
};

struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f`, and the largest one.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    let before = CALLS.load(Ordering::Relaxed);
    let out = f();
    (
        out,
        CALLS.load(Ordering::Relaxed) - before,
        LARGEST.load(Ordering::Relaxed),
    )
}

/// `n` continuous-observation tokens of timestep `t` followed by the separator, as one batch.
fn observation(n: usize, t: u32) -> TokenBatch {
    let mut b = single_token(32000, t, Some(0));
    b.ids.clear();
    b.modality.clear();
    b.local_position.clear();
    b.loss.clear();
    b.timestep.clear();
    for i in 0..=n {
        let sep = i == n;
        b.ids.push(if sep {
            33024
        } else {
            32000 + (i as u32 * 37) % 1024
        });
        b.modality.push(if sep {
            Modality::Separator
        } else {
            Modality::Continuous
        });
        b.local_position.push((!sep).then_some(i as u32));
        b.loss.push(false);
        b.timestep.push(t);
    }
    b.seq_len = n + 1;
    b.lengths = vec![n + 1];
    b
}

#[test]
fn the_per_token_acting_loop_allocates_nothing() {
    let c = GatoConfig::tiny();
    let be = CpuBackend::new(Some(2)).unwrap();
    // Weight layouts acting may use: as initialised (f32), and cast to 16 bits and laid out as `gato act` does.
    // bf16 weights also laid out for bf16 products (the `vdpbf16ps` kernel where the CPU has it).
    for (dtype, pack) in [
        (DType::F32, None),
        (DType::F32, Some(MatmulPrecision::F32)),
        (DType::BF16, Some(MatmulPrecision::F32)),
        (DType::BF16, Some(MatmulPrecision::Bf16)),
        (DType::F16, None),
    ] {
        let mut model = GatoTransformer::init(&be, &c, 0).unwrap();
        model.cast_block_weights(&be, dtype).unwrap();
        if let Some(precision) = pack {
            assert!(model.pack_block_weights(&be, precision).unwrap());
        }
        let pack = pack.map_or("no".to_string(), |p| format!("for {p} products"));
        let mut state = DecodeState::new(&model);
        let mut sampler = ActionSampler::new(Sampling::Temperature(1.0), 7).unwrap();
        let mut logits = Vec::new();
        let legal = 32000..33024;
        // Six timesteps of 39 observations + separator + 4 actions (264 tokens) warm the backend's buffers and
        // every worker's thread-local scratch: three from outside the backend's scope (each op picks a worker) and
        // three inside it, as `gato act` runs every step (the scratch of the thread that calls the kernels).
        let mut step = |t: u32| -> gato_core::Result<()> {
            let mut h = state.push_last(&model, &be, &observation(39, t))?;
            for _ in 0..4 {
                last_logits_in_into(&model, &be, &h, legal.clone(), &mut logits)?;
                let id = sampler.sample_in(&logits, legal.start)?;
                h = state.push_token(&model, &be, id, t, None)?;
            }
            Ok(())
        };
        for t in 0..3u32 {
            step(t).unwrap();
        }
        run_scoped(&be, || (3..6u32).try_for_each(&mut step)).unwrap();
        // One more observation, counted: it may allocate, never a cache-sized buffer.
        // One layer's key buffer: the context window's slots (a decode state reserves them) of `heads · kv` f32s.
        let cache_buffer_bytes = c.attention_width() * 4 * c.token_sequence_length;
        let (obs_h, obs_calls, obs_largest) =
            counted(|| state.push_last(&model, &be, &observation(39, 6)).unwrap());
        assert!(
            obs_largest < cache_buffer_bytes,
            "{dtype} laid out: {pack}: an observation made a {obs_largest}-byte allocation; one layer's key buffer \
             is {cache_buffer_bytes} bytes (is the cache copied?)"
        );
        // The per-token loop, counted over 40 tokens.
        let tokens = 40;
        let mut h = obs_h;
        // Inside the backend's scope, as `gato act` runs it: a call from outside the backend's threads hands its
        // job to rayon, whose queue allocates a block every 63 hand-offs.
        let ((), calls, largest) = run_scoped(&be, || {
            Ok(counted(|| {
                for i in 0..tokens {
                    last_logits_in_into(&model, &be, &h, legal.clone(), &mut logits).unwrap();
                    let id = sampler.sample_in(&logits, legal.start).unwrap();
                    h = state.push_token(&model, &be, id, 6, Some(i % 4)).unwrap();
                }
            }))
        })
        .unwrap();
        eprintln!(
            "{dtype} weights, laid out: {pack}: {calls} allocations in {tokens} decoded tokens (largest {largest} \
             bytes); the observation before them: {obs_calls} allocations, largest {obs_largest} bytes; \
             pooled buffers (held, free): {:?}",
            be.pooled_buffers()
        );
        assert_eq!(
            calls, 0,
            "{dtype} weights, laid out: {pack}: the acting loop allocated {calls} times in {tokens} tokens \
             (largest {largest} bytes)"
        );
        assert_eq!(logits.len(), 1024);
    }
    // The kernel width is chosen once per process: on an AVX-512 machine the AVX2 kernels (what a machine
    // without AVX-512 runs) are checked by running this test again in a child process with them forced.
    if cfg!(target_arch = "x86_64") && std::env::var_os("GATO_NO_AVX512").is_none() {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_per_token_acting_loop_allocates_nothing",
                "--nocapture",
            ])
            .env("GATO_NO_AVX512", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&child.stderr);
        for line in err.lines().filter(|l| l.contains("allocations in")) {
            eprintln!("AVX2 kernels: {line}");
        }
        assert!(
            child.status.success(),
            "with the AVX2 kernels (GATO_NO_AVX512=1):\n{err}"
        );
    }
}
