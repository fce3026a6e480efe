//! Patch position indices (App. C.3, design.md §5): evaluation takes the interval's mean bucket, training draws a
//! uniform bucket inside the interval, reproducibly per seed; non-patch and padding positions get none.

use gato_core::{EmbeddingMode, GatoConfig, Modality, PatchPosition, TokenBatch, PAD_ID};
use gato_cpu::CpuBackend;
use gato_embed::bucket_range;
use gato_embed::{PatchPositionEncoding, RandomInit};

fn batch() -> TokenBatch {
    // One sequence: 5 patches of a 1×5 image, a text token, then one padding position.
    let positions: Vec<PatchPosition> = (0..5)
        .map(|c| PatchPosition {
            row: 0,
            rows: 1,
            col: c,
            cols: 5,
        })
        .collect();
    let mut modality = vec![Modality::Image; 5];
    modality.push(Modality::Text);
    modality.push(Modality::Text);
    TokenBatch {
        batch: 1,
        seq_len: 7,
        lengths: vec![6],
        ids: vec![0, 1, 2, 3, 4, 7, 0],
        modality,
        local_position: vec![None; 7],
        loss: vec![false; 7],
        timestep: vec![0; 7],
        patches: vec![0.0; 5 * 16 * 16 * 3],
        patch_positions: positions,
    }
}

#[test]
fn eval_uses_the_mean_bucket_and_training_draws_inside_the_interval() {
    let be = CpuBackend::new(Some(1)).unwrap();
    let enc =
        PatchPositionEncoding::new(&mut RandomInit::new(&be, 0), &GatoConfig::tiny()).unwrap();
    let b = batch();
    let (rows, cols) = enc.indices(&b, EmbeddingMode::Eval);
    assert_eq!(
        &cols[..5],
        &[12, 38, 63, 89, 115],
        "design.md §5 example for 5 columns"
    );
    assert_eq!(&rows[..5], &[64; 5]);
    assert_eq!(&rows[5..], &[PAD_ID, PAD_ID]);
    assert_eq!(&cols[5..], &[PAD_ID, PAD_ID]);
    let mut seen = std::collections::HashSet::new();
    for seed in 0..50 {
        let (r, c) = enc.indices(&b, EmbeddingMode::Train { seed });
        assert_eq!(
            (r.clone(), c.clone()),
            enc.indices(&b, EmbeddingMode::Train { seed }),
            "same seed, same draws"
        );
        for k in 0..5 {
            let (lo, hi) = bucket_range(k as u32, 5, 128);
            assert!(
                (lo..hi).contains(&c[k]),
                "column {k}: {} not in [{lo}, {hi})",
                c[k]
            );
            assert!((0..128).contains(&r[k]));
        }
        seen.insert(c[0]);
    }
    assert!(
        seen.len() > 5,
        "training draws should vary across seeds: {seen:?}"
    );
}
