//! `GatoTransformer`: input embedding → decoder blocks → final LayerNorm → logits `h · Eᵀ` with the shared table
//! (tied, §2.2) or an untied head. Written once against `&dyn Backend`.
//!
//! Dropout (0.1 in training, design.md §8) applies only in [`GatoTransformer::loss_and_gradients_with`]; every
//! inference path runs without it.

use gato_core::{
    run_scoped, Backend, DType, EmbeddingMode, GatoConfig, Init, MatmulPrecision, MatmulSpec,
    Modality, ParamSource, Result, Shape, Tensor, TokenBatch,
};
use gato_embed::{InputEmbedding, RandomInit};

use crate::block::DecoderBlock;
use crate::dropout::Dropout;
use crate::gradients::Gradients;
use crate::kv_cache::LayerCache;
use crate::layers::{LayerNorm, Linear};

/// The whole model.
pub struct GatoTransformer {
    config: GatoConfig,
    /// The sum of the four input embedding contributions.
    pub embed: InputEmbedding,
    /// The decoder blocks.
    pub blocks: Vec<DecoderBlock>,
    /// Final LayerNorm.
    pub final_ln: LayerNorm,
    /// Untied output head `[vocab, W]` (when `tie_embeddings` is false).
    pub head: Option<Tensor>,
    /// Row ranges of the output table already sliced for acting (see [`Self::output_rows`]).
    output_rows_cache: std::sync::Mutex<Vec<OutputRows>>,
}

/// A slice of the output table, with the table it came from (kept alive, so a replaced table never matches).
struct OutputRows {
    table: Tensor,
    range: std::ops::Range<u32>,
    rows: Tensor,
}

impl std::fmt::Debug for GatoTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GatoTransformer({} blocks, width {})",
            self.blocks.len(),
            self.config.layer_width
        )
    }
}

/// Parameter name of the untied head.
pub const HEAD_PARAM: &str = "head.weight";

