//! Residual dropout in training (design.md §8): masks drawn from a seed (the same seed, the same loss and
//! gradients; another seed, another loss), the kept fraction close to `1 − rate`, and the backward exact for the
//! masked function: the gradient's length equals the derivative of the loss along it (central differences on the
//! model itself, masks held fixed by the seed).

mod common;

use std::collections::HashMap;

use gato_core::{Backend, EmbeddingMode, HostSlice, Init, ParamSource, Result, Shape, Tensor};
use gato_transformer::{Dropout, GatoTransformer};

/// Parameters moved along a direction: `p + h·d`.
struct Shifted<'a> {
    be: &'a dyn Backend,
    params: HashMap<String, Vec<f32>>,
}

impl ParamSource for Shifted<'_> {
    fn param(&mut self, name: &str, shape: &Shape, _init: Init) -> Result<Tensor> {
        self.be.upload(HostSlice::F32(&self.params[name]), shape)
    }
}

#[test]
fn masks_are_seeded_and_keep_about_one_minus_the_rate() {
    let be = common::backend(2);
    let shape = Shape::from([4, 64, 64]);
    let d = Dropout::new(0.25, 7).unwrap();
    let m = be
        .download(&d.mask(be.as_ref(), &shape, 1, 0).unwrap().unwrap())
        .unwrap()
        .to_f64_vec();
    let kept = m.iter().filter(|&&x| x != 0.0).count() as f64 / m.len() as f64;
    assert!((kept - 0.75).abs() < 0.02, "kept fraction {kept}");
    assert!(m.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.75).abs() < 1e-6));
    let again = be
        .download(&d.mask(be.as_ref(), &shape, 1, 0).unwrap().unwrap())
        .unwrap()
        .to_f64_vec();
    assert_eq!(m, again, "same seed, block and branch: same mask");
    let other = be
        .download(&d.mask(be.as_ref(), &shape, 1, 1).unwrap().unwrap())
        .unwrap()
        .to_f64_vec();
    assert_ne!(m, other, "each branch draws its own mask");
    assert!(Dropout::OFF
        .mask(be.as_ref(), &shape, 0, 0)
        .unwrap()
        .is_none());
}

#[test]
fn dropout_gradients_are_exact_for_the_masked_loss() {
    let c = common::config();
    let be = common::backend(2);
    let model = GatoTransformer::init(be.as_ref(), &c, 3).unwrap();
    let (a, b) = (common::episode(&c, 3, 2), common::episode(&c, 4, 1));
    let batch = common::batch_of(&[&a, &b]);
    let mode = EmbeddingMode::Eval;
    let drop = Dropout::new(0.3, 11).unwrap();
    let (plain, _) = model.loss_and_gradients(be.as_ref(), &batch, mode).unwrap();
    let (r1, g1) = model
        .loss_and_gradients_with(be.as_ref(), &batch, mode, drop)
        .unwrap();
    let (r2, _) = model
        .loss_and_gradients_with(be.as_ref(), &batch, mode, drop)
        .unwrap();
    let (r3, _) = model
        .loss_and_gradients_with(be.as_ref(), &batch, mode, Dropout::new(0.3, 12).unwrap())
        .unwrap();
    assert_eq!(r1.loss, r2.loss, "the same seed draws the same masks");
    assert_ne!(r1.loss, r3.loss, "another seed, other masks");
    assert_ne!(r1.loss, plain.loss, "dropout changes the loss");
    // Along the gradient's own direction the derivative of the loss is ‖g‖.
    let params = model.parameters();
    let host: HashMap<String, (Vec<f32>, Vec<f32>)> = params
        .iter()
        .map(|(n, t)| {
            let p = be.download(t).unwrap().into_f32().unwrap();
            let g = match g1.get(n) {
                Some(g) => be.download(g).unwrap().into_f32().unwrap(),
                None => vec![0.0; p.len()],
            };
            (n.clone(), (p, g))
        })
        .collect();
    let norm = host
        .values()
        .flat_map(|(_, g)| g.iter().map(|&x| x as f64 * x as f64))
        .sum::<f64>()
        .sqrt();
    let h = 1e-2;
    let loss_at = |sign: f64| {
        let mut src = Shifted {
            be: be.as_ref(),
            params: host
                .iter()
                .map(|(n, (p, g))| {
                    let moved = p
                        .iter()
                        .zip(g)
                        .map(|(&x, &d)| (x as f64 + sign * h * d as f64 / norm) as f32)
                        .collect();
                    (n.clone(), moved)
                })
                .collect(),
        };
        let m = GatoTransformer::new(&mut src, &c).unwrap();
        m.loss_and_gradients_with(be.as_ref(), &batch, mode, drop)
            .unwrap()
            .0
            .loss
    };
    let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * h);
    assert!(
        (fd - norm).abs() < 0.02 * norm,
        "derivative along the gradient {fd:.5} vs its norm {norm:.5}"
    );
}
