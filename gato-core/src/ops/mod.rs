//! Shape rules of every backend op, checked in one place.
//!
//! Each function validates the arguments of one op family and returns the sizes a kernel needs. Every backend
//! calls these before touching memory, so the CPU and CUDA backends accept and reject exactly the same inputs, with
//! the same messages, and kernels never index out of bounds.

mod backward;
pub use backward::*;

use crate::backend::{AttentionSpec, Conv2dSpec, MatmulSpec};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Sizes of a (batched) matrix product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatmulDims {
    /// Product of the leading (batch) dims of `a`.
    pub batch: usize,
    /// Rows of `op(a)`.
    pub m: usize,
    /// Columns of `op(b)`.
    pub n: usize,
    /// Inner dim.
    pub k: usize,
    /// Whether `b` has batch dims (else one `b` is shared by all entries).
    pub b_batched: bool,
    /// Output shape `[..batch, M, N]`.
    pub out: Shape,
}

/// Validate `op(a) · op(b)`; see [`crate::MatmulOps::matmul`].
pub fn matmul_dims(a: &Shape, b: &Shape, spec: &MatmulSpec) -> Result<MatmulDims> {
    const OP: &str = "matmul";
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::shape(
            OP,
            format!("both operands need rank ≥ 2, got a {a} and b {b}"),
        ));
    }
    let ad = a.dims();
    let bd = b.dims();
    let (m, ka) = if spec.trans_a {
        (ad[ad.len() - 1], ad[ad.len() - 2])
    } else {
        (ad[ad.len() - 2], ad[ad.len() - 1])
    };
    let (kb, n) = if spec.trans_b {
        (bd[bd.len() - 1], bd[bd.len() - 2])
    } else {
        (bd[bd.len() - 2], bd[bd.len() - 1])
    };
    if ka != kb {
        return Err(Error::shape(
            OP,
            format!(
                "inner dims differ: a {a}{} gives K = {ka}, b {b}{} gives K = {kb}",
                if spec.trans_a { "ᵀ" } else { "" },
                if spec.trans_b { "ᵀ" } else { "" }
            ),
        ));
    }
    let a_batch = &ad[..ad.len() - 2];
    let b_batch = &bd[..bd.len() - 2];
    let b_batched = !b_batch.is_empty();
    if b_batched && a_batch != b_batch {
        return Err(Error::shape(
            OP,
            format!("batch dims differ: a {a} has {a_batch:?}, b {b} has {b_batch:?} (b may also be 2-D)"),
        ));
    }
    let batch = a_batch.iter().product();
    Ok(MatmulDims {
        batch,
        m,
        n,
        k: ka,
        b_batched,
        out: a_batch.iter().copied().chain([m, n]).collect(),
    })
}

/// Validate `x · w + bias` ([`crate::MatmulOps::linear`]): `x: [..., in]`, `w: [in, out]`, `bias: [out]`.
pub fn linear_dims(x: &Shape, w: &Shape, bias: Option<&Shape>) -> Result<MatmulDims> {
    if w.rank() != 2 {
        return Err(Error::shape(
            "linear",
            format!("weight must be [in, out], got {w}"),
        ));
    }
    let d = matmul_dims(x, w, &MatmulSpec::default())?;
    if let Some(b) = bias {
        if b.dims() != [d.n] {
            return Err(Error::shape(
                "linear",
                format!(
                    "bias must be [{}] (the weight's output width), got {b}",
                    d.n
                ),
            ));
        }
    }
    Ok(d)
}

/// For a broadcast binary op: `(outer, inner)` where `b` repeats `outer` times over `a` and has `inner` elements.
pub fn broadcast_dims(op: &'static str, a: &Shape, b: &Shape) -> Result<(usize, usize)> {
    let ad = a.dims();
    let bd = b.dims();
    if bd.len() > ad.len() || ad[ad.len() - bd.len()..] != *bd {
        return Err(Error::shape(
            op,
            format!("b {b} must equal a {a} or a suffix of its dims (broadcast over leading dims)"),
        ));
    }
    let inner = b.elem_count();
    let outer = a.elem_count().checked_div(inner).unwrap_or(0);
    Ok((outer, inner))
}

