//! Softmax, log-softmax and attention (causal, KV-cache offsets, padding, long and wide heads).

#[allow(unused_imports)]
use super::*;

fn softmax_check(b: &dyn Backend, log: bool) -> Result<(), String> {
    run(
        (dims_strategy(), 1.0f32..30.0, any::<u64>()),
        move |(dims, range, seed)| {
            let x = Rng::new(seed).vec(dims.iter().product(), -range, range);
            let t = up(b, &x, &dims)?;
            let got = ok(
                "softmax",
                if log {
                    b.log_softmax(&t)
                } else {
                    b.softmax(&t)
                },
            )?;
            let d = *dims.last().unwrap_or(&1);
            close(
                b,
                "softmax",
                &got,
                &r::softmax(&wide(&x), d, log),
                &dims,
                TOL,
            )
        },
    )
}

/// Softmax over the last dim.
pub fn softmax(b: &dyn Backend) -> Result<(), String> {
    softmax_check(b, false)
}

/// Log-softmax over the last dim.
pub fn log_softmax(b: &dyn Backend) -> Result<(), String> {
    softmax_check(b, true)
}

/// Causal / non-causal attention with a query offset (KV cache) and per-sequence key padding.
pub fn attention(b: &dyn Backend) -> Result<(), String> {
    let case = (
        1usize..3,
        1usize..4,
        1usize..10,
        0usize..6,
        1usize..17,
        1usize..17,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

/// Attention with more queries than one tile of a tiled kernel (64 and more rows, a KV-cache offset up to 40).
pub fn attention_long(b: &dyn Backend) -> Result<(), String> {
    let case = (
        1usize..2,
        1usize..3,
        60usize..140,
        0usize..40,
        8usize..33,
        8usize..33,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

/// Attention with head widths that are multiples of 16 (Gato's is 32), which a backend may give a kernel of their
/// own: tiles of a few to over 64 queries, key counts that are and are not whole 16-key strips.
pub fn attention_wide_heads(b: &dyn Backend) -> Result<(), String> {
    let width = prop_oneof![Just(16usize), Just(32usize), Just(48usize)];
    let case = (
        1usize..3,
        1usize..3,
        5usize..80,
        0usize..40,
        width.clone(),
        width,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

type AttentionCase = (usize, usize, usize, usize, usize, usize, bool, bool, u64);

fn attention_cases(
    b: &dyn Backend,
    case: impl Strategy<Value = AttentionCase>,
) -> Result<(), String> {
    run(case, |(bs, h, tq, extra, d, dv, causal, padded, seed)| {
        let mut rng = Rng::new(seed);
        let tk = tq + extra;
        let q = rng.vec(bs * h * tq * d, -1.5, 1.5);
        let k = rng.vec(bs * h * tk * d, -1.5, 1.5);
        let v = rng.vec(bs * h * tk * dv, -1.0, 1.0);
        let kv_len = padded.then(|| (0..bs).map(|_| rng.below(tk + 1)).collect::<Vec<_>>());
        let spec = AttentionSpec {
            scale: 1.0 / (d as f32).sqrt(),
            causal,
            q_offset: extra,
            kv_len,
        };
        let got = ok(
            "attention",
            b.attention(
                &up(b, &q, &[bs, h, tq, d])?,
                &up(b, &k, &[bs, h, tk, d])?,
                &up(b, &v, &[bs, h, tk, dv])?,
                &spec,
            ),
        )?;
        let want = r::attention(
            &wide(&q),
            &wide(&k),
            &wide(&v),
            [bs, h, tq, tk, d, dv],
            &spec,
        );
        close(
            b,
            &format!("attention b{bs} h{h} tq{tq} tk{tk} d{d} dv{dv} {spec:?}"),
            &got,
            &want,
            &[bs, h, tq, dv],
            1e-4,
        )
    })
}
