//! One training step (`docs/design.md` §8): the parameters viewed as a model, the masked cross-entropy and its
//! gradients, global-norm clipping, the scheduled learning rate and AdamW.

use gato_core::{Backend, EmbeddingMode, Error, GatoConfig, Result, TokenBatch};
use gato_transformer::{Dropout, GatoTransformer};

use crate::adamw::{clip_scale, AdamW, HostGradients};
use crate::params::ParamMap;
use crate::schedule::learning_rate;

/// One optimiser moment for a checkpoint: its name (`m.{param}` or `v.{param}`), values and dims.
pub(crate) type Moment = (String, Vec<f32>, Vec<usize>);

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Step index (0-based).
    pub step: usize,
    /// Mean masked cross-entropy of the batch before the update (nats).
    pub loss: f64,
    /// Targets in the batch.
    pub targets: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Parameters, optimiser state and the step count of a run of `total_steps`.
#[derive(Debug, Clone)]
pub struct Trainer {
    config: GatoConfig,
    params: ParamMap,
    opt: AdamW,
    step: usize,
    total_steps: usize,
}

impl Trainer {
    /// Start training `model` (its parameters become the trainer's) for `total_steps` steps.
    pub fn new(model: &GatoTransformer, total_steps: usize) -> Self {
        Trainer {
            config: model.config().clone(),
            params: ParamMap::from_model(model),
            opt: AdamW::default(),
            step: 0,
            total_steps,
        }
    }

    /// The model the current parameters define (no weight is copied).
    pub fn model(&self) -> Result<GatoTransformer> {
        GatoTransformer::new(&mut self.params.clone(), &self.config)
    }

    /// The model's configuration (with its training settings).
    pub fn config(&self) -> &GatoConfig {
        &self.config
    }

    /// The parameters, by checkpoint name.
    pub fn params(&self) -> &ParamMap {
        &self.params
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The optimiser's moments as `(name, values, dims)` and the step counts as a JSON object (sorted keys).
    pub(crate) fn optimizer_state(&self) -> (Vec<Moment>, String) {
        let moments = self
            .opt
            .moments()
            .map(|(name, values)| {
                let param = name.get(2..).unwrap_or_default();
                let dims = self
                    .params
                    .0
                    .get(param)
                    .map_or(vec![values.len()], |t| t.dims().to_vec());
                (name, values.clone(), dims)
            })
            .collect();
        let state = format!(
            "{{\"adam_steps\":{},\"step\":{}}}",
            self.opt.steps(),
            self.step
        );
        (moments, state)
    }

    /// A trainer continuing from a checkpoint: `model`'s parameters, the optimiser's `moments` and `state` (as
    /// [`Self::optimizer_state`] wrote them). Every moment must match its parameter's size.
    pub(crate) fn resume(
        model: &GatoTransformer,
        total_steps: usize,
        moments: std::collections::BTreeMap<String, Vec<f32>>,
        state: &str,
    ) -> Result<Self> {
        let bad = |detail: String| Error::invalid("training checkpoint", detail);
        let v: serde_json::Value =
            serde_json::from_str(state).map_err(|e| bad(format!("state {state:?}: {e}")))?;
        let field = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| bad(format!("state {state:?} has no `{k}`")))
        };
        let (adam_steps, step) = (field("adam_steps")?, field("step")? as usize);
        let params = ParamMap::from_model(model);
        for (name, values) in &moments {
            let p = name.get(2..).unwrap_or_default();
            match params.0.get(p) {
                Some(t) if t.elem_count() == values.len() => {}
                Some(t) => {
                    return Err(bad(format!(
                        "`{name}` holds {} values, parameter `{p}` has {}",
                        values.len(),
                        t.elem_count()
                    )))
                }
                None => return Err(bad(format!("`{name}`: the model has no parameter `{p}`"))),
            }
        }
        Ok(Trainer {
            config: model.config().clone(),
            params,
            opt: AdamW::from_parts(moments, adam_steps)?,
            step,
            total_steps,
        })
    }

    /// One step on `batch` (no dropout). See [`Self::step_accumulated`].
    pub fn step(
        &mut self,
        be: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<StepReport> {
        self.step_accumulated(be, &[batch], mode, Dropout::OFF)
    }

    /// One optimiser step over the micro-batches `batches` (gradient accumulation): the loss and gradients are
    /// those of their union — each micro-batch's mean weighted by its share of the targets — then clipping, the
    /// scheduled learning rate and AdamW. Micro-batch `i` draws its patch positions and dropout masks from the
    /// given seeds plus `i`. A non-finite loss or gradient is an error naming the step, and leaves the parameters
    /// as they were.
    pub fn step_accumulated(
        &mut self,
        be: &dyn Backend,
        batches: &[&TokenBatch],
        mode: EmbeddingMode,
        dropout: Dropout,
    ) -> Result<StepReport> {
        let step = self.step;
        let model = self.model()?;
        let (loss, targets, host) = accumulated_gradients(&model, be, batches, mode, dropout)
            .map_err(|e| match e {
                Error::NonFinite {
                    field,
                    index,
                    value,
                } => Error::NonFinite {
                    field: format!("{field} at step {step}"),
                    index,
                    value,
                },
                other => other,
            })?;
        let grad_norm = AdamW::global_norm(&host);
        let t = &self.config.training;
        let lr = learning_rate(t, step, self.total_steps);
        let scale = clip_scale(grad_norm, t.gradient_clip_norm);
        self.opt.step(be, t, &mut self.params, &host, lr, scale)?;
        self.step += 1;
        Ok(StepReport {
            step,
            loss,
            targets,
            grad_norm,
            lr,
        })
    }
}

/// The loss and host gradients of `model` over the union of `batches` (the targets of all of them weighted
/// equally): `(loss, targets, gradients)`. Micro-batch `i` uses `mode` and `dropout` with their seeds plus `i`.
/// A non-finite loss or gradient is an error.
pub fn accumulated_gradients(
    model: &GatoTransformer,
    be: &dyn Backend,
    batches: &[&TokenBatch],
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(f64, usize, HostGradients)> {
    let mut parts = Vec::with_capacity(batches.len());
    for (i, batch) in batches.iter().enumerate() {
        let i = i as u64;
        let mode = match mode {
            EmbeddingMode::Train { seed } => EmbeddingMode::Train {
                seed: seed.wrapping_add(i),
            },
            EmbeddingMode::Eval => EmbeddingMode::Eval,
        };
        let dropout = Dropout {
            seed: dropout.seed.wrapping_add(i),
            ..dropout
        };
        let (loss, grads) = model.loss_and_gradients_with(be, batch, mode, dropout)?;
        if !loss.loss.is_finite() {
            return Err(Error::NonFinite {
                field: "loss".into(),
                index: 0,
                value: loss.loss,
            });
        }
        parts.push((loss, AdamW::host_gradients(be, &grads)?));
    }
    let total: usize = parts.iter().map(|(l, _)| l.targets).sum();
    if parts.len() == 1 {
        if let Some((l, g)) = parts.pop() {
            return Ok((l.loss, l.targets, g));
        }
    }
    let mut sum = HostGradients::new();
    let mut loss = 0.0;
    for (l, g) in parts {
        if l.targets == 0 {
            continue;
        }
        let w = l.targets as f64 / total as f64;
        loss += l.loss * w;
        for (name, values) in g {
            let acc = sum.entry(name).or_insert_with(|| vec![0.0; values.len()]);
            acc.iter_mut()
                .zip(&values)
                .for_each(|(a, &v)| *a = (*a as f64 + v as f64 * w) as f32);
        }
    }
    Ok((loss, total, sum))
}
