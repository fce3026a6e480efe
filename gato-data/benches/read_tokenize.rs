//! Read + tokenize throughput over the bundled episodes (`data/episodes`): open and validate each file, then
//! tokenize every episode. `cargo bench -p gato-data`. Throughput is reported in tokens; episodes/s is printed.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gato_core::GatoConfig;
use gato_data::EpisodeFile;

fn files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Open, validate and tokenize everything; returns (episodes, tokens).
fn read_and_tokenize(paths: &[std::path::PathBuf], config: &GatoConfig) -> (usize, usize) {
    let (mut eps, mut toks) = (0, 0);
    for p in paths {
        let f = EpisodeFile::open(p).unwrap();
        let b = f.builder(config, "bytes").unwrap();
        for i in 0..f.len() {
            toks += f.tokenize(i, &b).unwrap().len();
            eps += 1;
        }
    }
    (eps, toks)
}

fn bench(c: &mut Criterion) {
    let paths = files();
    let config = GatoConfig::small();
    let (eps, toks) = read_and_tokenize(&paths, &config);
    let t = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        black_box(read_and_tokenize(&paths, &config));
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "bundled data: {eps} episodes, {toks} tokens; {:.0} episodes/s, {:.2} M tokens/s",
        eps as f64 / s,
        toks as f64 / s / 1e6
    );
    let mut g = c.benchmark_group("episodes");
    g.sample_size(20);
    g.throughput(Throughput::Elements(toks as u64));
    g.bench_function(
        format!("read + validate + tokenize {eps} bundled episodes (elements = tokens)"),
        |b| b.iter(|| read_and_tokenize(black_box(&paths), &config)),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
