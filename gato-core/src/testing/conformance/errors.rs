//! The error contract: malformed calls return the right `Err`, never panic, never return data.

#[allow(unused_imports)]
use super::*;

/// A storage type no backend knows, to check that foreign tensors are rejected.
#[derive(Debug)]
struct ForeignStorage;

impl Storage for ForeignStorage {
    fn backend_name(&self) -> &str {
        "foreign"
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn size_in_bytes(&self) -> usize {
        0
    }
}

/// The error contract: every malformed call returns the right `Err` (never panics, never returns data).
pub fn errors(b: &dyn Backend) -> Result<(), String> {
    let e = |what: &str,
             res: crate::error::Result<Tensor>,
             want: fn(&Error) -> bool|
     -> Result<(), String> {
        match res {
            Ok(t) => Err(format!("{what}: expected an error, got {t:?}")),
            Err(err) if want(&err) => Ok(()),
            Err(err) => Err(format!("{what}: wrong error kind: {err}")),
        }
    };
    let shape = |err: &Error| matches!(err, Error::Shape { .. });
    let t = |data: &[f32], dims: &[usize]| {
        b.upload(HostSlice::F32(data), &Shape::from(dims))
            .map_err(|e| e.to_string())
    };
    let x23 = t(&[1.0; 6], &[2, 3])?;
    let x45 = t(&[1.0; 20], &[4, 5])?;
    let v3 = t(&[1.0; 3], &[3])?;
    let v4 = t(&[1.0; 4], &[4])?;
    let x4d = t(&[1.0; 16], &[1, 1, 4, 4])?;
    let ids = b
        .upload(HostSlice::U32(&[0, 7]), &Shape::from([2]))
        .map_err(|e| e.to_string())?;

    e(
        "upload with wrong length",
        b.upload(HostSlice::F32(&[1.0; 5]), &Shape::from([2, 3])),
        shape,
    )?;
    e(
        "matmul inner mismatch",
        b.matmul(&x23, &x45, &MatmulSpec::default()),
        shape,
    )?;
    e(
        "matmul rank 1",
        b.matmul(&v3, &x23, &MatmulSpec::default()),
        shape,
    )?;
    e(
        "linear bias of the wrong width",
        b.linear(&x23, &t(&[1.0; 12], &[3, 4])?, Some(&v3)),
        shape,
    )?;
    let mut dst = x45.clone();
    e(
        "slice_assign past the end",
        b.slice_assign(&mut dst, &x23, 0, 3).map(|_| dst.clone()),
        |err| matches!(err, Error::Shape { .. } | Error::OutOfRange { .. }),
    )?;
    e(
        "slice_assign range past the end",
        b.slice_assign(&mut dst, &t(&[1.0; 10], &[2, 5])?, 0, 3)
            .map(|_| dst.clone()),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "binary non-suffix broadcast",
        b.binary(BinaryOp::Add, &x23, &v4),
        shape,
    )?;
    e(
        "layer_norm gamma size",
        b.layer_norm(&x23, &v4, &v3, 1e-5),
        shape,
    )?;
    e(
        "group_norm groups not dividing C",
        b.group_norm(&x4d, 0, &t(&[1.0], &[1])?, &t(&[0.0], &[1])?, 1e-5),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "group_norm rank",
        b.group_norm(&x23, 1, &v3, &v3, 1e-5),
        shape,
    )?;
    e("geglu odd width", b.geglu(&x23), shape)?;
    e(
        "attention rank",
        b.attention(
            &x23,
            &x23,
            &x23,
            &AttentionSpec {
                scale: 1.0,
                ..Default::default()
            },
        ),
        shape,
    )?;
    e(
        "attention kv_len too long",
        b.attention(
            &x4d,
            &x4d,
            &x4d,
            &AttentionSpec {
                scale: 1.0,
                kv_len: Some(vec![5]),
                ..Default::default()
            },
        ),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "attention NaN scale",
        b.attention(
            &x4d,
            &x4d,
            &x4d,
            &AttentionSpec {
                scale: f32::NAN,
                ..Default::default()
            },
        ),
        |err| matches!(err, Error::NonFinite { .. }),
    )?;
    // A backend that runs asynchronously may report a bad id at the next download instead of at the call;
    // either way no data comes back.
    e(
        "embedding id out of range",
        b.embedding(&x45, &ids)
            .and_then(|y| b.download(&y).map(|_| y)),
        |err| matches!(err, Error::OutOfRange { value, .. } if value == "7"),
    )?;
    e("embedding f32 ids", b.embedding(&x45, &v3), |err| {
        matches!(err, Error::DType { .. })
    })?;
    e(
        "conv2d channel mismatch",
        b.conv2d(
            &x4d,
            &t(&[1.0; 18], &[1, 2, 3, 3])?,
            None,
            &Conv2dSpec::default(),
        ),
        shape,
    )?;
    e(
        "conv2d kernel larger than input",
        b.conv2d(
            &x4d,
            &t(&[1.0; 25], &[1, 1, 5, 5])?,
            None,
            &Conv2dSpec::default(),
        ),
        shape,
    )?;
    e(
        "conv2d stride 0",
        b.conv2d(
            &x4d,
            &t(&[1.0; 9], &[1, 1, 3, 3])?,
            None,
            &Conv2dSpec {
                stride: 0,
                padding: 0,
            },
        ),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e("concat mismatched dims", b.concat(&[&x23, &x45], 0), shape)?;
    e("concat empty", b.concat(&[], 0), |err| {
        matches!(err, Error::InvalidArgument { .. })
    })?;
    e(
        "concat mixed dtypes",
        b.concat(&[&v3, &ids.reshape([2]).map_err(|e| e.to_string())?], 0),
        |err| matches!(err, Error::DType { .. } | Error::Shape { .. }),
    )?;
    e("slice past end", b.slice(&x23, 1, 2, 2), |err| {
        matches!(err, Error::OutOfRange { .. })
    })?;
    e("slice bad axis", b.slice(&x23, 2, 0, 1), |err| {
        matches!(err, Error::OutOfRange { .. })
    })?;
    e(
        "permute not a permutation",
        b.permute(&x23, &[1, 1]),
        |err| matches!(err, Error::InvalidArgument { .. }),
    )?;
    e("unary on u32", b.unary(UnaryOp::Exp, &ids), |err| {
        matches!(err, Error::DType { .. })
    })?;
    if b.supports_dtype(DType::U32) {
        e("cast u32 to f32", b.cast(&ids, DType::F32), |err| {
            matches!(err, Error::DType { .. })
        })?;
    }
    let foreign = Tensor::from_storage(Shape::from([2, 3]), DType::F32, Arc::new(ForeignStorage));
    e("foreign tensor", b.unary(UnaryOp::Neg, &foreign), |err| {
        matches!(err, Error::BackendMismatch { .. })
    })?;
    e(
        "foreign tensor in matmul",
        b.matmul(
            &foreign,
            &x23.reshape([3, 2]).map_err(|e| e.to_string())?,
            &MatmulSpec::default(),
        ),
        |err| matches!(err, Error::BackendMismatch { .. }),
    )?;
    match b.download(&foreign) {
        Err(Error::BackendMismatch { .. }) => Ok(()),
        other => Err(format!(
            "download of a foreign tensor: expected BackendMismatch, got {other:?}"
        )),
    }
}
