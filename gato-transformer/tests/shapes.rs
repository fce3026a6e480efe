//! The layer shapes of `gato_transformer::shapes` are the shapes of the model that is built, and the parameter
//! count is the sum of the built tensors' sizes — for GELU and GEGLU, tied and untied heads.

mod common;

use gato_core::Activation;
use gato_transformer::{count_parameters, BlockShapes, GatoTransformer};

#[test]
fn block_shapes_are_the_built_shapes() {
    let be = common::backend(1);
    for geglu in [false, true] {
        for tied in [true, false] {
            let mut c = common::config();
            c.tie_embeddings = tied;
            if geglu {
                c.activation = Activation::Geglu;
            }
            let model = GatoTransformer::init(be.as_ref(), &c, 0).unwrap();
            let params = model.parameters();
            let shape = |name: &str| -> Vec<usize> {
                params
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("no parameter {name}"))
                    .1
                    .dims()
                    .to_vec()
            };
            let s = BlockShapes::of(&c);
            let names = ["attn.q", "attn.k", "attn.v", "attn.o", "ff.in", "ff.out"];
            for i in 0..c.num_transformer_blocks {
                for (name, [r, k]) in names.iter().zip(s.matrices()) {
                    assert_eq!(
                        shape(&format!("blocks.{i}.{name}.weight")),
                        [r, k],
                        "{name}"
                    );
                    assert_eq!(shape(&format!("blocks.{i}.{name}.bias")), [k], "{name}");
                }
            }
            let built: u64 = params.iter().map(|(_, t)| t.elem_count() as u64).sum();
            assert_eq!(
                count_parameters(&c).unwrap().total,
                built,
                "geglu {geglu}, tied {tied}"
            );
        }
    }
}