/// LayerNorm: `(rows, d)`; gamma and beta must be `[d]`.
pub fn layer_norm_dims(x: &Shape, gamma: &Shape, beta: &Shape) -> Result<(usize, usize)> {
    const OP: &str = "layer_norm";
    let d = x.last_dim(OP)?;
    for (name, s) in [("gamma", gamma), ("beta", beta)] {
        if s.dims() != [d] {
            return Err(Error::shape(
                OP,
                format!("`{name}` must be [{d}] to match x {x}, got {s}"),
            ));
        }
    }
    let rows = x.elem_count().checked_div(d).unwrap_or(0);
    Ok((rows, d))
}

/// Sizes of a GroupNorm over NCHW input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormDims {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// H·W.
    pub hw: usize,
    /// Groups.
    pub groups: usize,
}

/// GroupNorm: x `[N, C, H, W]`, `groups` ≥ 1 dividing C, gamma/beta `[C]`.
pub fn group_norm_dims(
    x: &Shape,
    groups: usize,
    gamma: &Shape,
    beta: &Shape,
) -> Result<GroupNormDims> {
    const OP: &str = "group_norm";
    if x.rank() != 4 {
        return Err(Error::shape(OP, format!("x must be [N, C, H, W], got {x}")));
    }
    let d = x.dims();
    let c = d[1];
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::OutOfRange {
            op: OP,
            what: "groups".into(),
            value: groups.to_string(),
            allowed: format!("a divisor ≥ 1 of C = {c}"),
        });
    }
    for (name, s) in [("gamma", gamma), ("beta", beta)] {
        if s.dims() != [c] {
            return Err(Error::shape(
                OP,
                format!("`{name}` must be [{c}] to match x {x}, got {s}"),
            ));
        }
    }
    Ok(GroupNormDims {
        n: d[0],
        c,
        hw: d[2] * d[3],
        groups,
    })
}

/// Sizes of an attention call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch.
    pub b: usize,
    /// Heads.
    pub h: usize,
    /// Queries.
    pub tq: usize,
    /// Keys.
    pub tk: usize,
    /// Query/key size.
    pub d: usize,
    /// Value size.
    pub dv: usize,
}

/// Attention: q `[B, H, Tq, D]`, k `[B, H, Tk, D]`, v `[B, H, Tk, Dv]`; `kv_len` has B entries ≤ Tk; a finite scale.
pub fn attention_dims(
    q: &Shape,
    k: &Shape,
    v: &Shape,
    spec: &AttentionSpec,
) -> Result<AttentionDims> {
    const OP: &str = "attention";
    for (name, s) in [("q", q), ("k", k), ("v", v)] {
        if s.rank() != 4 {
            return Err(Error::shape(
                OP,
                format!("`{name}` must be [B, H, T, D], got {s}"),
            ));
        }
    }
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    if kd[..2] != qd[..2] || vd[..2] != qd[..2] {
        return Err(Error::shape(
            OP,
            format!("batch and head dims differ: q {q}, k {k}, v {v}"),
        ));
    }
    if kd[3] != qd[3] {
        return Err(Error::shape(
            OP,
            format!("q {q} and k {k} must share the last dim"),
        ));
    }
    if vd[2] != kd[2] {
        return Err(Error::shape(
            OP,
            format!("k {k} and v {v} must have the same number of keys"),
        ));
    }
    if !spec.scale.is_finite() {
        return Err(Error::NonFinite {
            field: "attention.scale".into(),
            index: 0,
            value: spec.scale as f64,
        });
    }
    let tk = kd[2];
    if let Some(lens) = &spec.kv_len {
        if lens.len() != qd[0] {
            return Err(Error::shape(
                OP,
                format!("kv_len has {} entries, batch is {}", lens.len(), qd[0]),
            ));
        }
        if let Some((i, &l)) = lens.iter().enumerate().find(|(_, &l)| l > tk) {
            return Err(Error::OutOfRange {
                op: OP,
                what: format!("kv_len[{i}]"),
                value: l.to_string(),
                allowed: format!("[0, {tk}]"),
            });
        }
    }
    Ok(AttentionDims {
        b: qd[0],
        h: qd[1],
        tq: qd[2],
        tk,
        d: qd[3],
        dv: vd[3],
    })
}

