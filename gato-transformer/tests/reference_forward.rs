//! The whole `tiny` forward against a naive f64 reference written here, llm.c style: every parameter is
//! downloaded, and the embedding sum, the ResNet patch block, each decoder block (LayerNorm, Q/K/V/O, causal
//! attention, GELU FFN) and the tied logits are recomputed in f64 with plain loops (via gato-core's f64 reference
//! ops, which share no code with any backend). The bar: norm-wise relative error < 1e-5 in f32.

mod common;

use std::collections::HashMap;

use gato_core::reference as r;
use gato_core::{AttentionSpec, Backend, MatmulSpec, Modality, TokenBatch, UnaryOp};
use gato_transformer::GatoTransformer;

#[derive(Clone)]
struct Ref {
    p: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Ref {
    fn new(model: &GatoTransformer, be: &dyn Backend) -> Self {
        let p = model
            .parameters()
            .into_iter()
            .map(|(n, t)| {
                (
                    n,
                    (t.dims().to_vec(), be.download(&t).unwrap().to_f64_vec()),
                )
            })
            .collect();
        Ref { p }
    }
    fn w(&self, n: &str) -> &[f64] {
        &self.p[n].1
    }
    fn shape(&self, n: &str) -> &[usize] {
        &self.p[n].0
    }
    fn linear(&self, x: &[f64], rows: usize, name: &str) -> Vec<f64> {
        let s = self.shape(&format!("{name}.weight"));
        let (y, _) = r::matmul(
            x,
            &[rows, s[0]],
            self.w(&format!("{name}.weight")),
            s,
            &MatmulSpec::default(),
        );
        r::binary(
            gato_core::BinaryOp::Add,
            &y,
            self.w(&format!("{name}.bias")),
        )
    }
    fn ln(&self, x: &[f64], d: usize, name: &str) -> Vec<f64> {
        r::layer_norm(
            x,
            d,
            self.w(&format!("{name}.weight")),
            self.w(&format!("{name}.bias")),
            1e-5,
        )
    }
}

/// Eval-mode bucket of interval `i` of `n` over 128 buckets, from design.md §5 written out.
fn bucket(i: u32, n: u32) -> usize {
    let lo = 128 * i / n;
    let hi = (128 * (i + 1) / n).min(128).max(lo + 1);
    ((lo + hi) / 2) as usize
}

/// The patch embedding (App. C.2) of every patch of `b`, `[patches, width]`, in f64.
fn reference_patch_embeddings(rf: &Ref, c: &gato_core::GatoConfig, b: &TokenBatch) -> Vec<f64> {
    let (p, ch, cin) = (
        c.img_patch_size,
        c.patch_embedding_channels,
        c.image_channels,
    );
    // Patch embeddings, one patch at a time: [P,P,C] → NCHW → stem → res block(s) → flatten → linear.
    let plen = p * p * cin;
    let mut patch_emb = Vec::new();
    for k in 0..b.patch_positions.len() {
        let hwc = &b.patches[k * plen..(k + 1) * plen];
        let mut x = vec![0.0; plen];
        for y in 0..p {
            for xx in 0..p {
                for cc in 0..cin {
                    x[(cc * p + y) * p + xx] = hwc[(y * p + xx) * cin + cc] as f64;
                }
            }
        }
        let (mut h, _) = r::conv2d(
            &x,
            [1, cin, p, p],
            rf.w("embed.patch.stem.weight"),
            [ch, cin, 1, 1],
            Some(rf.w("embed.patch.stem.bias")),
            &Default::default(),
        );
        for i in 0..c.num_res_blocks {
            let pre = format!("embed.patch.blocks.{i}");
            let gn = |x: &[f64], n: &str| {
                r::group_norm(
                    x,
                    &[1, ch, p, p],
                    c.num_group_norm_groups,
                    rf.w(&format!("{pre}.{n}.weight")),
                    rf.w(&format!("{pre}.{n}.bias")),
                    1e-5,
                )
            };
            let conv = |x: &[f64], n: &str| {
                r::conv2d(
                    x,
                    [1, ch, p, p],
                    rf.w(&format!("{pre}.{n}.weight")),
                    [ch, ch, 3, 3],
                    Some(rf.w(&format!("{pre}.{n}.bias"))),
                    &gato_core::Conv2dSpec {
                        stride: 1,
                        padding: 1,
                    },
                )
                .0
            };
            let a = conv(&r::unary(UnaryOp::Gelu, &gn(&h, "norm1")), "conv1");
            let a = conv(&r::unary(UnaryOp::Gelu, &gn(&a, "norm2")), "conv2");
            h = h.iter().zip(&a).map(|(x, y)| x + y).collect();
        }
        patch_emb.extend(rf.linear(&h, 1, "embed.patch.proj"));
    }
    patch_emb
}

/// The input embedding of every position of `b`, `[B·T, width]`: the sum of the contributions (paper §2.2).
fn reference_embeddings(rf: &Ref, c: &gato_core::GatoConfig, b: &TokenBatch) -> Vec<f64> {
    let (w, t_len) = (c.layer_width, b.seq_len);
    let patch_emb = reference_patch_embeddings(rf, c, b);
    // Input embedding: the sum of contributions, position by position.
    let n = b.batch * t_len;
    let mut x = vec![0.0; n * w];
    for i in 0..n {
        let (bi, t) = (i / t_len, i % t_len);
        if t >= b.lengths[bi] {
            continue;
        }
        let row = &mut x[i * w..(i + 1) * w];
        let add = |row: &mut [f64], src: &[f64], r: usize| {
            row.iter_mut()
                .zip(&src[r * w..(r + 1) * w])
                .for_each(|(a, b)| *a += b)
        };
        if b.modality[i] == Modality::Image {
            let k = b.ids[i] as usize;
            add(row, &patch_emb, k);
            let pp = b.patch_positions[k];
            add(
                row,
                rf.w("embed.patch_position.rows"),
                bucket(pp.row, pp.rows),
            );
            add(
                row,
                rf.w("embed.patch_position.cols"),
                bucket(pp.col, pp.cols),
            );
        } else {
            add(row, rf.w("embed.tokens"), b.ids[i] as usize);
        }
        if let Some(l) = b.local_position[i] {
            add(row, rf.w("embed.local_position"), l as usize);
        }
    }
    x
}

/// The final hidden states `[B·T, width]` of the f64 reference forward.
fn reference_hidden(rf: &Ref, c: &gato_core::GatoConfig, b: &TokenBatch) -> Vec<f64> {
    let (w, t_len) = (c.layer_width, b.seq_len);
    let n = b.batch * t_len;
    let mut x = reference_embeddings(rf, c, b);
    // Decoder blocks.
    let (h, k) = (c.num_attention_heads, c.key_value_size);
    for blk in 0..c.num_transformer_blocks {
        let pre = format!("blocks.{blk}");
        let a_in = rf.ln(&x, w, &format!("{pre}.ln1"));
        let split = |y: Vec<f64>| -> Vec<f64> {
            // [B, T, H, K] → [B, H, T, K]
            let mut out = vec![0.0; y.len()];
            for bi in 0..b.batch {
                for t in 0..t_len {
                    for hh in 0..h {
                        for kk in 0..k {
                            out[((bi * h + hh) * t_len + t) * k + kk] =
                                y[((bi * t_len + t) * h + hh) * k + kk];
                        }
                    }
                }
            }
            out
        };
        let q = split(rf.linear(&a_in, n, &format!("{pre}.attn.q")));
        let kk_ = split(rf.linear(&a_in, n, &format!("{pre}.attn.k")));
        let v = split(rf.linear(&a_in, n, &format!("{pre}.attn.v")));
        let spec = AttentionSpec {
            scale: 1.0 / (k as f32).sqrt(),
            causal: true,
            q_offset: 0,
            kv_len: Some(b.lengths.clone()),
        };
        let att = r::attention(&q, &kk_, &v, [b.batch, h, t_len, t_len, k, k], &spec);
        let mut merged = vec![0.0; att.len()];
        for bi in 0..b.batch {
            for hh in 0..h {
                for t in 0..t_len {
                    for kk in 0..k {
                        merged[((bi * t_len + t) * h + hh) * k + kk] =
                            att[((bi * h + hh) * t_len + t) * k + kk];
                    }
                }
            }
        }
        let o = rf.linear(&merged, n, &format!("{pre}.attn.o"));
        x = x.iter().zip(&o).map(|(a, b)| a + b).collect();
        let f_in = rf.ln(&x, w, &format!("{pre}.ln2"));
        let f = r::unary(UnaryOp::Gelu, &rf.linear(&f_in, n, &format!("{pre}.ff.in")));
        let f = rf.linear(&f, n, &format!("{pre}.ff.out"));
        x = x.iter().zip(&f).map(|(a, b)| a + b).collect();
    }
    rf.ln(&x, w, "final_ln")
}

fn reference_logits(rf: &Ref, c: &gato_core::GatoConfig, b: &TokenBatch) -> Vec<f64> {
    let (w, n) = (c.layer_width, b.batch * b.seq_len);
    let hfin = reference_hidden(rf, c, b);
    let table = rf.w("embed.tokens");
    let vocab = rf.shape("embed.tokens")[0];
    r::matmul(&hfin, &[n, w], table, &[vocab, w], &MatmulSpec::nt()).0
}

/// The model's input embedding of `batch` (evaluation mode), downloaded.
fn embedded(model: &GatoTransformer, be: &dyn Backend, batch: &TokenBatch) -> Vec<f64> {
    let e = model
        .embed
        .forward(be, batch, gato_core::EmbeddingMode::Eval)
        .unwrap();
    be.download(&e).unwrap().to_f64_vec()
}

fn rel_err(got: &[f64], want: &[f64], mask: impl Fn(usize) -> bool, v: usize) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if mask(i / v) {
            num += (g - w) * (g - w);
            den += w * w;
        }
    }
    (num / den).sqrt()
}

