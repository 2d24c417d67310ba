//! Strided perplexity on the tiny Llama fixture: the negative log-likelihoods equal those of
//! transformers' logits (testdata/models/tiny-llama/expected.json, scripts/reference/models_tiny.py).
//! The real-model comparison with transformers' recipe is cli/tests/perplexity.rs.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::Path;

use burn::backend::NdArray;
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::eval::{PerplexityConfig, perplexity};
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::weights::SafetensorsSource;

type B = NdArray;

fn tiny() -> (Llama<B>, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-llama");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let config = LlamaConfig::from_config(&config).unwrap();
    let mut src = SafetensorsSource::open(&dir).unwrap();
    let model = Llama::load(config, &mut src, AttentionImpl::Eager, &Default::default()).unwrap();
    let expected =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (model, expected)
}

/// `-ln softmax(logits[t - 1])[ids[t]]` for every `t >= 1`, in f64, from transformers' logits.
fn reference_nll(ids: &[u32], logits: &[Vec<f32>]) -> Vec<f64> {
    (1..ids.len())
        .map(|t| {
            let row = &logits[t - 1];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&l| (l as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            lse - row[ids[t] as usize] as f64
        })
        .collect()
}

#[test]
fn nll_equals_transformers_logits() {
    let (model, expected) = tiny();
    // The 21-token case.
    let case = &expected["cases"][2];
    let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone()).unwrap();
    let want = reference_nll(&ids, &logits);
    let want_sum: f64 = want.iter().sum();

    // One window holds the whole text: every token is scored with its full prefix.
    let mut calls = 0;
    let one = perplexity::<B, _>(
        &model,
        &ids,
        &PerplexityConfig {
            context: 32,
            stride: 16,
        },
        &Default::default(),
        &mut |p| {
            calls += 1;
            assert_eq!((p.windows_done, p.windows, p.tokens), (1, 1, 20));
        },
    )
    .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(one.tokens, ids.len() - 1);
    assert!(
        (one.nll_sum - want_sum).abs() < 1e-4,
        "{} vs {want_sum}",
        one.nll_sum
    );
    assert!((one.ppl - (want_sum / 20.0).exp()).abs() / one.ppl < 1e-5);

    // Windows of 8 every 4: the first window's tokens see the same prefix as in the full pass;
    // later ones see less context, so their sum differs from the full-context one.
    let mut seen = Vec::new();
    let strided = perplexity::<B, _>(
        &model,
        &ids,
        &PerplexityConfig {
            context: 8,
            stride: 4,
        },
        &Default::default(),
        &mut |p| seen.push((p.windows_done, p.tokens_scored)),
    )
    .unwrap();
    // 21 tokens: windows start at 0, 4, 8, 12 and 16 (the first to reach the end, 21 < 16 + 8).
    assert_eq!(seen, [(1, 7), (2, 11), (3, 15), (4, 19), (5, 20)]);
    assert_eq!(strided.tokens, 20);
    let first: f64 = want[..7].iter().sum();
    assert!((strided.windows[0].nll_sum - first).abs() < 1e-4);
    let total: f64 = strided.windows.iter().map(|w| w.nll_sum).sum();
    assert!((total - strided.nll_sum).abs() < 1e-9);
    assert!((strided.nll_sum - want_sum).abs() > 1e-3);
}

#[test]
fn bad_input_is_an_error() {
    let (model, _) = tiny();
    let config = PerplexityConfig::default();
    let err = perplexity::<B, _>(&model, &[1], &config, &Default::default(), &mut |_| {});
    assert!(err.unwrap_err().to_string().contains("at least 2 tokens"));
    let config = PerplexityConfig {
        context: 4,
        stride: 5,
    };
    let err = perplexity::<B, _>(
        &model,
        &[1, 2, 3],
        &config,
        &Default::default(),
        &mut |_| {},
    );
    assert!(err.unwrap_err().to_string().contains("stride"));
}