/// The id that [`crate::GatherConvOps::embedding`] maps to a zero row: padding, and positions an embedding contribution
/// does not apply to (§2.2: the input embedding is a sum of contributions, each zero where it does not apply).
pub const PAD_ID: u32 = u32::MAX;

/// Embedding gather: table `[V, D]`, ids any shape → output `[..ids, D]`; returns `(V, D, out)`.
pub fn embedding_dims(table: &Shape, ids: &Shape) -> Result<(usize, usize, Shape)> {
    if table.rank() != 2 {
        return Err(Error::shape(
            "embedding",
            format!("table must be [V, D], got {table}"),
        ));
    }
    let (v, d) = (table.dims()[0], table.dims()[1]);
    Ok((v, d, ids.dims().iter().copied().chain([d]).collect()))
}

/// Check every id is below the vocabulary size `v`; the first bad one is named.
/// Ids equal to [`PAD_ID`] are allowed and gather a zero row.
pub fn check_ids(ids: &[u32], v: usize) -> Result<()> {
    check_below("embedding", "ids", ids, v)
}

/// Every value of `values` (named `what` in errors of `op`) below `v` or [`PAD_ID`]; the first bad one is named.
fn check_below(op: &'static str, what: &str, values: &[u32], v: usize) -> Result<()> {
    if let Some((i, &id)) = values
        .iter()
        .enumerate()
        .find(|(_, &id)| id != PAD_ID && id as usize >= v)
    {
        return Err(Error::OutOfRange {
            op,
            what: format!("{what}[{i}]"),
            value: id.to_string(),
            allowed: format!("[0, {v}) or PAD_ID (u32::MAX)"),
        });
    }
    Ok(())
}

/// Sizes of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dDims {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

/// Conv2d: x `[N, C, H, W]`, w `[O, C, kh, kw]`, bias `[O]`, stride ≥ 1, kernel fits the padded input.
pub fn conv2d_dims(
    x: &Shape,
    w: &Shape,
    bias: Option<&Shape>,
    spec: &Conv2dSpec,
) -> Result<Conv2dDims> {
    const OP: &str = "conv2d";
    if x.rank() != 4 || w.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!("x must be [N, C, H, W] and w [O, C, kh, kw], got x {x}, w {w}"),
        ));
    }
    let (xd, wd) = (x.dims(), w.dims());
    if xd[1] != wd[1] {
        return Err(Error::shape(
            OP,
            format!("x {x} has {} channels, w {w} expects {}", xd[1], wd[1]),
        ));
    }
    if let Some(b) = bias {
        if b.dims() != [wd[0]] {
            return Err(Error::shape(
                OP,
                format!("bias must be [{}], got {b}", wd[0]),
            ));
        }
    }
    if spec.stride == 0 {
        return Err(Error::OutOfRange {
            op: OP,
            what: "stride".into(),
            value: "0".into(),
            allowed: "≥ 1".into(),
        });
    }
    let (ph, pw) = (xd[2] + 2 * spec.padding, xd[3] + 2 * spec.padding);
    if wd[2] == 0 || wd[3] == 0 || wd[2] > ph || wd[3] > pw {
        return Err(Error::shape(
            OP,
            format!(
                "kernel {}×{} must be non-empty and fit the padded input {ph}×{pw}",
                wd[2], wd[3]
            ),
        ));
    }
    Ok(Conv2dDims {
        n: xd[0],
        c: xd[1],
        h: xd[2],
        w: xd[3],
        o: wd[0],
        kh: wd[2],
        kw: wd[3],
        oh: (ph - wd[2]) / spec.stride + 1,
        ow: (pw - wd[3]) / spec.stride + 1,
        stride: spec.stride,
        pad: spec.padding,
    })
}