impl GatoTransformer {
    /// Build from a parameter source (random init or checkpoint). The config must validate.
    ///
    /// A model whose f32 parameters would not fit in the memory available is refused before anything is
    /// allocated ([`gato_core::Error::InsufficientMemory`], with both figures).
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        let count = crate::shapes::count_parameters(config)?.total;
        gato_core::memory::ensure_available(
            format!("the model's {count} f32 parameters"),
            crate::shapes::parameter_bytes(config)?,
        )?;
        let embed = InputEmbedding::new(src, config)?;
        let blocks = (0..config.num_transformer_blocks)
            .map(|i| DecoderBlock::new(src, i, config))
            .collect::<Result<Vec<_>>>()?;
        let final_ln = LayerNorm::new(
            src,
            "final_ln",
            config.layer_width,
            config.layer_norm_eps as f32,
        )?;
        let head = if config.tie_embeddings {
            None
        } else {
            let vocab = config.layout()?.vocab_size as usize;
            Some(src.param(
                HEAD_PARAM,
                &Shape::from([vocab, config.layer_width]),
                Init::Normal(0.02),
            )?)
        };
        Ok(GatoTransformer {
            config: config.clone(),
            embed,
            blocks,
            final_ln,
            head,
            output_rows_cache: Default::default(),
        })
    }

    /// A fresh model from a seed (init scheme: `gato_embed::RandomInit`).
    pub fn init(backend: &dyn Backend, config: &GatoConfig, seed: u64) -> Result<Self> {
        Self::new(&mut RandomInit::new(backend, seed), config)
    }

    /// The config.
    pub fn config(&self) -> &GatoConfig {
        &self.config
    }

    /// Every parameter with its checkpoint name, in construction order.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = self.embed.parameters();
        for (i, b) in self.blocks.iter().enumerate() {
            v.extend(b.parameters(i));
        }
        v.extend(self.final_ln.parameters("final_ln"));
        if let Some(h) = &self.head {
            v.push((HEAD_PARAM.to_string(), h.clone()));
        }
        v
    }

    /// Store the decoder blocks' matrix weights (Q, K, V, O and both feed-forward matrices: 99% of the bytes a
    /// decoded token reads) as `dtype` — f16 or bf16 halve the memory traffic of acting, f32 restores full
    /// width (from the rounded values). Biases, LayerNorms and the embedding table stay f32; every product
    /// accumulates in f32. Results move by the weights' rounding (bf16: ~3 significant digits); the tests bound
    /// the logit change against f32.
    pub fn cast_block_weights(&mut self, be: &dyn Backend, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(gato_core::Error::OutOfRange {
                op: "cast_block_weights",
                what: "dtype".into(),
                value: dtype.to_string(),
                allowed: "f32, f16 or bf16".into(),
            });
        }
        for l in self.block_linears_mut() {
            l.cast_weight(be, dtype)?;
        }
        Ok(())
    }

    /// Lay the decoder blocks' matrix weights out for products with few rows, as acting runs them (design.md §7;
    /// [`gato_core::MatmulOps::pack_weight`]): on the CPU, an observation's products skip their per-call packing pass
    /// at the cost of holding those weights twice. At
    /// [`MatmulPrecision::F32`] values and logits stay the same (to f32 rounding order); at
    /// [`MatmulPrecision::Bf16`] the products against bf16 weights may round their activations to bf16 (on the
    /// CPU: with AVX512_BF16, about twice as fast). Call it after [`Self::cast_block_weights`], which returns
    /// plain tensors; a backend without such a layout leaves the weights as they are. Returns whether the weights
    /// were laid out.
    pub fn pack_block_weights(
        &mut self,
        be: &dyn Backend,
        precision: MatmulPrecision,
    ) -> Result<bool> {
        let mut packed = false;
        for l in self.block_linears_mut() {
            packed |= l.pack_weight(be, precision)?;
        }
        Ok(packed)
    }

    /// Every matrix map of the decoder blocks (attention Q, K, V, O; feed-forward in and out).
    fn block_linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.blocks.iter_mut().flat_map(|b| {
            [
                &mut b.attn.q,
                &mut b.attn.k,
                &mut b.attn.v,
                &mut b.attn.o,
                &mut b.ff.input,
                &mut b.ff.output,
            ]
        })
    }

    /// The dtype of the decoder blocks' matrix weights (see [`Self::cast_block_weights`]).
    pub fn block_weight_dtype(&self) -> DType {
        self.blocks
            .first()
            .map_or(DType::F32, |b| b.attn.q.weight.dtype())
    }

    /// Rows `range` of the output table (the legal ids of an action token, design.md §7), sliced once per range and
    /// kept: acting asks for the same few ranges at every step. A replaced table is sliced afresh.
    pub fn output_rows(&self, be: &dyn Backend, range: std::ops::Range<u32>) -> Result<Tensor> {
        let table = self.output_table();
        let mut cache = self
            .output_rows_cache
            .lock()
            .map_err(|_| gato_core::Error::invalid("output_rows", "cache lock poisoned"))?;
        let same = |e: &OutputRows| {
            e.range == range && std::sync::Arc::ptr_eq(e.table.storage(), table.storage())
        };
        if let Some(e) = cache.iter().find(|e| same(e)) {
            return Ok(e.rows.clone());
        }
        let rows = be.slice(table, 0, range.start as usize, range.len())?;
        if cache.len() >= 8 {
            cache.remove(0);
        }
        cache.push(OutputRows {
            table: table.clone(),
            range,
            rows: rows.clone(),
        });
        Ok(rows)
    }

    /// The output projection `[vocab, W]` (the shared table when tied).
    pub fn output_table(&self) -> &Tensor {
        self.head
            .as_ref()
            .unwrap_or_else(|| self.embed.discrete.table())
    }

    /// The decoder blocks and the final LayerNorm. With `last_only`, the last block computes its output (and the
    /// final norm runs) for the last position only — all that the next token's logits need; every earlier
    /// layer, and the last layer's keys and values, still cover every position.
    fn run_blocks(
        &self,
        be: &dyn Backend,
        mut x: Tensor,
        kv_len: Option<Vec<usize>>,
        mut cache: Option<&mut [LayerCache]>,
        last_only: bool,
    ) -> Result<Tensor> {
        let n = self.blocks.len();
        for (i, b) in self.blocks.iter().enumerate() {
            let c = cache.as_mut().map(|c| &mut c[i]);
            let first = if last_only && i + 1 == n {
                x.dims()[1].saturating_sub(1)
            } else {
                0
            };
            x = b.forward(be, &x, kv_len.clone(), c, first)?;
        }
        self.final_ln.forward(be, &x)
    }

    /// Final hidden states `[B, T, W]` of a batch (evaluation mode unless `mode` says training).
    pub fn hidden(
        &self,
        be: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<Tensor> {
        run_scoped(be, || {
            let x = self.embed.forward(be, batch, mode)?;
            self.run_blocks(be, x, Some(batch.lengths.clone()), None, false)
        })
    }

    /// Logits `[..., vocab]` of hidden states `[..., W]`.
    pub fn logits_of(&self, be: &dyn Backend, h: &Tensor) -> Result<Tensor> {
        be.matmul(h, self.output_table(), &MatmulSpec::nt())
    }

    /// Logits `[B, T, vocab]` at every position (evaluation mode).
    pub fn forward(&self, be: &dyn Backend, batch: &TokenBatch) -> Result<Tensor> {
        let h = self.hidden(be, batch, EmbeddingMode::Eval)?;
        self.logits_of(be, &h)
    }

    /// The masked cross-entropy of a batch (§2.3), computing logits only at the positions whose next token is a
    /// target (text and action tokens): the output head is 33025 rows wide, and most positions of an episode are
    /// observations. Equals [`masked_cross_entropy`] of the full logits.
    pub fn loss(&self, be: &dyn Backend, batch: &TokenBatch) -> Result<LossReport> {
        let scores = self.target_scores(be, batch)?;
        let n = scores.len();
        let sum: f64 = scores.iter().map(|s| s.nll).sum();
        Ok(LossReport {
            loss: if n == 0 { 0.0 } else { sum / n as f64 },
            targets: n,
        })
    }

    /// Every target of a batch under teacher forcing (evaluation mode), in batch order: its `−log p` and whether
    /// the most likely token (over the whole vocabulary) is the target — what validation reports as loss and
    /// token accuracy per task. Logits only at target positions, as [`Self::loss`].
    pub fn target_scores(&self, be: &dyn Backend, batch: &TokenBatch) -> Result<Vec<TargetScore>> {
        let h = self.hidden(be, batch, EmbeddingMode::Eval)?;
        let (rows, targets) = target_positions(batch);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let w = self.config.layer_width;
        // Gather the hidden rows that predict a target: the embedding op is a row gather.
        let table = h.reshape([batch.batch * batch.seq_len, w])?;
        let ids = be.upload(gato_core::HostSlice::U32(&rows), &Shape::from([rows.len()]))?;
        let picked = be.embedding(&table, &ids)?;
        let logp = be.log_softmax(&self.logits_of(be, &picked)?)?;
        let logp = be.download(&logp)?.into_f32().unwrap_or_default();
        let v = logp.len() / rows.len();
        Ok(rows
            .iter()
            .zip(&targets)
            .zip(logp.chunks_exact(v))
            .map(|((&r, &t), row)| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &x)| if x > b.1 { (i, x) } else { b },
                    );
                let position = r as usize + 1;
                TargetScore {
                    position,
                    nll: -(row[t as usize] as f64),
                    correct: best.0 == t as usize,
                    modality: batch.modality[position],
                }
            })
            .collect())
    }

    /// The masked cross-entropy of a batch (§2.3) and the gradient of every parameter it reaches (design.md §8),
    /// llm.c style: the forward keeps what each layer's backward needs; the backward walks the layers in reverse. The loss is the mean over targets, so `d(loss)` per target
    /// is `1 / targets`; the shared table's gradient sums the embedding's and the tied head's.
    pub fn loss_and_gradients(
        &self,
        be: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<(LossReport, Gradients)> {
        self.loss_and_gradients_with(be, batch, mode, Dropout::OFF)
    }

    /// [`Self::loss_and_gradients`] with residual dropout (design.md §8): the masks are drawn once, from
    /// `dropout.seed`, and the backward multiplies by the same ones.
    pub fn loss_and_gradients_with(
        &self,
        be: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
        dropout: Dropout,
    ) -> Result<(LossReport, Gradients)> {
        let (loss, targets, grads) = self.loss_and_gradients_device(be, batch, mode, dropout)?;
        let loss = match targets {
            0 => 0.0,
            _ => be
                .download(&loss)?
                .into_f32()
                .unwrap_or_default()
                .first()
                .copied()
                .unwrap_or(f32::NAN) as f64,
        };
        Ok((LossReport { loss, targets }, grads))
    }

    /// [`Self::loss_and_gradients_with`] with the mean loss left on the backend as a `[1]` f32 tensor (0 when the
    /// batch has no target), and the number of targets: a training step reads the loss back together with what
    /// its optimiser computes, once (design.md §8).
    pub fn loss_and_gradients_device(
        &self,
        be: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
        dropout: Dropout,
    ) -> Result<(Tensor, usize, Gradients)> {
        run_scoped(be, || {
            let mut grads = Gradients::default();
            let (rows, targets) = target_positions(batch);
            if rows.is_empty() {
                return Ok((be.zeros(&Shape::from([1]), DType::F32)?, 0, grads));
            }
            let kv_len = Some(batch.lengths.clone());
            let x0 = self.embed.forward(be, batch, mode)?;
            let mut saved = Vec::with_capacity(self.blocks.len());
            let mut x = x0;
            for (i, b) in self.blocks.iter().enumerate() {
                let m = [
                    dropout.mask(be, x.shape(), i, 0)?,
                    dropout.mask(be, x.shape(), i, 1)?,
                ];
                let (next, s) = b.forward_train(be, &x, kv_len.clone(), m)?;
                saved.push(s);
                x = next;
            }
            let (h, final_stats) = self.final_ln.forward_train(be, &x)?;
            // Logits at the positions that predict a target, and the fused cross-entropy.
            let (n, w) = (batch.batch * batch.seq_len, self.config.layer_width);
            let row_ids =
                be.upload(gato_core::HostSlice::U32(&rows), &Shape::from([rows.len()]))?;
            let picked = be.embedding(&h.reshape([n, w])?, &row_ids)?;
            // Under mixed precision (16-bit block weights, design.md §8) the head's products take 16-bit operands
            // too: the table is rounded once per step, `picked` for the table's gradient.
            let half = match self.block_weight_dtype() {
                DType::F32 => None,
                d => Some(d),
            };
            let table_f32 = self.output_table();
            let rounded = half.map(|d| be.cast(table_f32, d)).transpose()?;
            let table = rounded.as_ref().unwrap_or(table_f32);
            let logits = be.matmul(&picked, table, &MatmulSpec::nt())?;
            let target_ids = be.upload(
                gato_core::HostSlice::U32(&targets),
                &Shape::from([targets.len()]),
            )?;
            let (loss, dlogits) =
                be.cross_entropy(&logits, &target_ids, 1.0 / targets.len() as f32)?;
            // Head: logits = picked · tableᵀ.
            let dpicked = be.matmul(&dlogits, table, &MatmulSpec::default())?;
            let picked_b = match half {
                Some(d) => be.cast(&picked, d)?,
                None => picked,
            };
            let dtable = be.matmul(
                &dlogits,
                &picked_b,
                &MatmulSpec {
                    trans_a: true,
                    ..Default::default()
                },
            )?;
            let head_name = if self.head.is_some() {
                HEAD_PARAM
            } else {
                gato_embed::TOKENS_PARAM
            };
            grads.add(be, head_name, dtable)?;
            let dh = be.embedding_backward(&row_ids, &dpicked, n)?.reshape([
                batch.batch,
                batch.seq_len,
                w,
            ])?;
            let mut dx =
                self.final_ln
                    .backward(be, &x, &final_stats, &dh, "final_ln", &mut grads)?;
            for (i, (b, s)) in self.blocks.iter().zip(&saved).enumerate().rev() {
                dx = b.backward(be, s, &dx, i, &mut grads)?;
            }
            drop(saved);
            grads.extend(be, self.embed.backward(be, batch, mode, &dx)?)?;
            Ok((loss, targets.len(), grads))
        })
    }

    /// Run `new` tokens (batch of one) through the model on top of `cache`, appending their keys and values.
    /// Returns the final hidden states of the new tokens, `[1, t, W]`.
    pub fn extend_cache(
        &self,
        be: &dyn Backend,
        cache: &mut [LayerCache],
        new: &TokenBatch,
    ) -> Result<Tensor> {
        self.extend(be, cache, new, false)
    }

    /// [`Self::extend_cache`] returning the final hidden state of the last new token only, `[1, 1, W]`, and
    /// computing no more than that needs (the last block's queries, attention output and feed-forward for one
    /// row): what acting uses to predict the next token.
    pub fn extend_cache_last(
        &self,
        be: &dyn Backend,
        cache: &mut [LayerCache],
        new: &TokenBatch,
    ) -> Result<Tensor> {
        self.extend(be, cache, new, true)
    }

    fn extend(
        &self,
        be: &dyn Backend,
        cache: &mut [LayerCache],
        new: &TokenBatch,
        last_only: bool,
    ) -> Result<Tensor> {
        run_scoped(be, || {
            let x = self.embed.forward(be, new, EmbeddingMode::Eval)?;
            self.run_blocks(be, x, None, Some(cache), last_only)
        })
    }

    /// The input embeddings of `new` (a batch of one) in evaluation mode, `[1, t, W]` (§2.2). Each token's row
    /// depends on that token alone (its id or patch, its local and patch positions), so a window rebuilt from
    /// stored rows is the window embedded again.
    pub fn embed_eval(&self, be: &dyn Backend, new: &TokenBatch) -> Result<Tensor> {
        run_scoped(be, || self.embed.forward(be, new, EmbeddingMode::Eval))
    }

    /// [`Self::extend_cache`] (or, with `last_only`, [`Self::extend_cache_last`]) from embeddings already made by
    /// [`Self::embed_eval`]: what a window rebuild runs, without embedding the kept image patches again.
    pub fn extend_cache_embedded(
        &self,
        be: &dyn Backend,
        cache: &mut [LayerCache],
        x: Tensor,
        last_only: bool,
    ) -> Result<Tensor> {
        run_scoped(be, || self.run_blocks(be, x, None, Some(cache), last_only))
    }
}