#[test]
fn tiny_forward_matches_f64_reference() {
    let c = common::config();
    let be = common::backend(2);
    let model = GatoTransformer::init(be.as_ref(), &c, 7).unwrap();
    let (a, b) = (common::episode(&c, 1, 3), common::episode(&c, 2, 2));
    let batch = common::batch_of(&[&a, &b]);
    let got = be
        .download(&model.forward(be.as_ref(), &batch).unwrap())
        .unwrap()
        .to_f64_vec();
    let want = reference_logits(&Ref::new(&model, be.as_ref()), &c, &batch);
    let v = 33025;
    let real = |pos: usize| (pos % batch.seq_len) < batch.lengths[pos / batch.seq_len];
    let err = rel_err(&got, &want, real, v);
    println!("relative error of tiny logits vs f64 reference: {err:.3e}");
    assert!(err < 1e-5, "relative error {err:.3e}");
}

#[test]
fn embedding_sum_matches_reference() {
    // The same check at the input: the embedding sum alone (no blocks), so a failure points at the embeddings.
    let mut c = common::config();
    c.num_transformer_blocks = 1;
    let be = common::backend(1);
    let model = GatoTransformer::init(be.as_ref(), &c, 3).unwrap();
    let seq = common::episode(&c, 5, 2);
    let batch = common::batch_of(&[&seq]);
    let got = embedded(&model, be.as_ref(), &batch);
    // Reference with zero blocks: reuse the full reference on a config with no blocks is not possible (blocks ≥ 1),
    // so compare against the sum computed from the same formula via a 1-block model's embedding stage.
    let rf = Ref::new(&model, be.as_ref());
    let w = c.layer_width;
    for (i, &tok) in batch.ids.iter().enumerate() {
        if batch.modality[i] == Modality::Image {
            continue;
        }
        let mut want: Vec<f64> =
            rf.w("embed.tokens")[tok as usize * w..(tok as usize + 1) * w].to_vec();
        if let Some(l) = batch.local_position[i] {
            want.iter_mut()
                .zip(&rf.w("embed.local_position")[l as usize * w..(l as usize + 1) * w])
                .for_each(|(a, b)| *a += b);
        }
        let g = &got[i * w..(i + 1) * w];
        let err = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "position {i}: {err}");
    }
}

