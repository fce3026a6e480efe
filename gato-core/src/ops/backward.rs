//! Shape rules of the backward ops (design.md §8), shared by every backend like the forward rules in the parent
//! module, so all backends accept and reject the same inputs with the same messages.

use crate::error::{Error, Result};
use crate::shape::Shape;

use super::{
    attention_dims, conv2d_dims, geglu_dims, group_norm_dims, layer_norm_dims, AttentionDims,
    Conv2dDims, GroupNormDims,
};
use crate::backend::{AttentionSpec, Conv2dSpec};

/// `a` and `b` must have the same shape (an op's input and the gradient of its output).
pub fn same_shape(op: &'static str, x: &Shape, dy: &Shape) -> Result<()> {
    if x != dy {
        return Err(Error::shape(
            op,
            format!("`dy` must have the shape of `x` {x}, got {dy}"),
        ));
    }
    Ok(())
}

/// GEGLU backward: `x: [..., 2F]`, `dy: [..., F]`; returns `F`.
pub fn geglu_backward_dims(x: &Shape, dy: &Shape) -> Result<usize> {
    let (_, f, out) = geglu_dims(x)?;
    if *dy != out {
        return Err(Error::shape(
            "geglu_backward",
            format!("`dy` must be {out} (GEGLU's output for x {x}), got {dy}"),
        ));
    }
    Ok(f)
}

/// Sum over leading dims: `x: [..., D]` (rank ≥ 1) → `(rows, D)`.
pub fn sum_rows_dims(x: &Shape) -> Result<(usize, usize)> {
    let d = x.last_dim("sum_rows")?;
    Ok((x.elem_count().checked_div(d).unwrap_or(0), d))
}

/// LayerNorm backward: `dy` like `x: [..., D]`, `gamma: [D]`, `mean` and `rstd: [rows]`; returns `(rows, D)`.
pub fn layer_norm_backward_dims(
    dy: &Shape,
    x: &Shape,
    gamma: &Shape,
    mean: &Shape,
    rstd: &Shape,
) -> Result<(usize, usize)> {
    const OP: &str = "layer_norm_backward";
    same_shape(OP, x, dy)?;
    let (rows, d) = layer_norm_dims(x, gamma, gamma)?;
    for (name, s) in [("mean", mean), ("rstd", rstd)] {
        if s.dims() != [rows] {
            return Err(Error::shape(
                OP,
                format!("`{name}` must be [{rows}] (one per row of x {x}), got {s}"),
            ));
        }
    }
    Ok((rows, d))
}

/// Embedding backward: `dy` is `ids`' shape + `[D]`, `vocab` ≥ 1; returns `D`.
pub fn embedding_backward_dims(ids: &Shape, dy: &Shape, vocab: usize) -> Result<usize> {
    const OP: &str = "embedding_backward";
    let d = dy.last_dim(OP)?;
    let want: Shape = ids.dims().iter().copied().chain([d]).collect();
    if *dy != want {
        return Err(Error::shape(
            OP,
            format!("`dy` must be the ids' shape {ids} plus [D], got {dy}"),
        ));
    }
    if vocab == 0 {
        return Err(Error::OutOfRange {
            op: OP,
            what: "vocab".into(),
            value: "0".into(),
            allowed: "≥ 1".into(),
        });
    }
    Ok(d)
}

/// Cross-entropy: `logits: [N, V]` (V ≥ 1), `targets: [N]`; returns `(N, V)`.
pub fn cross_entropy_dims(logits: &Shape, targets: &Shape) -> Result<(usize, usize)> {
    const OP: &str = "cross_entropy";
    let &[n, v] = logits.dims() else {
        return Err(Error::shape(
            OP,
            format!("`logits` must be [N, V], got {logits}"),
        ));
    };
    if v == 0 {
        return Err(Error::shape(OP, "`logits` has no class (V = 0)"));
    }
    if targets.dims() != [n] {
        return Err(Error::shape(
            OP,
            format!("`targets` must be [{n}] (one per row of logits {logits}), got {targets}"),
        ));
    }
    Ok((n, v))
}

/// Every target below `v` or [`super::PAD_ID`]; the first bad one is named.
pub fn check_targets(targets: &[u32], v: usize) -> Result<()> {
    super::check_below("cross_entropy", "targets", targets, v)
}

/// Attention backward: q, k, v as for the forward; `out` and `dout` `[B, H, Tq, Dv]`; `lse` `[B, H, Tq]`.
pub fn attention_backward_dims(
    q: &Shape,
    k: &Shape,
    v: &Shape,
    out: &Shape,
    lse: &Shape,
    dout: &Shape,
    spec: &AttentionSpec,
) -> Result<AttentionDims> {
    const OP: &str = "attention_backward";
    let d = attention_dims(q, k, v, spec)?;
    let o = Shape::new([d.b, d.h, d.tq, d.dv]);
    for (name, s) in [("out", out), ("dout", dout)] {
        if *s != o {
            return Err(Error::shape(OP, format!("`{name}` must be {o}, got {s}")));
        }
    }
    let l = Shape::new([d.b, d.h, d.tq]);
    if *lse != l {
        return Err(Error::shape(OP, format!("`lse` must be {l}, got {lse}")));
    }
    Ok(d)
}

/// GroupNorm backward: `dy` like `x: [N, C, H, W]`, `gamma: [C]`, `mean` and `rstd: [N, groups]`.
pub fn group_norm_backward_dims(
    dy: &Shape,
    x: &Shape,
    groups: usize,
    gamma: &Shape,
    mean: &Shape,
    rstd: &Shape,
) -> Result<GroupNormDims> {
    const OP: &str = "group_norm_backward";
    same_shape(OP, x, dy)?;
    let d = group_norm_dims(x, groups, gamma, gamma)?;
    for (name, s) in [("mean", mean), ("rstd", rstd)] {
        if s.dims() != [d.n, groups] {
            return Err(Error::shape(
                OP,
                format!(
                    "`{name}` must be [{}, {groups}] (one per image and group), got {s}",
                    d.n
                ),
            ));
        }
    }
    Ok(d)
}

/// Conv2d backward: x and w as for the forward, `dy` the forward's output shape.
pub fn conv2d_backward_dims(
    x: &Shape,
    w: &Shape,
    dy: &Shape,
    spec: &Conv2dSpec,
) -> Result<Conv2dDims> {
    let d = conv2d_dims(x, w, None, spec)?;
    let out = Shape::new([d.n, d.o, d.oh, d.ow]);
    if *dy != out {
        return Err(Error::shape(
            "conv2d_backward",
            format!("`dy` must be the convolution's output {out}, got {dy}"),
        ));
    }
    Ok(d)
}
