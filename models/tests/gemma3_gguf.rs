//! The real Gemma 3 270M (GGUF, Q4_K_M) against transformers loading the same file
//! (fixture: scripts/reference/models_gemma3.py): logits of a 13-token prompt at every position
//! (top-16 and a fixed sample of ids across the 262k vocabulary) and 8 greedy tokens.
//!
//! Both sides run the same dequantized f32 weights, so only f32 rounding (summation order)
//! separates them: measured 1.5e-5 at logits up to ~23, a relative 7e-7, i.e. f32 epsilon. The
//! bound, 5e-4, leaves 30x room for other summation orders (threads, BLAS) while any real
//! mistake (a norm offset, the score scale, a RoPE base, the embedding scale) moves logits by
//! 1e-1 or more; greedy tokens are asserted equal too.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::generate::{GenerationConfig, generate};
use kiln_models::pipeline::{LoadOptions, load_model};
use serde::Deserialize;

type B = NdArray;

const BOUND: f32 = 5e-4;

#[derive(Deserialize)]
struct Position {
    top_ids: Vec<usize>,
    top_logits: Vec<f32>,
    sample_logits: Vec<f32>,
}

#[derive(Deserialize)]
struct Greedy {
    tokens: Vec<u32>,
}

#[derive(Deserialize)]
struct Expected {
    prompt_ids: Vec<u32>,
    sample_ids: Vec<usize>,
    positions: Vec<Position>,
    greedy: Greedy,
}

fn artifact() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")));
    let path = cache.join("gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch gemma3`",
        path.display()
    );
    path
}

#[test]
fn gemma3_270m_gguf_logits_and_greedy_tokens_equal_transformers() {
    let expected: Expected = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/gemma3_270m.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let options = LoadOptions {
        attention: AttentionImpl::Eager,
        ..LoadOptions::default()
    };
    let model = load_model::<B>(&artifact(), &options).unwrap();

    let seq = expected.prompt_ids.len();
    let ids: Vec<i64> = expected.prompt_ids.iter().map(|&t| i64::from(t)).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, seq]), &Default::default());
    let mut cache = model.new_cache();
    let logits: Vec<f32> = model
        .forward(ids, &mut cache, false)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let vocab = logits.len() / seq;
    assert_eq!(vocab, 262144);
    let mut worst = 0.0f32;
    for (pos, want) in expected.positions.iter().enumerate() {
        let row = &logits[pos * vocab..(pos + 1) * vocab];
        let pairs = want
            .top_ids
            .iter()
            .zip(&want.top_logits)
            .chain(expected.sample_ids.iter().zip(&want.sample_logits));
        for (&id, &w) in pairs {
            worst = worst.max((row[id] - w).abs());
        }
        let argmax = kiln_models::generate::argmax(row) as usize;
        assert_eq!(argmax, want.top_ids[0], "position {pos}: top token");
    }
    assert!(worst < BOUND, "max abs logit diff {worst}");

    let config = GenerationConfig::greedy(expected.greedy.tokens.len());
    let out = generate::<B, _>(
        model.as_ref(),
        &expected.prompt_ids,
        &config,
        &Default::default(),
        &|_| String::new(),
        &mut |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(out.tokens, expected.greedy.tokens);
    eprintln!("gemma3 270m: max abs logit diff {worst:e} over {seq} positions");
}