/// The image positions of the input embedding (ResNet patch embedding + patch positions + local positions) match
/// the f64 reference as closely as an f32 product of their length can: GroupNorm's statistics are summed pairwise
/// (`docs/design.md` §10). On two real Breakout frames the error was 5.1e-6 with a sequential f32 sum and is
/// 1.5e-6 now, where the rest is the 4096-long sums of the patch projection (exact GroupNorm statistics in f64
/// gave 1.45e-6).
#[test]
fn patch_embeddings_match_reference() {
    let c = common::config();
    let be = common::backend(1);
    let model = GatoTransformer::init(be.as_ref(), &c, 11).unwrap();
    // Real frames: Breakout's large flat areas give the stem's output a mean far from zero, where a sequential
    // f32 sum of a group's 4096 values loses the most.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/episodes/breakout.safetensors"
    );
    let file = gato_data::EpisodeFile::open(std::path::Path::new(path)).unwrap();
    let builder = file.builder(&c, "bytes").unwrap();
    let steps = file.timesteps(0).unwrap();
    let seq = builder.episode(&steps[..2]).unwrap();
    let batch = common::batch_of(&[&seq]);
    let got = embedded(&model, be.as_ref(), &batch);
    let want = reference_embeddings(&Ref::new(&model, be.as_ref()), &c, &batch);
    let image = |pos: usize| batch.modality[pos] == Modality::Image;
    assert!(
        batch.modality.contains(&Modality::Image),
        "the episode has image patches"
    );
    let err = rel_err(&got, &want, image, c.layer_width);
    let other = rel_err(
        &got,
        &want,
        |pos| !image(pos) && pos < batch.lengths[0],
        c.layer_width,
    );
    println!("relative error of the input embedding vs f64: image positions {err:.3e}, others {other:.3e}");
    assert!(err < 2.5e-6, "image positions: relative error {err:.3e}");
}