/// The masked cross-entropy loss of a batch (§2.3): the mean over target tokens of `−log p(token)`, where the
/// logits at position `t` predict the token at `t + 1` and only tokens with `loss = true` are targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossReport {
    /// Mean negative log-likelihood per target (nats).
    pub loss: f64,
    /// Number of targets.
    pub targets: usize,
}

/// Compute [`LossReport`] from `[B, T, V]` logits.
pub fn masked_cross_entropy(
    be: &dyn Backend,
    logits: &Tensor,
    batch: &TokenBatch,
) -> Result<LossReport> {
    let v = logits.dims()[2];
    let logp = be
        .download(&be.log_softmax(logits)?)?
        .into_f32()
        .unwrap_or_default();
    let (rows, targets) = target_positions(batch);
    Ok(mean_nll(
        &logp,
        v,
        rows.iter().map(|&r| r as usize),
        &targets,
    ))
}

/// The positions whose logits predict a target (the token after them is text or an action, §2.3) and those
/// target ids, in batch order.
fn target_positions(batch: &TokenBatch) -> (Vec<u32>, Vec<u32>) {
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for b in 0..batch.batch {
        for t in 1..batch.lengths[b] {
            let i = b * batch.seq_len + t;
            if batch.loss[i] && batch.modality[i] != Modality::Image {
                rows.push((i - 1) as u32);
                targets.push(batch.ids[i]);
            }
        }
    }
    (rows, targets)
}

