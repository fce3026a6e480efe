//! Data-parallel training on the CPU with the in-process communicator: two ranks, each stepping on its shard of
//! the global batch, take the same steps as one process accumulating the whole batch (up to the order of f32
//! sums), stay bit-identical to each other, and a checkpoint written by rank 0 resumes with another world size.

use std::path::Path;

use std::time::Duration;

use gato_core::{Backend, CollectiveOps, EmbeddingMode, GatoConfig, HostSlice, Shape, TokenBatch};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::{checkpoint, rendezvous, shard, Communicator, LocalGroup, Trainer};
use gato_transformer::{Dropout, GatoTransformer};

/// Four micro-batches of two sequences each from the bundled BabyAI episodes.
fn micro_batches(c: &GatoConfig) -> Vec<TokenBatch> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes/babyai.safetensors");
    let file = EpisodeFile::open(&path).unwrap();
    let builder = file.builder(c, "bytes").unwrap();
    let seqs: Vec<_> = (0..file.len())
        .map(|i| file.tokenize(i, &builder).unwrap())
        .collect();
    (0..4)
        .map(|k| to_batch(&[&seqs[(2 * k) % seqs.len()], &seqs[(2 * k + 1) % seqs.len()]]))
        .collect()
}

fn params(t: &Trainer, be: &dyn Backend) -> Vec<(String, Vec<f32>)> {
    t.params()
        .0
        .iter()
        .map(|(n, p)| (n.clone(), be.download(p).unwrap().into_f32().unwrap()))
        .collect()
}

fn max_rel(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    a.iter()
        .zip(b)
        // The key bias's gradient is exactly zero (it shifts a row's scores equally, which softmax ignores): both
        // runs hold rounding noise there, which AdamW's normalisation blows up to steps of the learning rate.
        .filter(|((n, _), _)| !n.ends_with("attn.k.bias"))
        .map(|((n, x), (m, y))| {
            assert_eq!(n, m);
            let d: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let s: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
            d / s.max(1e-30)
        })
        .fold(0.0, f64::max)
}

const STEPS: usize = 3;