/// The masked mean negative log-likelihood of the f64 reference forward (the same targets as the model's loss:
/// text and action tokens after the first position; the logits at `t − 1` predict the token at `t`).
fn reference_loss(rf: &Ref, c: &gato_core::GatoConfig, b: &TokenBatch) -> f64 {
    let (hfin, w) = (reference_hidden(rf, c, b), c.layer_width);
    let table = rf.w("embed.tokens");
    let mut nll = Vec::new();
    for bi in 0..b.batch {
        for t in 1..b.lengths[bi] {
            let i = bi * b.seq_len + t;
            if b.loss[i] && b.modality[i] != Modality::Image {
                // Logits only where a target is predicted.
                let h = &hfin[(i - 1) * w..i * w];
                let row: Vec<f64> = table
                    .chunks(w)
                    .map(|e| e.iter().zip(h).map(|(a, b)| a * b).sum())
                    .collect();
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                nll.push(lse - row[b.ids[i] as usize]);
            }
        }
    }
    nll.iter().sum::<f64>() / nll.len() as f64
}

/// The model's backward (every layer, llm.c style, on a batch with text, image patches, discrete and continuous
/// values, two sequences of different lengths) against the f64 reference forward: for each parameter tensor, the
/// directional derivative of the reference loss along a random direction (central differences in f64) equals
/// `⟨gradient, direction⟩`, and the loss itself matches.
#[test]
fn gradients_match_directional_derivatives_of_the_f64_reference() {
    let c = common::config();
    let be = common::backend(2);
    let model = GatoTransformer::init(be.as_ref(), &c, 5).unwrap();
    let (a, b2) = (common::episode(&c, 3, 2), common::episode(&c, 4, 1));
    let batch = common::batch_of(&[&a, &b2]);
    let (report, grads) = model
        .loss_and_gradients(be.as_ref(), &batch, gato_core::EmbeddingMode::Eval)
        .unwrap();
    let rf = Ref::new(&model, be.as_ref());
    let want = reference_loss(&rf, &c, &batch);
    assert!(
        (report.loss - want).abs() < 1e-5 * want.abs(),
        "loss {} vs reference {want}",
        report.loss
    );
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut checked = 0;
    for (name, t) in model.parameters() {
        let g: Vec<f64> = match grads.get(&name) {
            Some(g) => be.download(g).unwrap().to_f64_vec(),
            None => vec![0.0; t.elem_count()],
        };
        let dir: Vec<f64> = (0..g.len())
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
        let h = 1e-4;
        let shifted = |sign: f64| {
            let mut r = rf.clone();
            let p = &mut r.p.get_mut(&name).unwrap().1;
            p.iter_mut().zip(&dir).for_each(|(x, d)| *x += sign * h * d);
            reference_loss(&r, &c, &batch)
        };
        let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let tol = 2e-3 * fd.abs().max(analytic.abs()) + 1e-6;
        assert!(
            (fd - analytic).abs() <= tol,
            "{name}: directional derivative {fd:.6e} (f64 reference), gradient gives {analytic:.6e}"
        );
        checked += 1;
    }
    assert_eq!(checked, model.parameters().len());
}
