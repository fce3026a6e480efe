//! Memory: round trips for every dtype, `download_f32_into`, `zeros`, and casts.

#[allow(unused_imports)]
use super::*;

/// Upload/download round trip for every supported dtype, `download_f32_into`, and `zeros`.
pub fn memory(b: &dyn Backend) -> Result<(), String> {
    run(
        (prop::collection::vec(1usize..5, 0..4), any::<u64>()),
        |(dims, seed)| {
            let n: usize = dims.iter().product();
            let mut rng = Rng::new(seed);
            let f = rng.vec(n, -3.0, 3.0);
            let shape = Shape::from(dims.as_slice());
            let datas = [
                HostData::F32(f.clone()),
                HostData::F16(f.iter().map(|&v| half::f16::from_f32(v)).collect()),
                HostData::BF16(f.iter().map(|&v| half::bf16::from_f32(v)).collect()),
                HostData::U32((0..n).map(|_| rng.next_u64() as u32).collect()),
            ];
            for data in datas {
                if !b.supports_dtype(data.dtype()) {
                    continue;
                }
                let t = ok("upload", b.upload(data.as_slice(), &shape))?;
                prop_assert_eq!(t.dtype(), data.dtype());
                prop_assert_eq!(t.dims(), shape.dims());
                prop_assert_eq!(&ok("download", b.download(&t))?, &data);
                let z = ok("zeros", b.zeros(&shape, data.dtype()))?;
                prop_assert!(down(b, &z)?.iter().all(|&v| v == 0.0));
                // `download_f32_into` replaces what the vector held with the f32 values, and refuses other
                // dtypes, leaving the vector as it was.
                let mut into = vec![7.0f32; 3];
                let got = b.download_f32_into(&t, &mut into);
                match &data {
                    HostData::F32(v) => {
                        ok("download_f32_into", got)?;
                        prop_assert_eq!(&into, v);
                    }
                    _ => {
                        prop_assert!(got.is_err(), "download_f32_into accepted {}", data.dtype());
                        prop_assert_eq!(&into, &vec![7.0f32; 3]);
                    }
                }
            }
            Ok(())
        },
    )
}

/// f32 ↔ f16/bf16 casts round to nearest even like `half`, and widen exactly.
pub fn cast(b: &dyn Backend) -> Result<(), String> {
    run((1usize..300, any::<u64>()), |(n, seed)| {
        let f = Rng::new(seed).vec(n, -70000.0, 70000.0);
        let t = up(b, &f, &[n])?;
        for dt in [DType::F16, DType::BF16] {
            if !b.supports_dtype(dt) {
                continue;
            }
            let c = ok("cast", b.cast(&t, dt))?;
            prop_assert_eq!(c.dtype(), dt);
            let want: Vec<f64> = match dt {
                DType::F16 => f.iter().map(|&v| half::f16::from_f32(v).to_f64()).collect(),
                _ => f
                    .iter()
                    .map(|&v| half::bf16::from_f32(v).to_f64())
                    .collect(),
            };
            let got = down(b, &c)?;
            prop_assert!(got
                .iter()
                .zip(&want)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
            let back = ok("cast", b.cast(&c, DType::F32))?;
            let back_v = down(b, &back)?;
            prop_assert!(back_v
                .iter()
                .zip(&want)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        }
        Ok(())
    })
}