/// Concat along `axis`: returns the output shape and, per input, the size of its block along `axis` times the
/// inner size (elements per outer index), plus the outer count.
pub fn concat_dims(shapes: &[&Shape], axis: usize) -> Result<(Shape, usize, Vec<usize>)> {
    const OP: &str = "concat";
    let first = shapes
        .first()
        .ok_or_else(|| Error::invalid(OP, "needs at least one tensor"))?;
    first.dim(OP, axis)?;
    let mut total = 0;
    for (i, s) in shapes.iter().enumerate() {
        let same_rank = s.rank() == first.rank();
        let same_other = same_rank
            && s.dims()
                .iter()
                .zip(first.dims())
                .enumerate()
                .all(|(d, (x, y))| d == axis || x == y);
        if !same_other {
            return Err(Error::shape(
                OP,
                format!("tensor {i} has shape {s}; all dims but axis {axis} must match tensor 0 {first}"),
            ));
        }
        total += s.dims()[axis];
    }
    let mut out = first.dims().to_vec();
    out[axis] = total;
    let outer: usize = first.dims()[..axis].iter().product();
    let inner: usize = first.dims()[axis + 1..].iter().product();
    let blocks = shapes.iter().map(|s| s.dims()[axis] * inner).collect();
    Ok((Shape::new(out), outer, blocks))
}

/// AdamW's operands ([`crate::OptimOps::adamw_step`]): the parameter, its gradient and both moments, all f32 of
/// one shape. Returns the element count.
pub fn adamw_dims(param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor) -> Result<usize> {
    const OP: &str = "adamw_step";
    for (what, t) in [("param", param), ("grad", grad), ("m", m), ("v", v)] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: OP,
                detail: format!("{what} has dtype {}, expected F32", t.dtype()),
            });
        }
        if t.shape() != param.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} is {}, the parameter is {}",
                    t.shape(),
                    param.shape()
                ),
            ));
        }
    }
    Ok(param.elem_count())
}

/// Write `src` into `dst[.., start..start+len, ..]` along `axis` ([`crate::LayoutOps::slice_assign`]): the same
/// dtype, the same rank, equal dims except `axis`, and the range inside `dst`. Returns
/// `(outer, dst_axis_len, len, inner)`.
pub fn slice_assign_dims(
    dst: &Tensor,
    src: &Tensor,
    axis: usize,
    start: usize,
) -> Result<(usize, usize, usize, usize)> {
    const OP: &str = "slice_assign";
    if src.dtype() != dst.dtype() {
        return Err(Error::DType {
            op: OP,
            detail: format!("src has dtype {}, dst has {}", src.dtype(), dst.dtype()),
        });
    }
    let (dst, src) = (dst.shape(), src.shape());
    let n = dst.dim(OP, axis)?;
    let same_other = src.rank() == dst.rank()
        && src
            .dims()
            .iter()
            .zip(dst.dims())
            .enumerate()
            .all(|(d, (a, b))| d == axis || a == b);
    if !same_other {
        return Err(Error::shape(
            OP,
            format!("src {src} must match dst {dst} in every dim but axis {axis}"),
        ));
    }
    let len = src.dims()[axis];
    if start.checked_add(len).is_none_or(|end| end > n) {
        return Err(Error::OutOfRange {
            op: OP,
            what: format!("range {start}..{}", start.saturating_add(len)),
            value: format!("axis {axis} of {dst}"),
            allowed: format!("within [0, {n}]"),
        });
    }
    let outer = dst.dims()[..axis].iter().product();
    let inner = dst.dims()[axis + 1..].iter().product();
    Ok((outer, n, len, inner))
}

