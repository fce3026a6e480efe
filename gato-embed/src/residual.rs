//! `ResidualEmbedding` (App. C.2): each 16×16 patch goes through a stem conv 1×1 C→64, then `num_res_blocks` (1)
//! pre-activation ResNet-v2 blocks `x + conv3×3(GELU(GN(conv3×3(GELU(GN(x))))))` with GroupNorm(32) at 16×16
//! resolution, then is flattened (64·16·16, channel-major) and mapped linearly to the model width.
//!
//! ```text
//! patches [N, P, P, C] ─permute─► [N, C, P, P] ─conv1×1─► [N, 64, P, P]
//!   └► blocks: h = x; x = GN → GELU → conv3×3 → GN → GELU → conv3×3; x += h
//!   └► reshape [N, 64·P·P] ─linear─► [N, width]
//! ```

use crate::gather::{gather, position_rows};
use gato_core::{
    Backend, BinaryOp, Conv2dSpec, Embedding, EmbeddingMode, Error, GatoConfig, HostSlice, Init,
    Modality, ParamSource, Result, Shape, Tensor, TokenBatch, UnaryOp,
};

/// One pre-activation residual block.
struct ResBlock {
    norm1: (Tensor, Tensor),
    conv1: (Tensor, Tensor),
    norm2: (Tensor, Tensor),
    conv2: (Tensor, Tensor),
}

/// The ResNet patch embedding.
pub struct ResidualEmbedding {
    stem: (Tensor, Tensor),
    blocks: Vec<ResBlock>,
    proj: (Tensor, Tensor),
    patch: usize,
    in_channels: usize,
    channels: usize,
    groups: usize,
    eps: f32,
    names: Vec<(String, Tensor)>,
}

