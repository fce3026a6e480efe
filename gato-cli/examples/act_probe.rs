//! Where the time of one acting step goes (CPU, small): observation push, single-token pushes, logits.
use gato_core::{create_backend, BackendOptions, GatoConfig, Modality, TokenBatch};
use gato_transformer::{last_logits, single_token, DecodeState, GatoTransformer};
use std::time::Instant;
fn toks(n: usize, t0: u32) -> TokenBatch {
    TokenBatch {
        batch: 1,
        seq_len: n,
        lengths: vec![n],
        ids: (0..n as u32).map(|i| 32000 + i % 1000).collect(),
        modality: vec![Modality::Continuous; n],
        local_position: (0..n as u32).map(|i| Some(i % 40)).collect(),
        loss: vec![false; n],
        timestep: vec![t0; n],
        patches: vec![],
        patch_positions: vec![],
    }
}
fn main() {
    let be = create_backend("cpu", &BackendOptions::default()).unwrap();
    let m = GatoTransformer::init(be.as_ref(), &GatoConfig::small(), 0).unwrap();
    let mut st = DecodeState::new(&m);
    st.push(&m, be.as_ref(), &toks(300, 0)).unwrap();
    for k in 0..16 {
        let t = Instant::now();
        let h = st.push(&m, be.as_ref(), &toks(40, 20 + k)).unwrap();
        let a = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let _ = last_logits(&m, be.as_ref(), &h).unwrap();
        let b = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let _ = st
            .push(&m, be.as_ref(), &single_token(32001, 20 + k, None))
            .unwrap();
        let c = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let x = m
            .embed
            .forward(
                be.as_ref(),
                &single_token(32001, 20 + k, None),
                gato_core::EmbeddingMode::Eval,
            )
            .unwrap();
        let d = t.elapsed().as_secs_f64() * 1e3;
        drop(x);
        println!("obs push {a:.1} ms, logits {b:.1} ms, single-token push {c:.1} ms, embed only {d:.1} ms");
    }
}