#[test]
fn two_ranks_step_like_one_process_and_resume_with_another_world_size() {
    let be = gato_cpu::CpuBackend::new(Some(2)).unwrap();
    let c = GatoConfig::tiny();
    let batches = micro_batches(&c);
    let refs: Vec<&TokenBatch> = batches.iter().collect();
    let model = GatoTransformer::init(&be, &c, 0).unwrap();
    let mode = EmbeddingMode::Train { seed: 5 };
    let dropout = Dropout { rate: 0.1, seed: 9 };
    // One process, the whole global batch accumulated.
    let mut single = Trainer::new(&model, 10);
    let mut single_losses = Vec::new();
    for _ in 0..STEPS {
        single_losses.push(
            single
                .step_accumulated(&be, &refs, mode, dropout)
                .unwrap()
                .loss,
        );
    }
    // Two ranks, each its shard, in threads sharing an in-process communicator.
    let comms = LocalGroup::ranks(2);
    let results: Vec<(Trainer, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|comm| {
                let (be, model, refs) = (&be, &model, &refs);
                s.spawn(move || {
                    let mine = shard(refs, comm.rank(), comm.world_size()).unwrap();
                    let first = (comm.rank() * mine.len()) as u64;
                    let mut t = Trainer::new(model, 10);
                    let losses = (0..STEPS)
                        .map(|_| {
                            t.step_distributed(be, comm, mine, first, mode, dropout)
                                .unwrap()
                                .loss
                        })
                        .collect();
                    (t, losses)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (p0, p1) = (params(&results[0].0, &be), params(&results[1].0, &be));
    assert_eq!(p0, p1, "the ranks' parameters must stay bit-identical");
    assert_eq!(
        results[0].1, results[1].1,
        "every rank reports the global loss"
    );
    for (a, b) in results[0].1.iter().zip(&single_losses) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "loss {a} vs one process {b}"
        );
    }
    let rel = max_rel(&p0, &params(&single, &be));
    assert!(
        rel < 1e-5,
        "parameters differ from one process by {rel:e} (relative)"
    );

    // Rank 0's checkpoint resumes in one process (world size 1) and steps like the single run.
    let dir = std::env::temp_dir().join(format!("gato-dp-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    checkpoint::save(
        &results[0].0,
        &be,
        &dir,
        gato_transformer::atomic_dir::Overwrite::Refuse,
    )
    .unwrap();
    let mut resumed = checkpoint::load(&dir, &be, 10).unwrap();
    assert_eq!(resumed.steps(), STEPS);
    let one = LocalGroup::ranks(1);
    let r = resumed
        .step_distributed(&be, &one[0], &refs, 0, mode, dropout)
        .unwrap();
    let s = single.step_accumulated(&be, &refs, mode, dropout).unwrap();
    assert!(
        (r.loss - s.loss).abs() <= 1e-5 * s.loss,
        "{} vs {}",
        r.loss,
        s.loss
    );
    assert!(max_rel(&params(&resumed, &be), &params(&single, &be)) < 1e-5);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shards_are_disjoint_and_cover_the_batch() {
    let items: Vec<usize> = (0..12).collect();
    for w in [1, 2, 3, 4, 6, 12] {
        let mut all: Vec<usize> = (0..w)
            .flat_map(|r| shard(&items, r, w).unwrap().to_vec())
            .collect();
        all.sort();
        assert_eq!(all, items, "world size {w}");
    }
    let e = shard(&items, 0, 5).unwrap_err().to_string();
    assert!(e.contains("12 micro-batches over 5 ranks"), "{e}");
    assert!(shard(&items, 3, 3).is_err());
    assert!(shard(&items, 0, 0).is_err());
}

#[test]
fn the_local_all_reduce_sums_over_ranks_and_rejects_mismatched_buffers() {
    let cpu = gato_cpu::CpuBackend::new(Some(1)).unwrap();
    let be: &dyn Backend = &cpu;
    let comms = LocalGroup::ranks(3);
    let out: Vec<(Vec<f32>, Vec<f64>)> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let r = c.rank() as f32;
                    let mut a = be
                        .upload(HostSlice::F32(&[r, 10.0 * r, 1.0]), &Shape::from([3]))
                        .unwrap();
                    let before = a.clone();
                    c.all_reduce_sum(be, &mut a).unwrap();
                    // Copy-on-write: the old handle keeps this rank's values.
                    assert_eq!(
                        be.download(&before).unwrap().into_f32().unwrap()[1],
                        10.0 * r
                    );
                    let mut b = vec![r as f64 + 0.5];
                    c.all_reduce_sum_f64(&mut b).unwrap();
                    (be.download(&a).unwrap().into_f32().unwrap(), b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, b) in &out {
        assert_eq!(a, &vec![3.0, 30.0, 3.0]);
        assert_eq!(b, &vec![4.5]);
    }
    let comms = LocalGroup::ranks(2);
    let errs: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .map(|c| s.spawn(move || c.all_reduce_host(&mut vec![0.0; 2 + c.rank()]).is_err()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(errs, vec![true, true]);
}

#[test]
fn ranks_meet_through_a_rendezvous_file() {
    let dir = std::env::temp_dir().join(format!("gato-rendezvous-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("group.id");
    let start = std::time::SystemTime::now() - Duration::from_secs(1);
    let id: Vec<u8> = (0..128).map(|i| (i * 7) as u8).collect();
    // Rank 1 starts first and waits; rank 0 writes; both end with rank 0's id.
    let got = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            rendezvous(
                &file,
                1,
                || panic!("only rank 0 makes the id"),
                start,
                Duration::from_secs(20),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        let made = rendezvous(&file, 0, || Ok(id.clone()), start, Duration::from_secs(20)).unwrap();
        (made, waiter.join().unwrap().unwrap())
    });
    assert_eq!(got.0, id);
    assert_eq!(got.1, id);
    // A file from before this run is stale: a rank other than 0 waits for a new one and says why it gave up.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let e = rendezvous(
        &file,
        2,
        || unreachable!(),
        later,
        Duration::from_millis(200),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rank 2") && e.contains("no group id from rank 0"),
        "{e}"
    );
    // A corrupt file is an error naming it.
    std::fs::write(&file, "not hex\n").unwrap();
    let e = rendezvous(&file, 1, || unreachable!(), start, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a hex group id") && e.contains("group.id"),
        "{e}"
    );
    // A backend without collectives says so (data parallel across processes needs NCCL).
    let be = gato_cpu::CpuBackend::new(Some(1)).unwrap();
    let e = be.collective_id().unwrap_err().to_string();
    assert!(e.contains("NCCL"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