/// Mean of `−log p(target)` where `logp` holds rows of `v` log-probabilities and `rows` names the row of each target.
fn mean_nll(
    logp: &[f32],
    v: usize,
    rows: impl Iterator<Item = usize>,
    targets: &[u32],
) -> LossReport {
    let sum: f64 = rows
        .zip(targets)
        .map(|(r, &t)| -(logp[r * v + t as usize] as f64))
        .sum();
    let n = targets.len();
    LossReport {
        loss: if n == 0 { 0.0 } else { sum / n as f64 },
        targets: n,
    }
}

/// One target under teacher forcing ([`GatoTransformer::target_scores`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetScore {
    /// Its flat position in the batch (`b · seq_len + t`).
    pub position: usize,
    /// `−log p(target)` in nats.
    pub nll: f64,
    /// Whether the most likely token is the target.
    pub correct: bool,
    /// The target's modality: text, or an action's discrete or continuous token.
    pub modality: Modality,
}

/// Upload helper: ids of a single token as a batch of one (used when appending sampled action tokens).
pub fn single_token(id: u32, timestep: u32, local_position: Option<u32>) -> TokenBatch {
    TokenBatch {
        batch: 1,
        seq_len: 1,
        lengths: vec![1],
        ids: vec![id],
        modality: vec![Modality::Discrete],
        local_position: vec![local_position],
        loss: vec![true],
        timestep: vec![timestep],
        patches: vec![],
        patch_positions: vec![],
    }
}
