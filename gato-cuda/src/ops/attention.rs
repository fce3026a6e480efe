//! Softmax, attention and the loss ([`gato_core::AttentionOps`]). Causal attention is one fused kernel with an
//! online softmax that also keeps each row's log-sum-exp: tiled (a block per 32 or 16 query rows, K and V staged
//! in shared memory once per tile) for full sequences, one warp per query row for decoding's few rows; its backward is flash-style
//! (`kernels_backward.cu`): the row term `Σ dO·O`, then dK/dV per key tile and dQ per query tile, each
//! recomputing its scores from Q, K and the saved log-sum-exp in shared-memory tiles, so no `T × T` matrix and
//! no float atomics. The cross-entropy is one fused kernel per row, its loss reduced on the device.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use gato_core::ops::AttentionDims;
use gato_core::{ops, AttentionOps, AttentionSpec, Error, Result, Shape, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

/// Threads of a backward attention block (`ATT_BWD_THREADS` in the kernels) and accumulators per thread
/// (`ATT_BWD_ACC`): a tile of `BT` rows of width `w` needs `BT · w ≤ 256 · 8`.
const BWD_THREADS: usize = 256;
const BWD_ACC: usize = 8;

/// The backward's tile size for head sizes `d` (keys) and `dv` (values): 32 rows up to 64 wide, 16 up to 128.
/// Wider heads are refused (Gato's are 64; `docs/design.md` §6).
pub(crate) fn backward_tile(d: usize, dv: usize) -> Result<usize> {
    let w = d.max(dv);
    let bt = if w <= 64 { 32 } else { 16 };
    if bt * w > BWD_THREADS * BWD_ACC {
        return Err(Error::shape(
            "attention_backward",
            format!("head size {w} exceeds the CUDA backward kernel's 128"),
        ));
    }
    Ok(bt)
}

/// Dynamic shared memory, in floats, of the dK/dV kernel and of the dQ kernel for tile `bt`.
pub(crate) fn backward_smem(bt: usize, d: usize, dv: usize) -> (usize, usize) {
    let staged = 2 * bt * (d + 1) + 2 * bt * (dv + 1) + 2 * bt;
    (staged + 2 * bt * bt, staged + bt * bt)
}

/// The tiled forward kernel's plan for `tq` query rows of key size `d` and value size `dv`: `Some((tile, dynamic
/// shared memory in bytes))` when it applies — at least 16 query rows (a full sequence in training or a prompt;
/// decoding's single rows keep the warp-per-row kernel) and heads no wider than 128 — else `None`. Public for the
/// same reason as [`attention_backward_plan`].
pub fn attention_forward_plan(tq: usize, d: usize, dv: usize) -> Option<(usize, usize)> {
    if tq < 16 {
        return None;
    }
    let bt = backward_tile(d, dv).ok()?;
    let floats = 2 * bt * (d + 1) + bt * (dv + 1) + bt * bt + 3 * bt;
    Some((bt, floats * 4))
}

/// The launch plan of the flash-style attention backward for key size `d` and value size `dv`: the tile (query
/// rows and keys per block), and the dynamic shared memory in bytes of the dK/dV kernel and of the dQ kernel
/// (blocks of 256 threads). Heads wider than 128 are an error. Public so that tests which run the kernels
/// elsewhere (`tests/emulated_*.rs`) launch them exactly as the backend does.
pub fn attention_backward_plan(d: usize, dv: usize) -> Result<(usize, usize, usize)> {
    let bt = backward_tile(d, dv)?;
    let (kv, q) = backward_smem(bt, d, dv);
    Ok((bt, kv * 4, q * 4))
}

impl CudaBackend {
    /// Per batch entry, the number of real keys, on the device.
    fn kv_lens(
        &self,
        op: &'static str,
        d: &AttentionDims,
        spec: &AttentionSpec,
    ) -> Result<CudaSlice<i32>> {
        let lens: Vec<i32> = spec
            .kv_len
            .as_ref()
            .map(|l| l.iter().map(|&x| x as i32).collect())
            .unwrap_or_else(|| vec![d.tk as i32; d.b]);
        self.stream.clone_htod(&lens).map_err(|e| err(op, e))
    }

    /// The fused forward: `(out, lse)`.
    fn attention_impl(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(AttentionDims, CudaSlice<f32>, CudaSlice<f32>)> {
        const OP: &str = "attention";
        let d = ops::attention_dims(q.shape(), k.shape(), v.shape(), spec)?;
        if d.dv > 32 * 8 {
            return Err(Error::shape(
                OP,
                format!("value size {} exceeds the fused kernel's 256", d.dv),
            ));
        }
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        let rows = d.b * d.h * d.tq;
        let mut o = self.alloc(OP, rows * d.dv)?;
        let mut lse = self.alloc(OP, rows)?;
        if rows > 0 {
            let lens = self.kv_lens(OP, &d, spec)?;
            let (h, tq, tk, dd, dv) = (
                d.h as i32,
                d.tq as i32,
                d.tk as i32,
                d.d as i32,
                d.dv as i32,
            );
            let (causal, off, r) = (i32::from(spec.causal), spec.q_offset as i32, rows as i64);
            if let Some((bt, smem)) = attention_forward_plan(d.tq, d.d, d.dv) {
                let f = self.function("attention_tiled_f32")?;
                let bt32 = bt as i32;
                let cfg = LaunchConfig {
                    grid_dim: ((d.b * d.h * d.tq.div_ceil(bt)) as u32, 1, 1),
                    block_dim: (BWD_THREADS as u32, 1, 1),
                    shared_mem_bytes: smem as u32,
                };
                // SAFETY: one block per (batch·head, query tile); indices bounded by the checked dims, tiles by
                // `bt` (≤ 48 KiB of shared memory, from `attention_forward_plan`).
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(qv)
                        .arg(kv)
                        .arg(vv)
                        .arg(&mut o)
                        .arg(&mut lse)
                        .arg(&h)
                        .arg(&tq)
                        .arg(&tk)
                        .arg(&dd)
                        .arg(&dv)
                        .arg(&spec.scale)
                        .arg(&causal)
                        .arg(&off)
                        .arg(&lens)
                        .arg(&bt32)
                        .launch(cfg)
                }
                .map_err(|e| err(OP, e))?;
                return Ok((d, o, lse));
            }
            let f = self.function("attention_f32")?;
            let cfg = LaunchConfig {
                grid_dim: ((rows * 32).div_ceil(128) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one warp per query row; all indices bounded by the checked dims; lse holds one per row.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(qv)
                    .arg(kv)
                    .arg(vv)
                    .arg(&mut o)
                    .arg(&h)
                    .arg(&tq)
                    .arg(&tk)
                    .arg(&dd)
                    .arg(&dv)
                    .arg(&spec.scale)
                    .arg(&causal)
                    .arg(&off)
                    .arg(&lens)
                    .arg(&r)
                    .arg(&mut lse)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok((d, o, lse))
    }
}

impl AttentionOps for CudaBackend {
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, false)
    }
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, true)
    }
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<Tensor> {
        let (d, o, _) = self.attention_impl(q, k, v, spec)?;
        Ok(self.wrap(Shape::new([d.b, d.h, d.tq, d.dv]), CudaStorage::F32(o)))
    }

    fn attention_train(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor)> {
        let (d, o, lse) = self.attention_impl(q, k, v, spec)?;
        Ok((
            self.wrap(Shape::new([d.b, d.h, d.tq, d.dv]), CudaStorage::F32(o)),
            self.wrap(Shape::new([d.b, d.h, d.tq]), CudaStorage::F32(lse)),
        ))
    }

    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        dout: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "attention_backward";
        let d = ops::attention_backward_dims(
            q.shape(),
            k.shape(),
            v.shape(),
            out.shape(),
            lse.shape(),
            dout.shape(),
            spec,
        )?;
        let bt = backward_tile(d.d, d.dv)?;
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        let (ov, lv, gv) = (
            self.f32s(OP, "out", out)?,
            self.f32s(OP, "lse", lse)?,
            self.f32s(OP, "dout", dout)?,
        );
        let (bh, rows) = (d.b * d.h, d.b * d.h * d.tq);
        let mut dq = self.alloc(OP, rows * d.d)?;
        let mut dk = self.alloc(OP, bh * d.tk * d.d)?;
        let mut dvv = self.alloc(OP, bh * d.tk * d.dv)?;
        if rows > 0 && d.tk > 0 {
            let lens = self.kv_lens(OP, &d, spec)?;
            // 1. delta = rowsum(dO ⊙ O).
            let mut delta = self.alloc(OP, rows)?;
            let f = self.function("attention_delta_f32")?;
            let (r, dv32) = (rows as i64, d.dv as i32);
            let cfg = LaunchConfig {
                grid_dim: ((rows * 32).div_ceil(128) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one warp per row of dv values; delta holds one per row.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(ov)
                    .arg(gv)
                    .arg(&mut delta)
                    .arg(&r)
                    .arg(&dv32)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
            let (smem_kv, smem_q) = backward_smem(bt, d.d, d.dv);
            let (h, tq, tk, dd) = (d.h as i32, d.tq as i32, d.tk as i32, d.d as i32);
            let (causal, off, bt32) = (i32::from(spec.causal), spec.q_offset as i32, bt as i32);
            // 2. dK, dV per key tile.
            let f = self.function("attention_bwd_dkdv_f32")?;
            let cfg = LaunchConfig {
                grid_dim: ((bh * d.tk.div_ceil(bt)) as u32, 1, 1),
                block_dim: (BWD_THREADS as u32, 1, 1),
                shared_mem_bytes: (smem_kv * 4) as u32,
            };
            // SAFETY: one block per (batch·head, key tile); every index is bounded by the checked dims and the
            // tiles by `bt` (≤ 48 KiB of shared memory for heads ≤ 128, chosen by `backward_tile`).
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(qv)
                    .arg(kv)
                    .arg(vv)
                    .arg(gv)
                    .arg(lv)
                    .arg(&delta)
                    .arg(&mut dk)
                    .arg(&mut dvv)
                    .arg(&h)
                    .arg(&tq)
                    .arg(&tk)
                    .arg(&dd)
                    .arg(&dv32)
                    .arg(&spec.scale)
                    .arg(&causal)
                    .arg(&off)
                    .arg(&lens)
                    .arg(&bt32)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
            // 3. dQ per query tile.
            let f = self.function("attention_bwd_dq_f32")?;
            let cfg = LaunchConfig {
                grid_dim: ((bh * d.tq.div_ceil(bt)) as u32, 1, 1),
                block_dim: (BWD_THREADS as u32, 1, 1),
                shared_mem_bytes: (smem_q * 4) as u32,
            };
            // SAFETY: one block per (batch·head, query tile), bounded as above.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(qv)
                    .arg(kv)
                    .arg(vv)
                    .arg(gv)
                    .arg(lv)
                    .arg(&delta)
                    .arg(&mut dq)
                    .arg(&h)
                    .arg(&tq)
                    .arg(&tk)
                    .arg(&dd)
                    .arg(&dv32)
                    .arg(&spec.scale)
                    .arg(&causal)
                    .arg(&off)
                    .arg(&lens)
                    .arg(&bt32)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok((
            self.wrap(q.shape().clone(), CudaStorage::F32(dq)),
            self.wrap(k.shape().clone(), CudaStorage::F32(dk)),
            self.wrap(v.shape().clone(), CudaStorage::F32(dvv)),
        ))
    }

    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "cross_entropy";
        let (n, v) = ops::cross_entropy_dims(logits.shape(), targets.shape())?;
        let (lv, tv) = (
            self.f32s(OP, "logits", logits)?,
            self.u32s(OP, "targets", targets)?,
        );
        let mut dlogits = self.alloc(OP, n * v)?;
        let mut loss = self.alloc(OP, 1)?;
        if n > 0 {
            // Targets are checked on the device like embedding ids: a bad one is reported by the next download
            // (the loss's, once per step) or synchronize.
            let mut flag = self.stream.alloc_zeros::<u64>(1).map_err(|e| err(OP, e))?;
            let mut row_loss = self.alloc(OP, n)?;
            let f = self.function("cross_entropy_f32")?;
            let (rows, vv) = (n as i64, v as i32);
            // SAFETY: one block per row of v logits; targets and row_loss hold n values, flag one.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(lv)
                    .arg(tv)
                    .arg(&mut dlogits)
                    .arg(&mut row_loss)
                    .arg(&rows)
                    .arg(&vv)
                    .arg(&scale)
                    .arg(&mut flag)
                    .launch(per_row(n, 256))
            }
            .map_err(|e| err(OP, e))?;
            let f = self.function("scaled_sum_f32")?;
            // SAFETY: one block sums n values into loss[0].
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(&row_loss)
                    .arg(&mut loss)
                    .arg(&rows)
                    .arg(&scale)
                    .launch(per_row(1, 256))
            }
            .map_err(|e| err(OP, e))?;
            self.defer_id_check(OP, flag, targets, v, true)?;
        }
        Ok((
            self.wrap(Shape::new([1]), CudaStorage::F32(loss)),
            self.wrap(logits.shape().clone(), CudaStorage::F32(dlogits)),
        ))
    }
}

fn softmax_impl(be: &CudaBackend, x: &Tensor, log: bool) -> Result<Tensor> {
    const OP: &str = "softmax";
    let d = x.shape().last_dim(OP)?;
    let xv = be.f32s(OP, "x", x)?;
    let n = x.elem_count();
    let rows = n.checked_div(d).unwrap_or(0);
    let mut y = be.alloc(OP, n)?;
    if n > 0 {
        let f = be.function("softmax_f32")?;
        let (r, dd, lg) = (rows as i64, d as i32, i32::from(log));
        // SAFETY: one block per row of d values.
        unsafe {
            be.stream
                .launch_builder(&f)
                .arg(xv)
                .arg(&mut y)
                .arg(&r)
                .arg(&dd)
                .arg(&lg)
                .launch(per_row(rows, 256))
        }
        .map_err(|e| err(OP, e))?;
    }
    Ok(be.wrap(x.shape().clone(), CudaStorage::F32(y)))
}
