//! all-MiniLM-L6-v2 sentence embeddings against sentence-transformers (fixture from
//! scripts/reference/embed_minilm.py): token ids, then the model's pipeline (mean pooling, L2
//! normalization, 256-token truncation) and CLS / unnormalized mean pooling.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::PathBuf;

use burn::backend::NdArray;
use kiln_models::embed::{EmbeddingPipeline, Pooling};
use kiln_models::pipeline::LoadOptions;

type B = NdArray;

fn model_dir() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")));
    let path = cache.join("minilm");
    assert!(
        path.join("model.safetensors").exists(),
        "{} is missing: run `cargo xtask fetch minilm`",
        path.display()
    );
    path
}

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/models/minilm_embeddings.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares every case's `key` vector; returns the worst cosine and max abs diff.
fn compare(got: &[Vec<f32>], fx: &serde_json::Value, key: &str) -> (f64, f32) {
    let mut worst = (1.0f64, 0.0f32);
    for (case, got) in fx["cases"].as_array().unwrap().iter().zip(got) {
        let want: Vec<f32> = serde_json::from_value(case[key].clone()).unwrap();
        let (cos, diff) = (cosine(got, &want), max_abs_diff(got, &want));
        let text: String = case["text"].as_str().unwrap().chars().take(40).collect();
        println!("{key} {text:?}: cosine {cos:.8}, max abs diff {diff:.2e}");
        assert!(cos >= 0.99999, "{key} {}: cosine {cos}", case["text"]);
        worst = (worst.0.min(cos), worst.1.max(diff));
    }
    worst
}

#[test]
fn minilm_embeddings_equal_sentence_transformers() {
    let fx = fixture();
    let mut pipeline = EmbeddingPipeline::<B>::load(&model_dir(), &LoadOptions::default()).unwrap();
    let config = pipeline.config().clone();
    assert_eq!(config.pooling, Pooling::Mean);
    assert!(config.normalize);
    assert_eq!(pipeline.max_seq_length(), 256);
    assert_eq!(fx["max_seq_length"], 256);
    assert_eq!(pipeline.dim(), 384);

    let texts: Vec<&str> = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"This is an example sentence"));
    for (text, case) in texts.iter().zip(fx["cases"].as_array().unwrap()) {
        let want: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        assert_eq!(pipeline.tokenize(text).unwrap(), want, "{text:?}");
    }
    assert_eq!(
        pipeline.tokenize(texts[6]).unwrap().len(),
        256,
        "truncation"
    );

    // Batches of 3: the padded batches differ from the reference's single batch.
    pipeline.set_batch_size(3);
    let got = pipeline.embed(&texts).unwrap();
    let (cos, diff) = compare(&got, &fx, "embedding");
    println!("normalized mean: worst cosine {cos:.8}, max abs diff {diff:.2e}");
    for v in &got {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    pipeline.set_batch_size(32);
    pipeline.set_normalize(false);
    let (cos, diff) = compare(&pipeline.embed(&texts).unwrap(), &fx, "mean_unnormalized");
    println!("unnormalized mean: worst cosine {cos:.8}, max abs diff {diff:.2e}");
    pipeline.set_pooling(Pooling::Cls);
    let (cos, diff) = compare(&pipeline.embed(&texts).unwrap(), &fx, "cls_unnormalized");
    println!("unnormalized cls: worst cosine {cos:.8}, max abs diff {diff:.2e}");
    assert!(pipeline.embed(&[]).unwrap().is_empty());
}
