//! The elementwise, embedding, loss, optimiser and forward CUDA kernels on the CPU under the host emulation (see
//! `emulated_attention.rs`), against the f64 reference.

use gato_core::reference as r;
use gato_core::testing::Rng;
use gato_core::{AdamWStep, Conv2dSpec, UnaryOp};

#[path = "emulated/harness.rs"]
mod harness;
use harness::{close, emu, grid, wide, Args, PAD};

#[test]
fn elementwise_embedding_and_loss_backward_match_the_reference() {
    let Some(e) = emu("elementwise_embedding_and_loss_backward_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(11);
    let n = 1000;
    let (mut x, mut dy) = (rng.vec(n, -4.0, 4.0), rng.vec(n, -1.0, 1.0));
    for (code, op) in [
        (0, UnaryOp::Gelu),
        (1, UnaryOp::Relu),
        (2, UnaryOp::Exp),
        (3, UnaryOp::Tanh),
        (4, UnaryOp::Neg),
    ] {
        let mut dx = vec![0f32; n];
        let a = Args::default()
            .buf(&mut x)
            .buf(&mut dy)
            .buf(&mut dx)
            .val(n as i64)
            .val(code);
        e.launch("unary_backward_f32", grid(n), 256, 0, a);
        close(
            &format!("{op:?} backward"),
            &dx,
            &r::backward::unary_backward(op, &wide(&x), &wide(&dy)),
            1e-5,
        );
    }
    let (rows, f) = (10usize, 50usize);
    let mut gx = rng.vec(rows * 2 * f, -3.0, 3.0);
    let mut gdy = rng.vec(rows * f, -1.0, 1.0);
    let mut gdx = vec![0f32; rows * 2 * f];
    let a = Args::default()
        .buf(&mut gx)
        .buf(&mut gdy)
        .buf(&mut gdx)
        .val(rows as i64)
        .val(f as i64);
    e.launch("geglu_backward_f32", grid(rows * f), 256, 0, a);
    close(
        "geglu backward",
        &gdx,
        &r::backward::geglu_backward(&wide(&gx), f, &wide(&gdy)),
        1e-5,
    );

    // Embedding backward: repeated ids accumulate in position order (so the bits are those of a sequential f32
    // sum), PAD adds nothing, an id past the vocabulary is flagged.
    let (vocab, d) = (7usize, 5usize);
    let ids: Vec<u32> = vec![3, 1, 3, PAD, 6, 3, 0, 1];
    let edy = rng.vec(ids.len() * d, -1.0, 1.0);
    let (table, bad) = embedding_backward(e, &ids, &edy, vocab, d);
    close(
        "embedding backward",
        &table,
        &r::backward::embedding_backward(&ids, &wide(&edy), vocab, d),
        1e-5,
    );
    for v in 0..vocab {
        for j in 0..d {
            let sequential = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id as usize == v)
                .fold(0f32, |s, (i, _)| s + edy[i * d + j]);
            assert_eq!(
                table[v * d + j].to_bits(),
                sequential.to_bits(),
                "row {v} col {j}: not position order"
            );
        }
    }
    assert_eq!(bad, 0, "valid ids were flagged");
    // A vocabulary wider than the scan's 1024 threads and many repeats: the chunked scan and the ranks hold.
    let (vocab_l, d_l, n_l) = (5000usize, 3usize, 2000usize);
    let ids_l: Vec<u32> = (0..n_l)
        .map(|_| match rng.below(10) {
            0 => PAD,
            1..=4 => rng.below(8) as u32,
            _ => rng.below(vocab_l) as u32,
        })
        .collect();
    let dy_l = rng.vec(n_l * d_l, -1.0, 1.0);
    let (table_l, bad_l) = embedding_backward(e, &ids_l, &dy_l, vocab_l, d_l);
    close(
        "embedding backward (5000 ids)",
        &table_l,
        &r::backward::embedding_backward(&ids_l, &wide(&dy_l), vocab_l, d_l),
        1e-5,
    );
    assert_eq!(bad_l, 0);
    let (_, bad) = embedding_backward(e, &[1, 9, 2], &edy[..3 * d], vocab, d);
    assert_eq!(bad, 3 - 1, "the flag encodes n − (first bad position)");

    // Cross-entropy with a padded row, against the reference's loss and gradient.
    let (rows, v) = (6usize, 300usize);
    let mut logits = rng.vec(rows * v, -5.0, 5.0);
    let mut targets: Vec<u32> = vec![0, 299, PAD, 17, 150, 3];
    let scale = 1.0 / 5.0f32;
    let (mut dl, mut row_loss, mut loss) = (vec![0f32; rows * v], vec![0f32; rows], vec![0f32]);
    let mut flag = vec![0u64];
    let a = Args::default()
        .buf(&mut logits)
        .buf(&mut targets)
        .buf(&mut dl)
        .buf(&mut row_loss)
        .val(rows as i64)
        .val(v as i32)
        .val(scale)
        .buf(&mut flag);
    e.launch("cross_entropy_f32", rows, 256, 0, a);
    let a = Args::default()
        .buf(&mut row_loss)
        .buf(&mut loss)
        .val(rows as i64)
        .val(scale);
    e.launch("scaled_sum_f32", 1, 256, 0, a);
    let (wl, wd) = r::backward::cross_entropy(&wide(&logits), v, &targets, scale as f64);
    close("loss", &loss, &[wl], 1e-5);
    close("dlogits", &dl, &wd, 1e-5);
    assert_eq!(flag[0], 0);
}