impl ResidualEmbedding {
    /// Parameters `embed.patch.*` (see the checkpoint name table in gato-transformer).
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        let (c, ch, p, w) = (
            config.image_channels,
            config.patch_embedding_channels,
            config.img_patch_size,
            config.layer_width,
        );
        let mut names = Vec::new();
        let mut get = |name: String, shape: Shape, init: Init| -> Result<Tensor> {
            let t = src.param(&name, &shape, init)?;
            names.push((name, t.clone()));
            Ok(t)
        };
        let conv_std = |fan_in: usize| Init::Normal((1.0 / fan_in as f32).sqrt());
        let stem = (
            get(
                "embed.patch.stem.weight".into(),
                Shape::from([ch, c, 1, 1]),
                conv_std(c),
            )?,
            get(
                "embed.patch.stem.bias".into(),
                Shape::from([ch]),
                Init::Zeros,
            )?,
        );
        let mut blocks = Vec::new();
        for i in 0..config.num_res_blocks {
            let pre = format!("embed.patch.blocks.{i}");
            let mut norm = |k: &str| -> Result<(Tensor, Tensor)> {
                Ok((
                    get(format!("{pre}.{k}.weight"), Shape::from([ch]), Init::Ones)?,
                    get(format!("{pre}.{k}.bias"), Shape::from([ch]), Init::Zeros)?,
                ))
            };
            let norm1 = norm("norm1")?;
            let norm2_pending = norm("norm2")?;
            let mut conv = |k: &str| -> Result<(Tensor, Tensor)> {
                Ok((
                    get(
                        format!("{pre}.{k}.weight"),
                        Shape::from([ch, ch, 3, 3]),
                        conv_std(ch * 9),
                    )?,
                    get(format!("{pre}.{k}.bias"), Shape::from([ch]), Init::Zeros)?,
                ))
            };
            blocks.push(ResBlock {
                norm1,
                conv1: conv("conv1")?,
                norm2: norm2_pending,
                conv2: conv("conv2")?,
            });
        }
        let proj = (
            get(
                "embed.patch.proj.weight".into(),
                Shape::from([ch * p * p, w]),
                Init::Normal(0.02),
            )?,
            get(
                "embed.patch.proj.bias".into(),
                Shape::from([w]),
                Init::Zeros,
            )?,
        );
        Ok(ResidualEmbedding {
            stem,
            blocks,
            proj,
            patch: p,
            in_channels: c,
            channels: ch,
            groups: config.num_group_norm_groups,
            eps: config.layer_norm_eps as f32,
            names,
        })
    }

    /// Values per patch the embedding expects, `P·P·C`.
    pub fn patch_len(&self) -> usize {
        self.patch * self.patch * self.in_channels
    }

    /// Embed `n` patches (`[n, P, P, C]` flattened) → `[n, width]`.
    pub fn embed_patches(
        &self,
        backend: &dyn Backend,
        patches: &[f32],
        n: usize,
    ) -> Result<Tensor> {
        let (p, c) = (self.patch, self.in_channels);
        if patches.len() != n * self.patch_len() {
            return Err(Error::shape(
                "ResidualEmbedding",
                format!("{} values for {n} patches of {p}×{p}×{c}", patches.len()),
            ));
        }
        let x = backend.upload(HostSlice::F32(patches), &Shape::from([n, p, p, c]))?;
        let x = backend.permute(&x, &[0, 3, 1, 2])?; // [n, C, P, P]
        let mut x = backend.conv2d(&x, &self.stem.0, Some(&self.stem.1), &Conv2dSpec::default())?;
        let same = Conv2dSpec {
            stride: 1,
            padding: 1,
        };
        for blk in &self.blocks {
            let h = backend.group_norm(&x, self.groups, &blk.norm1.0, &blk.norm1.1, self.eps)?;
            let h = backend.unary(UnaryOp::Gelu, &h)?;
            let h = backend.conv2d(&h, &blk.conv1.0, Some(&blk.conv1.1), &same)?;
            let h = backend.group_norm(&h, self.groups, &blk.norm2.0, &blk.norm2.1, self.eps)?;
            let h = backend.unary(UnaryOp::Gelu, &h)?;
            let h = backend.conv2d(&h, &blk.conv2.0, Some(&blk.conv2.1), &same)?;
            x = backend.binary(BinaryOp::Add, &x, &h)?;
        }
        let flat = x.reshape([n, self.channels * p * p])?;
        backend.linear(&flat, &self.proj.0, Some(&self.proj.1))
    }

    /// The parameter gradients of [`Self::embed_patches`] given `demb` (`[n, width]`), its output's gradient, by
    /// name: the forward is recomputed with the norms' statistics kept, then each layer's backward runs in reverse
    /// (projection, each block's conv → GELU → GroupNorm twice with the identity path, the stem).
    pub fn patches_backward(
        &self,
        backend: &dyn Backend,
        patches: &[f32],
        n: usize,
        demb: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        use gato_core::MatmulSpec;
        let (p, c) = (self.patch, self.in_channels);
        let x_in = backend.upload(HostSlice::F32(patches), &Shape::from([n, p, p, c]))?;
        let x_in = backend.permute(&x_in, &[0, 3, 1, 2])?;
        let stem_spec = Conv2dSpec::default();
        let same = Conv2dSpec {
            stride: 1,
            padding: 1,
        };
        let mut x = backend.conv2d(&x_in, &self.stem.0, Some(&self.stem.1), &stem_spec)?;
        // Per block: its input, and each norm's input, output and statistics, and each GELU's output.
        struct Saved {
            x: Tensor,
            n1: (Tensor, Tensor, Tensor),
            a1: Tensor,
            c1: Tensor,
            n2: (Tensor, Tensor, Tensor),
            a2: Tensor,
        }
        let mut saved = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let n1 =
                backend.group_norm_train(&x, self.groups, &blk.norm1.0, &blk.norm1.1, self.eps)?;
            let a1 = backend.unary(UnaryOp::Gelu, &n1.0)?;
            let c1 = backend.conv2d(&a1, &blk.conv1.0, Some(&blk.conv1.1), &same)?;
            let n2 =
                backend.group_norm_train(&c1, self.groups, &blk.norm2.0, &blk.norm2.1, self.eps)?;
            let a2 = backend.unary(UnaryOp::Gelu, &n2.0)?;
            let c2 = backend.conv2d(&a2, &blk.conv2.0, Some(&blk.conv2.1), &same)?;
            let next = backend.binary(BinaryOp::Add, &x, &c2)?;
            saved.push(Saved {
                x,
                n1,
                a1,
                c1,
                n2,
                a2,
            });
            x = next;
        }
        let flat = x.reshape([n, self.channels * p * p])?;
        let mut grads = Vec::new();
        // Projection: flat · W + b.
        let dflat = backend.matmul(demb, &self.proj.0, &MatmulSpec::nt())?;
        let dw = backend.matmul(
            &flat,
            demb,
            &MatmulSpec {
                trans_a: true,
                ..Default::default()
            },
        )?;
        grads.push(("embed.patch.proj.weight".to_string(), dw));
        grads.push(("embed.patch.proj.bias".to_string(), backend.sum_rows(demb)?));
        let mut dx = dflat.reshape([n, self.channels, p, p])?;
        for (i, (blk, s)) in self.blocks.iter().zip(&saved).enumerate().rev() {
            let pre = format!("embed.patch.blocks.{i}");
            let (da2, dwc2, dbc2) = backend.conv2d_backward(&s.a2, &blk.conv2.0, &dx, &same)?;
            let dn2 = backend.unary_backward(UnaryOp::Gelu, &s.n2.0, &da2)?;
            let (dc1, dg2, db2) = backend.group_norm_backward(
                &dn2,
                &s.c1,
                self.groups,
                &blk.norm2.0,
                &s.n2.1,
                &s.n2.2,
            )?;
            let (da1, dwc1, dbc1) = backend.conv2d_backward(&s.a1, &blk.conv1.0, &dc1, &same)?;
            let dn1 = backend.unary_backward(UnaryOp::Gelu, &s.n1.0, &da1)?;
            let (dxb, dg1, db1) = backend.group_norm_backward(
                &dn1,
                &s.x,
                self.groups,
                &blk.norm1.0,
                &s.n1.1,
                &s.n1.2,
            )?;
            dx = backend.binary(BinaryOp::Add, &dx, &dxb)?;
            for (k, g) in [
                ("norm1.weight", dg1),
                ("norm1.bias", db1),
                ("conv1.weight", dwc1),
                ("conv1.bias", dbc1),
                ("norm2.weight", dg2),
                ("norm2.bias", db2),
                ("conv2.weight", dwc2),
                ("conv2.bias", dbc2),
            ] {
                grads.push((format!("{pre}.{k}"), g));
            }
        }
        let (_, dws, dbs) = backend.conv2d_backward(&x_in, &self.stem.0, &dx, &stem_spec)?;
        grads.push(("embed.patch.stem.weight".to_string(), dws));
        grads.push(("embed.patch.stem.bias".to_string(), dbs));
        Ok(grads)
    }
}

impl Embedding for ResidualEmbedding {
    fn name(&self) -> &str {
        "patch"
    }

    fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
    ) -> Result<Tensor> {
        let n = batch.patch_positions.len();
        let width = self.proj.0.dims()[1];
        if n == 0 {
            return backend.zeros(
                &Shape::from([batch.batch, batch.seq_len, width]),
                gato_core::DType::F32,
            );
        }
        let table = self.embed_patches(backend, &batch.patches, n)?;
        let rows = position_rows(batch, |i| {
            Ok((batch.modality[i] == Modality::Image).then_some(batch.ids[i]))
        })?;
        gather(backend, &table, batch, &rows)
    }

    fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let n = batch.patch_positions.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = position_rows(batch, |i| {
            Ok((batch.modality[i] == Modality::Image).then_some(batch.ids[i]))
        })?;
        // The gradient of each patch's embedding: the rows of `dy` at its position.
        let demb = crate::gather::gather_backward(backend, n, batch, &rows, dy)?;
        self.patches_backward(backend, &batch.patches, n, &demb)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.names.clone()
    }

    /// Only image patches get this contribution.
    fn applies_to(&self, batch: &TokenBatch) -> bool {
        batch.modality.contains(&Modality::Image)
    }
}
