//! Deterministic initialisation from a seed (the init scheme of a fresh model).
//!
//! | parameter | init |
//! |---|---|
//! | embedding tables, linear weights | N(0, 0.02²) truncated at ±2σ (GPT-2 style) |
//! | attention and FF output projections | N(0, (0.02/√(2·blocks))²), so the residual stream's variance does not grow with depth |
//! | conv weights | N(0, 1/fan_in) |
//! | biases, LayerNorm/GroupNorm β | 0 |
//! | LayerNorm/GroupNorm γ | 1 |
//!
//! Values are drawn in the order layers ask for them, from one `StdRng` seeded with the seed, so the same seed
//! gives the same model on every backend and thread count.

use gato_core::{Backend, HostSlice, Init, ParamSource, Result, Shape, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Draws fresh parameters on a backend.
pub struct RandomInit<'a> {
    backend: &'a dyn Backend,
    rng: StdRng,
    names: Vec<String>,
}

impl<'a> RandomInit<'a> {
    /// A source seeded with `seed`.
    pub fn new(backend: &'a dyn Backend, seed: u64) -> Self {
        RandomInit {
            backend,
            rng: StdRng::seed_from_u64(seed),
            names: Vec::new(),
        }
    }

    /// Names handed out so far, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// `n` values of a truncated normal N(0, std²), cut at ±2σ by redrawing.
pub fn truncated_normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| loop {
            let z: f32 = StandardNormal.sample(rng);
            if z.abs() <= 2.0 {
                break z * std;
            }
        })
        .collect()
}

impl ParamSource for RandomInit<'_> {
    fn param(&mut self, name: &str, shape: &Shape, init: Init) -> Result<Tensor> {
        self.names.push(name.to_string());
        let n = shape.checked_elem_count("RandomInit")?;
        let data = match init {
            Init::Normal(std) => truncated_normal(&mut self.rng, n, std),
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
        };
        self.backend.upload(HostSlice::F32(&data), shape)
    }
}
