//! Acting-only weight layouts ([`gato_core::MatmulOps::pack_weight`]): a weight laid out once in strips for the
//! few-row products of acting ([`packed`]), and bf16 weights in row pairs for bf16 × bf16 products on CPUs with
//! AVX512_BF16 (`bf16_pairs`). An acting view holds its original tensor too, so training's f32 weights are never
//! replaced.

pub(crate) mod bf16_pairs;
pub mod packed;
