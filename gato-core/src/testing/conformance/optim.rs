//! The optimiser's ops (design.md §8): `sum_squares` against an f64 sum, and `adamw_step` against the f64 AdamW
//! of [`crate::reference::optim`] — in place, copy-on-write (a handle sharing the old storage keeps its values) —
//! plus its shape and dtype errors.

#[allow(unused_imports)]
use super::*;
use crate::backend::{clip_scale, AdamWStep, AdamWTensor};
use crate::reference::optim as ro;

/// Optimiser: `sum_squares` and `adamw_step`.
pub fn optimizer(b: &dyn Backend) -> Result<(), String> {
    run(
        (dims_strategy(), any::<u64>(), 1u64..2000, 0usize..2),
        |(dims, seed, t, decayed)| {
            let mut rng = Rng::new(seed);
            let n = dims.iter().product();
            let (p, g) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -0.1, 0.1));
            let m = rng.vec(n, -0.01, 0.01);
            let v: Vec<f32> = rng.vec(n, 0.0, 1e-4);
            let s = AdamWStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: if decayed == 1 { 0.1 } else { 0.0 },
                t,
                grad_scale: rng.uniform(0.2, 1.0) as f64,
            };
            let gt = up(b, &g, &dims)?;
            let want: f64 = wide(&g).iter().map(|x| x * x).sum();
            let got = ok("sum_squares", b.sum_squares(&gt))?;
            prop_assert!(
                (got - want).abs() <= 1e-9 * want + 1e-30,
                "sum_squares {} vs {}",
                got,
                want
            );
            let mut pt = up(b, &p, &dims)?;
            let shared = pt.clone();
            let (mut mt, mut vt) = (up(b, &m, &dims)?, up(b, &v, &dims)?);
            ok(
                "adamw_step",
                b.adamw_step(&mut pt, &gt, &mut mt, &mut vt, &s),
            )?;
            let (wp, wm, wv) = ro::adamw(&s, &wide(&p), &wide(&g), &wide(&m), &wide(&v));
            close(b, "param", &pt, &wp, &dims, 1e-5)?;
            close(b, "m", &mt, &wm, &dims, 1e-8)?;
            close(b, "v", &vt, &wv, &dims, 1e-10)?;
            prop_assert_eq!(
                down(b, &shared)?,
                wide(&p),
                "a shared handle saw the in-place update"
            );
            // Mismatched shapes are errors that leave the parameter as it was (n + 1 elements never match).
            let before = down(b, &pt)?;
            let wrong = up(b, &vec![0.0; n + 1], &[n + 1])?;
            let e = b.adamw_step(&mut pt, &wrong, &mut mt, &mut vt, &s);
            prop_assert!(e.is_err(), "a gradient of the wrong shape was accepted");
            prop_assert_eq!(down(b, &pt)?, before);
            Ok(())
        },
    )
}

/// The clipped multi-tensor step (`adamw_clipped`): the factor from the global norm of every gradient, each
/// tensor as `adamw_step` with that factor would leave it, the loss and squared norm returned, and nothing changed
/// when the loss is not finite.
pub fn optimizer_clipped(b: &dyn Backend) -> Result<(), String> {
    run(
        (dims_strategy(), dims_strategy(), any::<u64>(), 0.01f64..2.0),
        |(d1, d2, seed, max_norm)| {
            let mut rng = Rng::new(seed);
            let make = |rng: &mut Rng, dims: &[usize]| {
                let n: usize = dims.iter().product();
                (
                    rng.vec(n, -1.0, 1.0),
                    rng.vec(n, -0.5, 0.5),
                    rng.vec(n, -0.01, 0.01),
                    rng.vec(n, 0.0, 1e-4),
                )
            };
            let (a, c) = (make(&mut rng, &d1), make(&mut rng, &d2));
            let step = |wd: f64| AdamWStep {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: wd,
                t: 3,
                grad_scale: 1.0,
            };
            let norm_sq: f64 = wide(&a.1).iter().chain(&wide(&c.1)).map(|x| x * x).sum();
            let scale = clip_scale(norm_sq.sqrt(), max_norm);
            for (loss, applied) in [(1.25f32, true), (f32::NAN, false)] {
                let (mut p1, g1, mut m1, mut v1) = (
                    up(b, &a.0, &d1)?,
                    up(b, &a.1, &d1)?,
                    up(b, &a.2, &d1)?,
                    up(b, &a.3, &d1)?,
                );
                let (mut p2, g2, mut m2, mut v2) = (
                    up(b, &c.0, &d2)?,
                    up(b, &c.1, &d2)?,
                    up(b, &c.2, &d2)?,
                    up(b, &c.3, &d2)?,
                );
                let lt = up(b, &[loss], &[1])?;
                let seen = {
                    let mut ts = [
                        AdamWTensor {
                            param: &mut p1,
                            grad: &g1,
                            m: &mut m1,
                            v: &mut v1,
                            step: step(0.1),
                        },
                        AdamWTensor {
                            param: &mut p2,
                            grad: &g2,
                            m: &mut m2,
                            v: &mut v2,
                            step: step(0.0),
                        },
                    ];
                    ok("adamw_clipped", b.adamw_clipped(&mut ts, max_norm, &lt))?
                };
                prop_assert!(
                    (seen.norm_sq - norm_sq).abs() <= 1e-9 * norm_sq + 1e-30,
                    "norm² {} vs {}",
                    seen.norm_sq,
                    norm_sq
                );
                prop_assert_eq!(seen.applied(), applied);
                if applied {
                    prop_assert_eq!(seen.loss, loss as f64);
                    for ((p, m, v), (x, dims, wd)) in [(&p1, &m1, &v1), (&p2, &m2, &v2)]
                        .into_iter()
                        .zip([(&a, &d1, 0.1), (&c, &d2, 0.0)])
                    {
                        let s = AdamWStep {
                            grad_scale: scale,
                            ..step(wd)
                        };
                        let (wp, wm, wv) =
                            ro::adamw(&s, &wide(&x.0), &wide(&x.1), &wide(&x.2), &wide(&x.3));
                        close(b, "clipped param", p, &wp, dims, 1e-5)?;
                        close(b, "clipped m", m, &wm, dims, 1e-7)?;
                        close(b, "clipped v", v, &wv, dims, 1e-8)?;
                    }
                } else {
                    prop_assert_eq!(
                        down(b, &p1)?,
                        wide(&a.0),
                        "a step with a NaN loss changed a parameter"
                    );
                    prop_assert_eq!(
                        down(b, &m2)?,
                        wide(&c.2),
                        "a step with a NaN loss changed a moment"
                    );
                }
            }
            Ok(())
        },
    )
}
