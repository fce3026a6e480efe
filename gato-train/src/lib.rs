//! # gato-train
//!
//! Training Gato by behaviour cloning (paper §2.3, App. C.4; `docs/design.md` §8): the masked cross-entropy's
//! gradients (`gato_transformer::GatoTransformer::loss_and_gradients`), global-norm clipping, AdamW with
//! decoupled weight decay on matrices and tables, and the learning-rate schedule (linear warm-up, then cosine
//! decay), all from `TrainingConfig`.
//!
//! The trainer owns the parameters as named tensors; each step views them as a model
//! ([`ParamMap`] is a `ParamSource`: building the model copies no weight), so the weights being trained are never
//! the acting view (`pack_block_weights`) of a model.

#![warn(missing_docs)]

mod adamw;
pub mod checkpoint;
mod distributed;
mod error;
mod params;
pub mod run;
mod schedule;
mod trainer;

pub use adamw::{clip_scale, decays, AdamW, HostGradients};
pub use distributed::{rendezvous, shard, Communicator, LocalCommunicator, LocalGroup, BUCKET};
pub use error::{RunResult, TrainError};
pub use params::ParamMap;
pub use schedule::learning_rate;
pub use trainer::{accumulated_gradients, effective_precision, step_model, StepReport, Trainer};