/// Slice along `axis`: returns `(out_shape, outer, axis_len, inner)`.
pub fn slice_dims(
    x: &Shape,
    axis: usize,
    start: usize,
    len: usize,
) -> Result<(Shape, usize, usize, usize)> {
    const OP: &str = "slice";
    let n = x.dim(OP, axis)?;
    if start.checked_add(len).is_none_or(|end| end > n) {
        return Err(Error::OutOfRange {
            op: OP,
            what: format!("range {start}..{}", start.saturating_add(len)),
            value: format!("axis {axis} of {x}"),
            allowed: format!("within [0, {n}]"),
        });
    }
    let out = x
        .dims()
        .iter()
        .enumerate()
        .map(|(i, &d)| if i == axis { len } else { d })
        .collect();
    let outer = x.dims()[..axis].iter().product();
    let inner = x.dims()[axis + 1..].iter().product();
    Ok((out, outer, n, inner))
}

/// Permute: `perm` must be a permutation of `0..rank`; returns the output shape.
pub fn permute_dims(x: &Shape, perm: &[usize]) -> Result<Shape> {
    let r = x.rank();
    // A permutation of 0..r: every entry in range and none repeated (r² checks; ranks are small).
    let valid = perm.len() == r
        && perm
            .iter()
            .enumerate()
            .all(|(i, &p)| p < r && !perm[..i].contains(&p));
    if !valid {
        return Err(Error::invalid(
            "permute",
            format!("{perm:?} is not a permutation of the {r} dims of {x}"),
        ));
    }
    Ok(perm.iter().map(|&p| x.dims()[p]).collect())
}

/// GEGLU: last dim even; returns `(rows, F, out_shape)`.
pub fn geglu_dims(x: &Shape) -> Result<(usize, usize, Shape)> {
    let d = x.last_dim("geglu")?;
    if d % 2 != 0 {
        return Err(Error::shape(
            "geglu",
            format!("last dim of x {x} must be even (2F)"),
        ));
    }
    let f = d / 2;
    let rows = x.elem_count().checked_div(d).unwrap_or(0);
    let mut out = x.dims().to_vec();
    *out.last_mut().unwrap_or(&mut 0) = f;
    Ok((rows, f, Shape::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_rejects_inner_mismatch_with_shapes() {
        let e = matmul_dims(&[2, 3].into(), &[4, 5].into(), &MatmulSpec::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
    }

    #[test]
    fn matmul_batched_and_shared() {
        let d = matmul_dims(&[2, 7, 3, 4].into(), &[4, 5].into(), &MatmulSpec::default()).unwrap();
        assert_eq!((d.batch, d.m, d.n, d.k, d.b_batched), (14, 3, 5, 4, false));
        assert_eq!(d.out.dims(), &[2, 7, 3, 5]);
        let d = matmul_dims(
            &[2, 4, 3].into(),
            &[2, 5, 4].into(),
            &MatmulSpec {
                trans_a: true,
                trans_b: true,
                alpha: 1.0,
            },
        )
        .unwrap();
        assert_eq!((d.m, d.n, d.k, d.b_batched), (3, 5, 4, true));
    }

    #[test]
    fn permute_rejects_duplicates() {
        assert!(permute_dims(&[2, 3].into(), &[0, 0]).is_err());
        assert!(permute_dims(&[2, 3].into(), &[0]).is_err());
        assert_eq!(
            permute_dims(&[2, 3, 4].into(), &[2, 0, 1]).unwrap().dims(),
            &[4, 2, 3]
        );
    }

    #[test]
    fn slice_overflow_is_error() {
        assert!(slice_dims(&[4].into(), 0, usize::MAX, 2).is_err());
        assert!(slice_dims(&[4].into(), 1, 0, 1).is_err());
    }
}
