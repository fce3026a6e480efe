//! Tokenizer throughput, single thread, each beside a simple ceiling. `cargo bench -p gato-tokenizers`.
//!
//! - continuous: 1M values through mu-law + bins; ceiling: copying 1M f32 (memcpy);
//! - images: a 224×224×3 u8 image and a batch of 32 84×84×4 frames (padded to 96×96) into normalised f32 patches;
//!   ceiling: memcpy of the f32 patch bytes written;
//! - text: the byte tokenizer and, when `tools/setup-sentencepiece.sh` has run, the 32000-piece SentencePiece model.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gato_core::{GatoConfig, Tokenizer};
use gato_tokenizers::{
    ByteTokenizer, ContinuousValueTokenizer, ImagePatchTokenizer, ImageRef, Padding, Pixels,
};

fn continuous(c: &mut Criterion) {
    let t = ContinuousValueTokenizer::new(&GatoConfig::small()).unwrap();
    let n = 1_000_000;
    let values: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 50.0).collect();
    let mut out = Vec::with_capacity(n);
    let mut g = c.benchmark_group("continuous");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("mu-law encode 1M values", |b| {
        b.iter(|| {
            out.clear();
            t.encode_into("x", black_box(&values), true, &mut out)
                .unwrap();
        })
    });
    g.bench_function("clip+bin encode 1M values (no mu-law)", |b| {
        b.iter(|| {
            out.clear();
            t.encode_into("x", black_box(&values), false, &mut out)
                .unwrap();
        })
    });
    let mut copy = vec![0f32; n];
    g.bench_function("ceiling: memcpy 1M f32", |b| {
        b.iter(|| copy.copy_from_slice(black_box(&values)))
    });
    g.finish();
}

fn images(c: &mut Criterion) {
    let t = ImagePatchTokenizer::with_patch_size(16);
    let mut g = c.benchmark_group("patches");
    let big: Vec<u8> = (0..224 * 224 * 3).map(|i| (i * 31 % 251) as u8).collect();
    let img = ImageRef {
        pixels: Pixels::U8(&big),
        height: 224,
        width: 224,
        channels: 3,
    };
    let mut out = Vec::with_capacity(big.len());
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("224x224x3 u8 (bytes = input pixels)", |b| {
        b.iter(|| {
            out.clear();
            t.patchify_into("img", black_box(&img), Padding::Reject, &mut out)
                .unwrap();
        })
    });
    let mut dst = vec![0f32; big.len()];
    let src = vec![0.5f32; big.len()];
    g.bench_function("ceiling: memcpy of the f32 output of 224x224x3", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });

    let frames: Vec<Vec<u8>> = (0..32)
        .map(|k| {
            (0..84 * 84 * 4)
                .map(|i| ((i + k) * 17 % 253) as u8)
                .collect()
        })
        .collect();
    g.throughput(Throughput::Bytes((32 * 84 * 84 * 4) as u64));
    g.bench_function(
        "32 frames 84x84x4 u8, padded to 96x96 (bytes = input pixels)",
        |b| {
            b.iter(|| {
                out.clear();
                for f in &frames {
                    let img = ImageRef {
                        pixels: Pixels::U8(f),
                        height: 84,
                        width: 84,
                        channels: 4,
                    };
                    t.patchify_into("frame", black_box(&img), Padding::Zero, &mut out)
                        .unwrap();
                }
            })
        },
    );
    g.finish();
}

fn text(c: &mut Criterion) {
    let line = "go to the red ball, then pick up the blue key and open the yellow door. ";
    let corpus: String = line.repeat(1400); // ≈ 100 KB
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Bytes(corpus.len() as u64));
    g.bench_function("bytes tokenizer 100KB", |b| {
        b.iter(|| ByteTokenizer.encode(black_box(&corpus)).unwrap())
    });
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/sentencepiece/tokenizer.model");
    match gato_tokenizers::SentencePieceTokenizer::load(&model) {
        Ok(sp) => {
            g.bench_function("sentencepiece 32000 pieces 100KB", |b| {
                b.iter(|| sp.encode(black_box(&corpus)).unwrap())
            });
        }
        Err(e) => eprintln!("SKIPPED sentencepiece bench: {e}; run tools/setup-sentencepiece.sh"),
    }
    g.finish();
}

criterion_group!(benches, continuous, images, text);
criterion_main!(benches);