#[test]
fn sum_of_squares_and_adamw_match_the_reference() {
    let Some(e) = emu("sum_of_squares_and_adamw_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(13);
    // Two tensors' partials into one buffer, then one sum: the global norm's path.
    let (mut a1, mut a2) = (rng.vec(5000, -1.0, 1.0), rng.vec(37, -3.0, 3.0));
    let mut partials = vec![0f64; 128];
    for (i, x) in [&mut a1, &mut a2].into_iter().enumerate() {
        let n = x.len();
        let blocks = n.div_ceil(256).min(64);
        let part_ptr = partials[i * 64..].as_mut_ptr();
        let a = Args::default().buf(x).val(n as i64).val(part_ptr);
        e.launch("sum_squares_partial_f32", blocks, 256, 0, a);
    }
    let mut total = vec![0f64];
    let a = Args::default()
        .buf(&mut partials)
        .buf(&mut total)
        .val(128i64);
    e.launch("sum_f64", 1, 256, 0, a);
    let want: f64 = wide(&a1).iter().chain(&wide(&a2)).map(|x| x * x).sum();
    assert!(
        (total[0] - want).abs() <= 1e-12 * want,
        "{} vs {want}",
        total[0]
    );

    let n = 3000;
    let (mut p, mut g, mut m) = (
        rng.vec(n, -1.0, 1.0),
        rng.vec(n, -0.1, 0.1),
        rng.vec(n, -0.01, 0.01),
    );
    let mut v = rng.vec(n, 0.0, 1e-4);
    let s = AdamWStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        t: 17,
        grad_scale: 0.6,
    };
    let (wp, wm, wv) = r::optim::adamw(&s, &wide(&p), &wide(&g), &wide(&m), &wide(&v));
    let k = s.constants();
    let a = Args::default()
        .buf(&mut p)
        .buf(&mut g)
        .buf(&mut m)
        .buf(&mut v)
        .val(n as i64)
        .val(k.scale)
        .val(k.decay)
        .val(k.b1)
        .val(k.one_minus_b1)
        .val(k.b2)
        .val(k.one_minus_b2)
        .val(k.step_size)
        .val(k.inv_sqrt_c2)
        .val(k.eps);
    e.launch("adamw_f32", grid(n), 256, 0, a);
    close("param", &p, &wp, 1e-5);
    close("m", &m, &wm, 1e-7);
    close("v", &v, &wv, 1e-9);

    // The clipped step: the factor from the squared norm on the device, nothing written when the norm or the
    // loss is not finite, and the two numbers packed for one read-back.
    let max_norm = 0.5f64;
    let g_sum: f64 = wide(&g).iter().map(|x| x * x).sum();
    let clipped = AdamWStep {
        grad_scale: gato_core::clip_scale(g_sum.sqrt(), max_norm),
        ..s
    };
    assert!(clipped.grad_scale < 1.0, "the case must clip");
    for (norm_sq, loss, applied) in [
        (g_sum, 2.5f32, true),
        (f64::NAN, 2.5, false),
        (g_sum, f32::INFINITY, false),
    ] {
        let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
        let (mut ns, mut l) = (vec![norm_sq], vec![loss]);
        let a = Args::default()
            .buf(&mut p2)
            .buf(&mut g)
            .buf(&mut m2)
            .buf(&mut v2)
            .val(n as i64)
            .val(k.decay)
            .val(k.b1)
            .val(k.one_minus_b1)
            .val(k.b2)
            .val(k.one_minus_b2)
            .val(k.step_size)
            .val(k.inv_sqrt_c2)
            .val(k.eps)
            .buf(&mut ns)
            .buf(&mut l)
            .val(max_norm);
        e.launch("adamw_clipped_f32", grid(n), 256, 0, a);
        if applied {
            let (wp, wm, wv) =
                r::optim::adamw(&clipped, &wide(&p), &wide(&g), &wide(&m), &wide(&v));
            close("clipped param", &p2, &wp, 1e-5);
            close("clipped m", &m2, &wm, 1e-7);
            close("clipped v", &v2, &wv, 1e-9);
        } else {
            assert!(
                p2 == p && m2 == m && v2 == v,
                "a non-finite step ({norm_sq}, {loss}) wrote"
            );
        }
        let mut out = vec![0f64; 2];
        let a = Args::default().buf(&mut l).buf(&mut ns).buf(&mut out);
        e.launch("pack_loss_norm", 1, 32, 0, a);
        assert_eq!(out[0], loss as f64);
        assert!(out[1] == norm_sq || (out[1].is_nan() && norm_sq.is_nan()));
    }
}

