//! One training step (`docs/design.md` §8): the parameters viewed as a model, the masked cross-entropy and its
//! gradients, global-norm clipping, the scheduled learning rate and AdamW.

use gato_core::{
    Backend, DType, EmbeddingMode, Error, GatoConfig, HostSlice, MatmulPrecision, Result, Shape,
    Tensor, TokenBatch,
};
use gato_transformer::{Dropout, GatoTransformer, Gradients};

use crate::adamw::AdamW;
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
    precision: MatmulPrecision,
}

/// The precision a run asks for, as a backend can give it (design.md §8): bf16 products where the backend
/// multiplies bf16 faster ([`gato_core::MatmulOps::fast_bf16_products`]), f32 elsewhere, so one command line
/// trains on a GPU and on a CPU alike.
pub fn effective_precision(be: &dyn Backend, requested: MatmulPrecision) -> MatmulPrecision {
    match requested {
        MatmulPrecision::Bf16 if be.fast_bf16_products() => MatmulPrecision::Bf16,
        _ => MatmulPrecision::F32,
    }
}

/// The model a training step runs on `params` (a view: no weight is copied), its block weights cast to bf16 at
/// [`MatmulPrecision::Bf16`] (mixed precision, [`Trainer::set_precision`]).
pub fn step_model(
    be: &dyn Backend,
    params: &ParamMap,
    config: &GatoConfig,
    precision: MatmulPrecision,
) -> Result<GatoTransformer> {
    let mut model = GatoTransformer::new(&mut params.clone(), config)?;
    if precision == MatmulPrecision::Bf16 {
        model.cast_block_weights(be, DType::BF16)?;
    }
    Ok(model)
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
            precision: MatmulPrecision::F32,
        }
    }

    /// Mixed precision (design.md §8): at [`MatmulPrecision::Bf16`] every training step multiplies with the
    /// decoder blocks' matrix weights and the output head rounded to bf16 (and `dy` rounded for their weight
    /// gradients), while the master weights, the optimiser's moments, every sum and every other op stay f32. Validation and
    /// [`Self::model`] use the f32 weights. Applies on any backend (on one without fast bf16 products it only
    /// rounds); a run chooses through [`effective_precision`].
    pub fn set_precision(&mut self, precision: MatmulPrecision) {
        self.precision = precision;
    }

    /// The precision of the training steps' products.
    pub fn precision(&self) -> MatmulPrecision {
        self.precision
    }

    /// The model a training step runs ([`step_model`]).
    fn step_model(&self, be: &dyn Backend) -> Result<GatoTransformer> {
        step_model(be, &self.params, &self.config, self.precision)
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

    /// The optimiser's moments as `(name, values, dims)` (read from `be`) and the step counts as a JSON object
    /// (sorted keys).
    pub(crate) fn optimizer_state(&self, be: &dyn Backend) -> Result<(Vec<Moment>, String)> {
        let moments = self
            .opt
            .moments(be)?
            .into_iter()
            .map(|(name, values)| {
                let param = name.get(2..).unwrap_or_default();
                let dims = self
                    .params
                    .0
                    .get(param)
                    .map_or(vec![values.len()], |t| t.dims().to_vec());
                (name, values, dims)
            })
            .collect();
        let state = format!(
            "{{\"adam_steps\":{},\"step\":{}}}",
            self.opt.steps(),
            self.step
        );
        Ok((moments, state))
    }

    /// A trainer continuing from a checkpoint: `model`'s parameters, the optimiser's `moments` and `state` (as
    /// [`Self::optimizer_state`] wrote them), on `be`. Every moment must match its parameter's size.
    pub(crate) fn resume(
        be: &dyn Backend,
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
        let opt = AdamW::from_parts(be, &params, moments, adam_steps).map_err(|e| match e {
            Error::InvalidArgument { detail, .. } => bad(detail),
            other => other,
        })?;
        Ok(Trainer {
            config: model.config().clone(),
            params,
            opt,
            step,
            total_steps,
            precision: MatmulPrecision::F32,
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
        let at_step = |e| at_step(step, e);
        // The model view shares the parameters' storage; it is dropped before the in-place update.
        let (loss, targets, grads) = {
            let model = self.step_model(be)?;
            accumulated_gradients_device(&model, be, batches, mode, dropout).map_err(at_step)?
        };
        self.update(be, &loss, targets, &grads)
    }

    /// Schedule, clip and take the AdamW step with `grads` (the mean gradients of the step's batch) and `loss` (its
    /// mean loss, a `[1]` tensor): the clipping is decided on the backend and the loss and the gradient norm come
    /// back together, the step's one read-back ([`AdamW::step_clipped`]). A non-finite loss or gradient is an
    /// error naming the step (and the parameter), and nothing is updated.
    fn update(
        &mut self,
        be: &dyn Backend,
        loss: &Tensor,
        targets: usize,
        grads: &Gradients,
    ) -> Result<StepReport> {
        let step = self.step;
        let t = &self.config.training;
        let lr = learning_rate(t, step, self.total_steps);
        let seen = self
            .opt
            .step_clipped(be, t, &mut self.params, grads, lr, loss)?;
        if !seen.loss.is_finite() {
            return Err(at_step(
                step,
                Error::NonFinite {
                    field: "loss".into(),
                    index: 0,
                    value: seen.loss,
                },
            ));
        }
        if !seen.norm_sq.is_finite() {
            // Only on this path are the gradients read back, to name the parameter and the element.
            AdamW::global_norm(be, grads).map_err(|e| at_step(step, e))?;
            return Err(at_step(
                step,
                Error::NonFinite {
                    field: "squared gradient norm".into(),
                    index: 0,
                    value: seen.norm_sq,
                },
            ));
        }
        self.step += 1;
        Ok(StepReport {
            step,
            loss: seen.loss,
            targets,
            grad_norm: seen.norm_sq.sqrt(),
            lr,
        })
    }
}

impl Trainer {
    /// One data-parallel optimiser step: this rank's micro-batches `batches` (its [`crate::shard`] of the global
    /// batch, whose first micro-batch has index `first` in it), the gradients summed over the ranks by `comm` and
    /// averaged over the global batch's targets, then the same clipping and AdamW on every rank. With one rank
    /// this is [`Self::step_accumulated`] up to the order of floating-point sums. The loss reported is the
    /// global batch's.
    pub fn step_distributed(
        &mut self,
        be: &dyn Backend,
        comm: &dyn crate::Communicator,
        batches: &[&TokenBatch],
        first: u64,
        mode: EmbeddingMode,
        dropout: Dropout,
    ) -> Result<StepReport> {
        let step = self.step;
        let (loss_sum, targets, local) = {
            let model = self.step_model(be)?;
            crate::distributed::local_sums(&model, be, batches, first, mode, dropout)
                .map_err(|e| at_step(step, e))?
        };
        // The all-reduce of the loss runs on the host, in f64: this rank's sum is read back here.
        let loss_sum = first_f32(be, &loss_sum)?;
        let mut totals = [loss_sum, targets as f64];
        comm.all_reduce_sum_f64(&mut totals)?;
        let names: Vec<(String, Vec<usize>)> = self
            .params
            .0
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        let grads = crate::distributed::all_reduce_mean(be, comm, &names, &local, totals[1])?;
        let loss = if totals[1] > 0.0 {
            totals[0] / totals[1]
        } else {
            0.0
        };
        let loss = be.upload(HostSlice::F32(&[loss as f32]), &Shape::new([1]))?;
        self.update(be, &loss, totals[1] as usize, &grads)
    }
}

/// A non-finite value's error, naming the step it happened at.
fn at_step(step: usize, e: Error) -> Error {
    match e {
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
    }
}

/// The loss and gradients of `model` over the union of `batches` (the targets of all of them weighted equally):
/// `(loss, targets, gradients)`, the gradients on the backend. Micro-batch `i` uses `mode` and `dropout` with their
/// seeds plus `i`. A non-finite loss is an error.
pub fn accumulated_gradients(
    model: &GatoTransformer,
    be: &dyn Backend,
    batches: &[&TokenBatch],
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(f64, usize, Gradients)> {
    let (loss, targets, grads) = accumulated_gradients_device(model, be, batches, mode, dropout)?;
    let loss = first_f32(be, &loss)?;
    if !loss.is_finite() {
        return Err(Error::NonFinite {
            field: "loss".into(),
            index: 0,
            value: loss,
        });
    }
    Ok((loss, targets, grads))
}

/// [`accumulated_gradients`] with the mean loss left on the backend (a `[1]` tensor, 0 without targets).
fn accumulated_gradients_device(
    model: &GatoTransformer,
    be: &dyn Backend,
    batches: &[&TokenBatch],
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(Tensor, usize, Gradients)> {
    if let [batch] = batches {
        // One micro-batch: its mean as it is (no scaling by the target count and back).
        return crate::distributed::micro_batch(model, be, batch, 0, mode, dropout);
    }
    let (loss_sum, total, sum) =
        crate::distributed::local_sums(model, be, batches, 0, mode, dropout)?;
    if total == 0 {
        return Ok((loss_sum, 0, Gradients::default()));
    }
    let mut mean = Gradients::default();
    for (name, g) in sum.iter() {
        mean.add(be, name.clone(), be.affine(g, 1.0 / total as f32, 0.0)?)?;
    }
    Ok((be.affine(&loss_sum, 1.0 / total as f32, 0.0)?, total, mean))
}

/// The first value of an f32 tensor, read back.
fn first_f32(be: &dyn Backend, t: &Tensor) -> Result<f64> {
    Ok(be
        .download(t)?
        .into_f32()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN) as f64)
}
