//! The optimiser's ops (design.md §8): `sum_squares` against an f64 sum, and `adamw_step` against the f64 AdamW
//! of [`crate::reference::optim`] — in place, copy-on-write (a handle sharing the old storage keeps its values) —
//! plus its shape and dtype errors.

#[allow(unused_imports)]
use super::*;
use crate::backend::AdamWStep;
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
