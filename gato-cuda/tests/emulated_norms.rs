//! The norms' and the convolution's CUDA kernels on the CPU under the host emulation (see `emulated_attention.rs`),
//! against the f64 reference.

use gato_core::reference::{self as r, patch_backward as rp};
use gato_core::testing::Rng;
use gato_core::Conv2dSpec;

#[path = "emulated/harness.rs"]
mod harness;
use harness::{close, emu, grid, wide, Args};

#[test]
fn layer_norm_statistics_and_backward_match_the_reference() {
    let Some(e) = emu("layer_norm_statistics_and_backward_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(3);
    for (rows, d) in [(1, 1), (7, 33), (40, 300)] {
        let (mut x, mut gamma, mut beta) = (
            rng.vec(rows * d, -2.0, 2.0),
            rng.vec(d, 0.5, 1.5),
            rng.vec(d, -0.5, 0.5),
        );
        let mut dy = rng.vec(rows * d, -1.0, 1.0);
        let (mut y, mut mean, mut rstd) =
            (vec![0f32; rows * d], vec![0f32; rows], vec![0f32; rows]);
        let a = Args::default()
            .buf(&mut x)
            .buf(&mut gamma)
            .buf(&mut beta)
            .buf(&mut y)
            .buf(&mut mean)
            .buf(&mut rstd)
            .val(rows as i64)
            .val(d as i32)
            .val(1e-5f32);
        e.launch("layer_norm_f32", rows, 256, 0, a);
        let (wm, wr) = r::backward::layer_norm_stats(&wide(&x), d, 1e-5);
        close("mean", &mean, &wm, 1e-5);
        close("rstd", &rstd, &wr, 1e-4);
        close(
            "y",
            &y,
            &r::layer_norm(&wide(&x), d, &wide(&gamma), &wide(&beta), 1e-5),
            1e-4,
        );
        let (mut dx, mut dyx) = (vec![0f32; rows * d], vec![0f32; rows * d]);
        let a = Args::default()
            .buf(&mut dy)
            .buf(&mut x)
            .buf(&mut gamma)
            .buf(&mut mean)
            .buf(&mut rstd)
            .buf(&mut dx)
            .buf(&mut dyx)
            .val(rows as i64)
            .val(d as i32);
        e.launch("layer_norm_backward_f32", rows, 256, 0, a);
        let (mut dg, mut db) = (vec![0f32; d], vec![0f32; d]);
        for (src, out) in [(&mut dyx, &mut dg), (&mut dy, &mut db)] {
            let a = Args::default()
                .buf(src)
                .buf(out)
                .val(rows as i64)
                .val(d as i32);
            e.launch("sum_rows_f32", d.div_ceil(32), 256, 0, a);
        }
        let (wx, wg, wb) =
            r::backward::layer_norm_backward(&wide(&x), d, &wide(&gamma), &wm, &wr, &wide(&dy));
        close("dx", &dx, &wx, 1e-4);
        close("dgamma", &dg, &wg, 1e-4);
        close("dbeta", &db, &wb, 1e-5);
    }
}

#[test]
fn group_norm_and_convolution_backward_match_the_reference() {
    let Some(e) = emu("group_norm_and_convolution_backward_match_the_reference") else {
        return;
    };
    let mut rng = Rng::new(5);
    // GroupNorm [N, C, H, W] with 2 groups.
    let (n, c, hh, ww, groups) = (2usize, 6usize, 5usize, 4usize, 2usize);
    let hw = hh * ww;
    let dims = [n, c, hh, ww];
    let (mut x, mut gamma, mut beta) = (
        rng.vec(n * c * hw, -2.0, 2.0),
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.5, 0.5),
    );
    let mut dy = rng.vec(n * c * hw, -1.0, 1.0);
    let (mut y, mut mean, mut rstd) = (
        vec![0f32; x.len()],
        vec![0f32; n * groups],
        vec![0f32; n * groups],
    );
    let a = Args::default()
        .buf(&mut x)
        .buf(&mut gamma)
        .buf(&mut beta)
        .buf(&mut y)
        .buf(&mut mean)
        .buf(&mut rstd)
        .val(groups as i32)
        .val((c / groups) as i32)
        .val(hw as i64)
        .val(1e-5f32);
    e.launch("group_norm_f32", n * groups, 256, 0, a);
    let (wm, wr) = rp::group_norm_stats(&wide(&x), &dims, groups, 1e-5);
    close("gn mean", &mean, &wm, 1e-5);
    close("gn rstd", &rstd, &wr, 1e-4);
    let (mut dx, mut dyx) = (vec![0f32; x.len()], vec![0f32; x.len()]);
    let a = Args::default()
        .buf(&mut dy)
        .buf(&mut x)
        .buf(&mut gamma)
        .buf(&mut mean)
        .buf(&mut rstd)
        .buf(&mut dx)
        .buf(&mut dyx)
        .val(groups as i32)
        .val((c / groups) as i32)
        .val(hw as i64);
    e.launch("group_norm_backward_f32", n * groups, 256, 0, a);
    let (mut dg, mut db) = (vec![0f32; c], vec![0f32; c]);
    for (src, out) in [(&mut dyx, &mut dg), (&mut dy, &mut db)] {
        let a = Args::default()
            .buf(src)
            .buf(out)
            .val(n as i64)
            .val(c as i32)
            .val(hw as i64);
        e.launch("channel_sum_f32", c, 256, 0, a);
    }
    let (wx, wg, wb) = rp::group_norm_backward(
        &wide(&x),
        &dims,
        groups,
        &wide(&gamma),
        &wm,
        &wr,
        &wide(&dy),
    );
    close("gn dx", &dx, &wx, 1e-4);
    close("gn dgamma", &dg, &wg, 1e-4);
    close("gn dbeta", &db, &wb, 1e-5);

    // Convolution dx through col2im (the products, cuBLAS on a GPU, are done here on the host as the backend
    // orders them), stride 2 and padding 1 so pixels are read by several, one or no windows.
    let (o, kh, kw) = (3usize, 3usize, 3usize);
    let spec = Conv2dSpec {
        stride: 2,
        padding: 1,
    };
    let (oh, ow) = ((hh + 2 - kh) / 2 + 1, (ww + 2 - kw) / 2 + 1);
    let (p, ck, img) = (oh * ow, c * kh * kw, c * hw);
    let w = rng.vec(o * ck, -1.0, 1.0);
    let dyc = rng.vec(n * o * p, -1.0, 1.0);
    let mut dxc = vec![0f32; n * img];
    for i in 0..n {
        // dcols [CK, P] = Wᵀ · dy_i.
        let mut dcols = vec![0f32; ck * p];
        for kk in 0..ck {
            for pp in 0..p {
                dcols[kk * p + pp] = (0..o)
                    .map(|oo| w[oo * ck + kk] * dyc[(i * o + oo) * p + pp])
                    .sum();
            }
        }
        let mut out = vec![0f32; img];
        let mut a = Args::default().buf(&mut dcols).buf(&mut out);
        for v in [c, hh, ww, kh, kw, oh, ow, 2, 1] {
            a = a.val(v as i32);
        }
        e.launch("col2im_f32", grid(img), 256, 0, a);
        dxc[i * img..(i + 1) * img].copy_from_slice(&out);
    }
    let (wdx, _, _) = rp::conv2d_backward(
        &wide(&x),
        dims,
        &wide(&w),
        [o, c, kh, kw],
        &wide(&dyc),
        &spec,
    );
    close("conv dx", &dxc, &wdx, 1e-5);
}
