//! The CUDA kernels, run on the CPU. `kernels.cu` and `kernels_backward.cu` are compiled as C++20 against a host
//! emulation of the CUDA C they use (`tests/emulated/cuda_host.h`: one OS thread per CUDA thread, barriers for
//! `__syncthreads` and warp shuffles) and each training kernel is checked against gato-core's f64 reference,
//! launched with the grid, block and shared memory the backend uses. This is how the kernels' arithmetic, indexing,
//! tiling and synchronisation are tested on machines without a GPU; the conformance suite checks the whole
//! backend (launch code included) where one is present.
//!
//! Needs a C++20 compiler (`$CXX`, else `g++`). Without one each test prints that it skipped and why; CI sets
//! `GATO_REQUIRE_EMULATION=1`, which makes a missing compiler a failure.

use std::ffi::{c_void, CString};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use gato_core::reference::{self as r, attention_backward as ra, patch_backward as rp};
use gato_core::testing::Rng;
use gato_core::{AdamWStep, AttentionSpec, Conv2dSpec, UnaryOp};

const PAD: u32 = u32::MAX;

/// The emulated kernels, compiled once per test binary.
struct Emu {
    lib: libloading::Library,
}

type Launch = unsafe extern "C" fn(*const i8, u32, u32, u32, *mut *mut c_void) -> i32;

fn build() -> Result<Emu, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gato-cuda-emulated");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/emulated");
    let harness = std::fs::read_to_string(here.join("harness.cpp")).map_err(|e| e.to_string())?;
    let src = dir.join("kernels_host.cpp");
    std::fs::write(&src, format!("{}\n{harness}", gato_cuda::KERNELS))
        .map_err(|e| e.to_string())?;
    let lib = dir.join(format!("libgato_emulated_{}.so", std::process::id()));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let out = std::process::Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-shared",
            "-fPIC",
            "-pthread",
            "-include",
        ])
        .arg(here.join("cuda_host.h"))
        .arg(&src)
        .arg("-o")
        .arg(&lib)
        .output()
        .map_err(|e| format!("cannot run the C++ compiler `{cxx}`: {e}"))?;
    if !out.status.success() {
        // A compiler that runs but rejects the kernels is a failure, not a skip.
        panic!(
            "`{cxx}` rejected the emulated kernels:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // SAFETY: the library was just built from the kernels and the harness; loading runs no foreign initialiser
    // beyond C++ static construction of the kernel table.
    let lib = unsafe { libloading::Library::new(&lib) }.map_err(|e| e.to_string())?;
    Ok(Emu { lib })
}

/// The emulator, or why it cannot run (printed as a skip).
fn emu(test: &str) -> Option<&'static Emu> {
    static EMU: OnceLock<Result<Emu, String>> = OnceLock::new();
    match EMU.get_or_init(build) {
        Ok(e) => Some(e),
        Err(why) => {
            if std::env::var_os("GATO_REQUIRE_EMULATION").is_some() {
                panic!("{why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// A kernel's arguments in `cuLaunchKernel`'s convention: each boxed so its address is stable.
#[derive(Default)]
struct Args {
    held: Vec<Box<dyn std::any::Any>>,
    ptrs: Vec<*mut c_void>,
}

impl Args {
    fn val<T: 'static>(mut self, v: T) -> Self {
        let mut b = Box::new(v);
        self.ptrs.push(&mut *b as *mut T as *mut c_void);
        self.held.push(b);
        self
    }
    /// A buffer's address (the kernel reads or writes through it).
    fn buf<T: 'static>(self, v: &mut [T]) -> Self {
        self.val(v.as_mut_ptr())
    }
}

impl Emu {
    fn launch(&self, name: &str, grid: usize, block: usize, smem: usize, mut args: Args) {
        // SAFETY: `emu_launch` has this signature (harness.cpp).
        let f: libloading::Symbol<Launch> = unsafe { self.lib.get(b"emu_launch") }.unwrap();
        let c = CString::new(name).unwrap();
        // SAFETY: the arguments match the kernel's parameters (each test mirrors the backend's launch), and every
        // buffer is sized for the indices the kernel computes from them.
        let rc = unsafe {
            f(
                c.as_ptr(),
                grid as u32,
                block as u32,
                smem as u32,
                args.ptrs.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "no kernel named {name}");
    }
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `got` within `rel` of `want` (relative to `1 + |want|`), naming the first element that is not.
fn close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= rel * (1.0 + w.abs()),
            "{what}[{i}] = {g}, reference {w}"
        );
    }
}

fn grid(n: usize) -> usize {
    n.div_ceil(256).clamp(1, 65_535 * 8)
}

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

    // Embedding scatter-add: repeated ids accumulate, PAD adds nothing, an id past the vocabulary is flagged.
    let (vocab, d) = (7usize, 5usize);
    let mut ids: Vec<u32> = vec![3, 1, 3, PAD, 6, 3, 0, 1];
    let mut edy = rng.vec(ids.len() * d, -1.0, 1.0);
    let mut table = vec![0f32; vocab * d];
    let mut bad = vec![0u64];
    let a = Args::default()
        .buf(&mut ids)
        .buf(&mut edy)
        .buf(&mut table)
        .val(ids.len() as i64)
        .val(d as i32)
        .val(vocab as u32)
        .buf(&mut bad);
    e.launch("embedding_backward_f32", grid(ids.len() * d), 256, 0, a);
    close(
        "embedding backward",
        &table,
        &r::backward::embedding_backward(&ids, &wide(&edy), vocab, d),
        1e-5,
    );
    assert_eq!(bad[0], 0, "valid ids were flagged");
    let mut bad_ids: Vec<u32> = vec![1, 9, 2];
    let mut table = vec![0f32; vocab * d];
    let a = Args::default()
        .buf(&mut bad_ids)
        .buf(&mut edy)
        .buf(&mut table)
        .val(3i64)
        .val(d as i32)
        .val(vocab as u32)
        .buf(&mut bad);
    e.launch("embedding_backward_f32", grid(3 * d), 256, 0, a);
    assert_eq!(bad[0], 3 - 1, "the flag encodes n − (first bad position)");

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
