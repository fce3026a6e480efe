//! AdamW in f64 (App. D; the conventions of [`crate::AdamWStep`]): the reference the backends' in-place update is
//! checked against.

use crate::backend::AdamWStep;

/// One AdamW update in f64: returns `(p', m', v')`.
pub fn adamw(
    s: &AdamWStep,
    p: &[f64],
    g: &[f64],
    m: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let t = s.t.max(1) as i32;
    let (c1, c2) = (1.0 - s.beta1.powi(t), 1.0 - s.beta2.powi(t));
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.len() {
        let gi = g[i] * s.grad_scale;
        let mi = s.beta1 * m[i] + (1.0 - s.beta1) * gi;
        let vi = s.beta2 * v[i] + (1.0 - s.beta2) * gi * gi;
        let pi =
            p[i] * (1.0 - s.lr * s.weight_decay) - s.lr / c1 * mi / (vi.sqrt() / c2.sqrt() + s.eps);
        out.0.push(pi);
        out.1.push(mi);
        out.2.push(vi);
    }
    out
}