#[test]
fn forward_kernels_match_the_reference() {
    let Some(e) = emu("forward_kernels_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(17);
    // Softmax and log-softmax over rows wider than a block.
    let (rows, d) = (4usize, 700usize);
    let mut x = rng.vec(rows * d, -6.0, 6.0);
    for log in [0i32, 1] {
        let mut y = vec![0f32; rows * d];
        let a = Args::default()
            .buf(&mut x)
            .buf(&mut y)
            .val(rows as i64)
            .val(d as i32)
            .val(log);
        e.launch("softmax_f32", rows, 256, 0, a);
        close(
            &format!("softmax (log {log})"),
            &y,
            &r::softmax(&wide(&x), d, log == 1),
            1e-5,
        );
    }
    // Broadcast binary ops and GEGLU.
    let (n, inner) = (600usize, 30usize);
    let (mut a0, mut b0) = (rng.vec(n, -2.0, 2.0), rng.vec(inner, 0.5, 2.0));
    for (code, op) in [
        (0, gato_core::BinaryOp::Add),
        (2, gato_core::BinaryOp::Mul),
        (3, gato_core::BinaryOp::Div),
    ] {
        let mut y = vec![0f32; n];
        let a = Args::default()
            .buf(&mut a0)
            .buf(&mut b0)
            .buf(&mut y)
            .val(n as i64)
            .val(inner as i64)
            .val(code);
        e.launch("binary_f32", grid(n), 256, 0, a);
        let bb: Vec<f64> = (0..n).map(|i| b0[i % inner] as f64).collect();
        close(
            &format!("{op:?}"),
            &y,
            &r::binary(op, &wide(&a0), &bb),
            1e-6,
        );
    }
    let (gr, gf) = (5usize, 40usize);
    let mut gx = rng.vec(gr * 2 * gf, -3.0, 3.0);
    let mut gy = vec![0f32; gr * gf];
    let a = Args::default()
        .buf(&mut gx)
        .buf(&mut gy)
        .val(gr as i64)
        .val(gf as i64);
    e.launch("geglu_f32", grid(gr * gf), 256, 0, a);
    close("geglu", &gy, &r::geglu(&wide(&gx), gf), 1e-5);
    // Embedding gather: PAD gathers zeros, a bad id gathers zeros and is flagged.
    let (vocab, ed) = (9usize, 6usize);
    let mut table = rng.vec(vocab * ed, -1.0, 1.0);
    let mut ids: Vec<u32> = vec![8, 0, PAD, 3, 3];
    let mut y = vec![1f32; ids.len() * ed];
    let mut bad = vec![0u64];
    let a = Args::default()
        .buf(&mut table)
        .buf(&mut ids)
        .buf(&mut y)
        .val(ids.len() as i64)
        .val(ed as i32)
        .val(vocab as u32)
        .buf(&mut bad);
    e.launch("embedding_f32", grid(ids.len() * ed), 256, 0, a);
    close("embedding", &y, &r::embedding(&wide(&table), ed, &ids), 0.0);
    assert_eq!(bad[0], 0);
    // Convolution forward through im2col (the product on the host, as cuBLAS orders it) and the bias.
    let (c, hh, ww, o, k) = (3usize, 6usize, 5usize, 4usize, 3usize);
    let spec = Conv2dSpec {
        stride: 2,
        padding: 1,
    };
    let (oh, ow) = ((hh + 2 - k) / 2 + 1, (ww + 2 - k) / 2 + 1);
    let (p, ck) = (oh * ow, c * k * k);
    let mut img = rng.vec(c * hh * ww, -1.0, 1.0);
    let (w, bias) = (rng.vec(o * ck, -1.0, 1.0), rng.vec(o, -1.0, 1.0));
    let mut cols = vec![0f32; ck * p];
    let mut a = Args::default().buf(&mut img).buf(&mut cols);
    for v in [c, hh, ww, k, k, oh, ow, 2, 1] {
        a = a.val(v as i32);
    }
    e.launch("im2col_f32", grid(ck * p), 256, 0, a);
    let mut out: Vec<f32> = (0..o * p)
        .map(|i| {
            (0..ck)
                .map(|kk| w[(i / p) * ck + kk] * cols[kk * p + i % p])
                .sum()
        })
        .collect();
    let mut bias_buf = bias.clone();
    let a = Args::default()
        .buf(&mut out)
        .buf(&mut bias_buf)
        .val((o * p) as i64)
        .val(o as i32)
        .val(p as i64);
    e.launch("add_channel_bias_f32", grid(o * p), 256, 0, a);
    let (want, _) = r::conv2d(
        &wide(&img),
        [1, c, hh, ww],
        &wide(&w),
        [o, c, k, k],
        Some(&wide(&bias)),
        &spec,
    );
    close("conv2d", &out, &want, 1e-5);
    // Casts round to nearest even and back.
    let mut f = vec![1.0f32, -2.5, 3.140625, 65504.0, 1e-3, 0.0];
    let (mut h, mut back) = (vec![0u16; f.len()], vec![0f32; f.len()]);
    for (to, from, lib) in [
        ("f32_to_bf16", "bf16_to_f32", 0),
        ("f32_to_f16", "f16_to_f32", 1),
    ] {
        let a = Args::default().buf(&mut f).buf(&mut h).val(f.len() as i64);
        e.launch(to, 1, 256, 0, a);
        let a = Args::default()
            .buf(&mut h)
            .buf(&mut back)
            .val(f.len() as i64);
        e.launch(from, 1, 256, 0, a);
        for (i, (&x, &y)) in f.iter().zip(&back).enumerate() {
            let want = if lib == 0 {
                half::bf16::from_f32(x).to_f32()
            } else {
                half::f16::from_f32(x).to_f32()
            };
            assert_eq!(y, want, "{to}/{from}[{i}] of {x}");
        }
    }
}

/// The layout kernels behind slice, concat and permute, with the metadata the backend builds.
#[test]
fn layout_kernels_match_the_reference() {
    let Some(e) = emu("layout_kernels_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(19);
    // Permute [2, 3, 4, 5] by (2, 0, 3, 1): meta = [rank, out dims, input strides of the out axes].
    let (dims, perm) = ([2usize, 3, 4, 5], [2usize, 0, 3, 1]);
    let n: usize = dims.iter().product();
    let mut x = rng.vec(n, -1.0, 1.0);
    let strides = [60i64, 20, 5, 1];
    let mut meta = vec![4i64];
    meta.extend(perm.iter().map(|&p| dims[p] as i64));
    meta.extend(perm.iter().map(|&p| strides[p]));
    let mut y = vec![0f32; n];
    let a = Args::default()
        .buf(&mut x)
        .buf(&mut y)
        .val(n as i64)
        .buf(&mut meta);
    e.launch("permute_f32", grid(n), 256, 0, a);
    let (want, _) = r::permute(&wide(&x), &dims, &perm);
    close("permute", &y, &want, 0.0);
    // A strided block copy: columns 2..5 of a [6, 7] matrix into columns 1..4 of a [6, 5] one (slice + concat).
    let mut src = rng.vec(6 * 7, -1.0, 1.0);
    let mut dst = vec![9f32; 6 * 5];
    let a = Args::default()
        .buf(&mut src)
        .buf(&mut dst)
        .val(6i64)
        .val(7i64)
        .val(2i64)
        .val(5i64)
        .val(1i64)
        .val(3i64);
    e.launch("block_copy_f32", grid(18), 256, 0, a);
    for r in 0..6 {
        for c in 0..5 {
            let want = if (1..4).contains(&c) {
                src[r * 7 + c + 1]
            } else {
                9.0
            };
            assert_eq!(dst[r * 5 + c], want, "block copy [{r}, {c}]");
        }
    }
}

/// The four launches of the CUDA backend's deterministic embedding backward: `(table gradient, bad-id flag)`.
fn embedding_backward(
    e: &harness::Emu,
    ids: &[u32],
    dy: &[f32],
    vocab: usize,
    d: usize,
) -> (Vec<f32>, u64) {
    let n = ids.len();
    let (mut ids, mut dy) = (ids.to_vec(), dy.to_vec());
    let (mut rank, mut counts, mut offsets, mut order) = (
        vec![0i32; n],
        vec![0i32; vocab],
        vec![0i32; vocab + 1],
        vec![0i32; n],
    );
    let (mut out, mut bad) = (vec![0f32; vocab * d], vec![0u64]);
    let a = Args::default()
        .buf(&mut ids)
        .buf(&mut rank)
        .buf(&mut counts)
        .val(n as i64)
        .val(vocab as u32)
        .buf(&mut bad);
    e.launch("embedding_rank_u32", grid(n), 256, 0, a);
    let a = Args::default()
        .buf(&mut counts)
        .buf(&mut offsets)
        .val(vocab as i32);
    e.launch("exclusive_scan_i32", 1, 1024, 0, a);
    let a = Args::default()
        .buf(&mut ids)
        .buf(&mut rank)
        .buf(&mut offsets)
        .buf(&mut order)
        .val(n as i64);
    e.launch("embedding_order_u32", grid(n), 256, 0, a);
    let a = Args::default()
        .buf(&mut dy)
        .buf(&mut offsets)
        .buf(&mut order)
        .buf(&mut out)
        .val(d as i32);
    e.launch("embedding_gather_grad_f32", vocab, 256, 0, a);
    (out, bad[0])
}
