//! The CUDA kernels, run on the CPU. `kernels.cu` and `kernels_backward.cu` are compiled as C++20 against a host
//! emulation of the CUDA C they use (`tests/emulated/cuda_host.h`: one OS thread per CUDA thread, barriers for
//! `__syncthreads` and warp shuffles) and each training kernel is checked against gato-core's f64 reference,
//! launched with the grid, block and shared memory the backend uses. This is how the kernels' arithmetic, indexing,
//! tiling and synchronisation are tested on machines without a GPU; the conformance suite checks the whole
//! backend (launch code included) where one is present.
//!
//! Needs a C++20 compiler (`$CXX`, else `g++`). Without one each test prints that it skipped and why; CI sets
//! `GATO_REQUIRE_EMULATION=1`, which makes a missing compiler a failure.

use gato_core::reference::{self as r, attention_backward as ra};
use gato_core::testing::Rng;
use gato_core::AttentionSpec;

#[path = "emulated/harness.rs"]
mod harness;
use harness::{close, emu, wide, Args};

#[test]
fn attention_forward_lse_and_backward_match_the_reference() {
    let Some(e) = emu("attention_forward_lse_and_backward_match_the_reference") else {
        return;
    };
    // (batch, heads, tq, extra keys, d, dv, causal, padded): several tiles, a KV-cache offset, padding, a key
    // tile that no query sees, and a head wide enough for the 16-row tile.
    let cases = [
        (1, 1, 5, 0, 4, 3, true, false),
        (2, 2, 70, 3, 16, 9, true, true),
        (1, 2, 33, 0, 39, 33, false, false),
        (2, 1, 40, 5, 24, 17, false, true),
        (1, 1, 20, 2, 100, 64, true, false),
    ];
    let mut tiled = 0;
    for (seed, &(bs, h, tq, extra, d, dv, causal, padded)) in cases.iter().enumerate() {
        let mut rng = Rng::new(seed as u64 + 7);
        let tk = tq + extra;
        let kv_len: Vec<usize> = (0..bs)
            .map(|i| if padded { [tk / 2, 0, tk][i % 3] } else { tk })
            .collect();
        let spec = AttentionSpec {
            scale: 1.0 / (d as f32).sqrt(),
            causal,
            q_offset: extra,
            kv_len: padded.then(|| kv_len.clone()),
        };
        let mut q = rng.vec(bs * h * tq * d, -1.0, 1.0);
        let mut k = rng.vec(bs * h * tk * d, -1.0, 1.0);
        let mut v = rng.vec(bs * h * tk * dv, -1.0, 1.0);
        let mut g = rng.vec(bs * h * tq * dv, -1.0, 1.0);
        let rows = bs * h * tq;
        let (mut o, mut lse) = (vec![0f32; rows * dv], vec![0f32; rows]);
        let mut lens: Vec<i32> = kv_len.iter().map(|&x| x as i32).collect();
        let dims = (h as i32, tq as i32, tk as i32, d as i32, dv as i32);
        let (causal_i, off) = (i32::from(causal), extra as i32);
        let base = |a: Args, dims: (i32, i32, i32, i32, i32)| {
            a.val(dims.0)
                .val(dims.1)
                .val(dims.2)
                .val(dims.3)
                .val(dims.4)
        };
        let a = Args::default()
            .buf(&mut q)
            .buf(&mut k)
            .buf(&mut v)
            .buf(&mut o);
        let a = base(a, dims)
            .val(spec.scale)
            .val(causal_i)
            .val(off)
            .buf(&mut lens)
            .val(rows as i64)
            .buf(&mut lse);
        e.launch("attention_f32", (rows * 32).div_ceil(128), 128, 0, a);
        let all = [bs, h, tq, tk, d, dv];
        let wo = r::attention(&wide(&q), &wide(&k), &wide(&v), all, &spec);
        close("out", &o, &wo, 1e-5);
        let wl = ra::attention_lse(&wide(&q), &wide(&k), all, &spec);
        let same_lse = |what: &str, got: &[f32]| {
            for (i, (&x, &y)) in got.iter().zip(&wl).enumerate() {
                let same = (x as f64 == y) || (x as f64 - y).abs() <= 1e-5 * (1.0 + y.abs());
                assert!(same, "{what} lse[{i}] = {x}, reference {y}");
            }
        };
        same_lse("warp kernel", &lse);
        // The tiled forward, where the backend uses it (16 or more query rows), gives the same out and lse.
        if let Some((bt, smem)) = gato_cuda::attention_forward_plan(tq, d, dv) {
            let (mut o2, mut lse2) = (vec![0f32; rows * dv], vec![0f32; rows]);
            let a = Args::default()
                .buf(&mut q)
                .buf(&mut k)
                .buf(&mut v)
                .buf(&mut o2)
                .buf(&mut lse2);
            let a = base(a, dims)
                .val(spec.scale)
                .val(causal_i)
                .val(off)
                .buf(&mut lens)
                .val(bt as i32);
            e.launch(
                "attention_tiled_f32",
                bs * h * tq.div_ceil(bt),
                256,
                smem,
                a,
            );
            close(&format!("case {seed} tiled out"), &o2, &wo, 1e-5);
            same_lse("tiled kernel", &lse2);
            tiled += 1;
        }

        let mut delta = vec![0f32; rows];
        let a = Args::default()
            .buf(&mut o)
            .buf(&mut g)
            .buf(&mut delta)
            .val(rows as i64)
            .val(dv as i32);
        e.launch("attention_delta_f32", (rows * 32).div_ceil(128), 128, 0, a);
        let (bt, smem_kv, smem_q) = gato_cuda::attention_backward_plan(d, dv).unwrap();
        let (mut dq, mut dk, mut dvv) = (
            vec![0f32; q.len()],
            vec![0f32; k.len()],
            vec![0f32; v.len()],
        );
        let bwd = |a: Args| {
            base(a, dims)
                .val(spec.scale)
                .val(causal_i)
                .val(off)
                .val(lens.as_ptr() as *mut i32)
                .val(bt as i32)
        };
        let a = Args::default()
            .buf(&mut q)
            .buf(&mut k)
            .buf(&mut v)
            .buf(&mut g)
            .buf(&mut lse)
            .buf(&mut delta)
            .buf(&mut dk)
            .buf(&mut dvv);
        e.launch(
            "attention_bwd_dkdv_f32",
            bs * h * tk.div_ceil(bt),
            256,
            smem_kv,
            bwd(a),
        );
        let a = Args::default()
            .buf(&mut q)
            .buf(&mut k)
            .buf(&mut v)
            .buf(&mut g)
            .buf(&mut lse)
            .buf(&mut delta)
            .buf(&mut dq);
        e.launch(
            "attention_bwd_dq_f32",
            bs * h * tq.div_ceil(bt),
            256,
            smem_q,
            bwd(a),
        );
        let (wq, wk, wv) = ra::attention_backward(
            &wide(&q),
            &wide(&k),
            &wide(&v),
            &wo,
            &wl,
            &wide(&g),
            all,
            &spec,
        );
        let case = format!("case {seed}");
        close(&format!("{case} dq"), &dq, &wq, 1e-4);
        close(&format!("{case} dk"), &dk, &wk, 1e-4);
        close(&format!("{case} dv"), &dvv, &wv, 1e-4);
    }
    assert_eq!(
        tiled, 4,
        "the tiled forward ran on every case of 16 or more query rows"
    );
}
