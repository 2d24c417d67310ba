//! Checks shared by the parity tests: a model (any architecture, behind `CausalLm`) against the
//! transformers fixtures of scripts/reference/models_tiny.py.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses part of it.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_models::model::{AttentionMask, CausalLm};
use serde_json::Value;

pub type B = NdArray;

/// The f32 logit tolerance against transformers (CPU, same weights).
pub const TOLERANCE: f32 = 1e-4;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

pub fn expected(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

pub fn ids(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    Tensor::from_data(
        TensorData::new(rows.concat(), [rows.len(), width]),
        &Default::default(),
    )
}

pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| {
            assert!(a.is_finite(), "non-finite logit {a}");
            (a - b).abs()
        })
        .fold(0.0, f32::max)
}

fn to_vec(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

/// Largest logit difference over the single-sequence cases (full pass, no cache).
pub fn full_pass_diff(model: &dyn CausalLm<B>, expected: &Value) -> f32 {
    let mut worst = 0.0f32;
    for case in expected["cases"].as_array().unwrap() {
        let input: Vec<i64> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        let want: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone()).unwrap();
        let mut cache = model.new_cache();
        let got = to_vec(model.forward(ids(&[input]), &mut cache, false).unwrap());
        worst = worst.max(max_abs_diff(&got, &want.concat()));
    }
    worst
}

/// Prefills part of the longest case, then decodes the rest one token at a time through the
/// cache (longer than any sliding window of the fixtures); largest difference.
pub fn decode_diff(model: &dyn CausalLm<B>, expected: &Value) -> f32 {
    let case = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|c| c["input_ids"].as_array().unwrap().len())
        .unwrap();
    let input: Vec<i64> = serde_json::from_value(case["input_ids"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone()).unwrap();
    let mut cache = model.new_cache();
    let prefill = 5;
    let got = to_vec(
        model
            .forward(ids(&[input[..prefill].to_vec()]), &mut cache, false)
            .unwrap(),
    );
    let mut worst = max_abs_diff(&got, &want[..prefill].concat());
    for pos in prefill..input.len() {
        let got = to_vec(
            model
                .forward(ids(&[vec![input[pos]]]), &mut cache, true)
                .unwrap(),
        );
        worst = worst.max(max_abs_diff(&got, &want[pos]));
    }
    assert_eq!(cache.seq_len, input.len());
    worst
}

/// The left-padded batch: logits at real positions, then two more tokens per row through the
/// cache; largest difference.
pub fn padded_diff(model: &dyn CausalLm<B>, expected: &Value) -> f32 {
    let p = &expected["padded"];
    let input: Vec<Vec<i64>> = serde_json::from_value(p["input_ids"].clone()).unwrap();
    let rows: Vec<Vec<u8>> = serde_json::from_value(p["attention_mask"].clone()).unwrap();
    let want: Vec<Vec<Option<Vec<f32>>>> = serde_json::from_value(p["logits"].clone()).unwrap();
    let mut mask = AttentionMask::from_rows(&rows).unwrap();
    let mut cache = model.new_cache();
    let logits = model
        .forward_with(ids(&input), Some(&mask), &mut cache, false)
        .unwrap();
    let [batch, seq, vocab] = logits.dims();
    let got = to_vec(logits);
    let mut worst = 0.0f32;
    let mut compared = 0;
    for b in 0..batch {
        for j in 0..seq {
            let row = &got[(b * seq + j) * vocab..(b * seq + j + 1) * vocab];
            assert!(row.iter().all(|v| v.is_finite()), "row {b} position {j}");
            if let Some(w) = &want[b][j] {
                worst = worst.max(max_abs_diff(row, w));
                compared += 1;
            }
        }
    }
    assert!(compared > 0 && compared < batch * seq, "padding expected");
    let c = &p["continuation"];
    let more: Vec<Vec<i64>> = serde_json::from_value(c["input_ids"].clone()).unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(c["logits"].clone()).unwrap();
    mask.push_real(more[0].len());
    let got = to_vec(
        model
            .forward_with(ids(&more), Some(&mask), &mut cache, false)
            .unwrap(),
    );
    worst.max(max_abs_diff(&got, &want.concat().concat()))
}

/// Greedy generation of the padded batch, one forward per step, against `generate`.
pub fn batch_greedy(model: &dyn CausalLm<B>, expected: &Value) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let p = &expected["padded"];
    let input: Vec<Vec<i64>> = serde_json::from_value(p["input_ids"].clone()).unwrap();
    let rows: Vec<Vec<u8>> = serde_json::from_value(p["attention_mask"].clone()).unwrap();
    let g = &expected["batch_greedy"];
    let want: Vec<Vec<u32>> = serde_json::from_value(g["tokens"].clone()).unwrap();
    let steps = g["max_new_tokens"].as_u64().unwrap() as usize;
    let mut mask = AttentionMask::from_rows(&rows).unwrap();
    let mut cache = model.new_cache();
    let mut step = input;
    let mut got = vec![Vec::new(); step.len()];
    for _ in 0..steps {
        let logits = to_vec(
            model
                .forward_with(ids(&step), Some(&mask), &mut cache, true)
                .unwrap(),
        );
        let vocab = logits.len() / got.len();
        let next: Vec<u32> = logits
            .chunks(vocab)
            .map(kiln_models::generate::argmax)
            .collect();
        for (g, &t) in got.iter_mut().zip(&next) {
            g.push(t);
        }
        step = next.iter().map(|&t| vec![i64::from(t)]).collect();
        mask.push_real(1);
    }
    (got, want)
}
