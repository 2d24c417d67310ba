//! Llama logits against transformers (fixtures from scripts/reference/models_tiny.py).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::weights::SafetensorsSource;

type B = NdArray;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn load(dir: &Path, attention: AttentionImpl) -> Llama<B> {
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let config = LlamaConfig::from_config(&config).unwrap();
    let mut src = SafetensorsSource::open(dir).unwrap();
    Llama::load(config, &mut src, attention, &Default::default()).unwrap()
}

struct Case {
    ids: Vec<i64>,
    /// `[seq][vocab]`.
    logits: Vec<Vec<f32>>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            ids: serde_json::from_value(c["input_ids"].clone()).unwrap(),
            logits: serde_json::from_value(c["logits"].clone()).unwrap(),
        })
        .collect()
}

fn ids(ids: &[i64]) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Default::default(),
    )
}

fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn check_full_pass(name: &str, attention: AttentionImpl) {
    let dir = fixture(name);
    let model = load(&dir, attention);
    for case in cases(&dir) {
        let mut cache = model.new_cache();
        let logits = model.forward(ids(&case.ids), &mut cache, false).unwrap();
        let got: Vec<f32> = logits.into_data().to_vec().unwrap();
        let want: Vec<f32> = case.logits.concat();
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff < 1e-4,
            "{name} ({attention}) {:?}: max abs diff {diff}",
            case.ids
        );
    }
}

#[test]
fn tiny_llama_logits_equal_transformers() {
    check_full_pass("tiny-llama", AttentionImpl::Eager);
    check_full_pass("tiny-llama", AttentionImpl::Sdpa);
}

#[test]
fn tied_llama3_rope_logits_equal_transformers() {
    check_full_pass("tiny-llama3-tied", AttentionImpl::Eager);
}

#[test]
fn decoding_with_the_kv_cache_equals_the_full_pass() {
    let dir = fixture("tiny-llama");
    let model = load(&dir, AttentionImpl::Eager);
    let case = cases(&dir).into_iter().find(|c| c.ids.len() > 8).unwrap();
    let mut cache = model.new_cache();
    let prefill = 5;
    model
        .forward(ids(&case.ids[..prefill]), &mut cache, true)
        .unwrap();
    for pos in prefill..case.ids.len() {
        let logits = model
            .forward(ids(&case.ids[pos..pos + 1]), &mut cache, true)
            .unwrap();
        let got: Vec<f32> = logits.into_data().to_vec().unwrap();
        let diff = max_abs_diff(&got, &case.logits[pos]);
        assert!(diff < 1e-4, "position {pos}: max abs diff {diff}");
    }
    assert_eq!(cache.seq_len, case.ids.len());
}

#[test]
fn transformers_4_config_layout_loads_the_same_model() {
    // Rewrite the 5.x config (`rope_parameters`, `dtype`) in the 4.x layout real checkpoints use.
    let dir = fixture("tiny-llama3-tied");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    let mut rope = obj.remove("rope_parameters").unwrap();
    let theta = rope.as_object_mut().unwrap().remove("rope_theta").unwrap();
    obj.insert("rope_theta".into(), theta);
    obj.insert("rope_scaling".into(), rope);
    let dtype = obj.remove("dtype").unwrap();
    obj.insert("torch_dtype".into(), dtype);
    let v4 = LlamaConfig::from_config(&ModelConfig::from_value(config).unwrap()).unwrap();
    let v5 = LlamaConfig::from_config(&ModelConfig::from_file(&dir.join("config.json")).unwrap())
        .unwrap();
    assert_eq!(v4, v5);
}

#[test]
fn a_wrong_shape_names_the_tensor_and_the_file() {
    let dir = fixture("tiny-llama");
    let mut config =
        LlamaConfig::from_config(&ModelConfig::from_file(&dir.join("config.json")).unwrap())
            .unwrap();
    config.intermediate_size += 1;
    let mut src = SafetensorsSource::open(&dir).unwrap();
    let err = Llama::<B>::load(config, &mut src, AttentionImpl::Eager, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("tiny-llama"),
        "{err}"
    );
}

#[test]
fn a_truncated_checkpoint_is_an_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("kiln-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture("tiny-llama").join("model.safetensors")).unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.join("model.safetensors"), &bytes[..cut]).unwrap();
        let err = SafetensorsSource::open(&dir)
            .err()
            .expect("truncated file rejected")
            .to_string();
        assert!(err.contains("model.safetensors"), "cut {cut}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn greedy_generation_equals_transformers_generate() {
    use kiln_models::generate::{GenerationConfig, StopReason, generate};
    let dir = fixture("tiny-llama");
    let model = load(&dir, AttentionImpl::Eager);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    for g in v["greedy"].as_array().unwrap() {
        let prompt: Vec<u32> = serde_json::from_value(g["prompt"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(g["tokens"].clone()).unwrap();
        let config = GenerationConfig {
            repetition_penalty: g["repetition_penalty"].as_f64().unwrap() as f32,
            ..GenerationConfig::greedy(g["max_new_tokens"].as_u64().unwrap() as usize)
        };
        let decode = |ids: &[u32]| ids.iter().map(|i| format!("<{i}>")).collect::<String>();
        let mut streamed = String::new();
        let out = generate::<B, _>(
            &model,
            &prompt,
            &config,
            &Default::default(),
            &decode,
            &mut |d| {
                streamed.push_str(d);
                std::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(
            out.tokens, want,
            "repetition_penalty {}",
            config.repetition_penalty
        );
        assert_eq!(out.stop, StopReason::MaxTokens);
        assert_eq!(streamed, out.text);

        // The same run with the 3rd token as eos stops there, eos included.
        let config = GenerationConfig {
            eos_token_id: vec![want[2]],
            ..config
        };
        let out = generate::<B, _>(
            &model,
            &prompt,
            &config,
            &Default::default(),
            &decode,
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(out.tokens, want[..3]);
        assert_eq!(out.stop, StopReason::Eos(want[2]));
    }
}

mod common;

#[test]
fn left_padded_batch_equals_transformers() {
    for name in ["tiny-llama", "tiny-llama3-tied"] {
        let dir = fixture(name);
        let expected = common::expected(&dir);
        for attention in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
            let model = load(&dir, attention);
            let diff = common::padded_diff(&model, &expected);
            assert!(
                diff < common::TOLERANCE,
                "{name} ({attention}): max abs diff {diff}"
            );
        }
        let model = load(&dir, AttentionImpl::Eager);
        let (got, want) = common::batch_greedy(&model, &expected);
        assert_eq!(got, want, "{name}: batched greedy tokens");
    }
}

#[test]
fn a_mask_that_does_not_fit_is_an_error() {
    use kiln_models::model::{AttentionMask, CausalLm};
    let model = load(&fixture("tiny-llama"), AttentionImpl::Eager);
    let mut cache = model.new_cache();
    let mask = AttentionMask::left_padded(&[2, 3], 3).unwrap();
    // Two rows of three tokens fit; a mask of 4 columns or one row does not.
    let two = common::ids(&[vec![0, 5, 6], vec![4, 5, 6]]);
    assert!(CausalLm::forward_with(&model, two.clone(), Some(&mask), &mut cache, true).is_ok());
    let mut wrong = mask.clone();
    wrong.push_real(1);
    let err = model
        .forward_with(
            common::ids(&[vec![7], vec![8]]),
            Some(&mask),
            &mut cache,
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("attention mask"), "{err}");
    // A cache of two sequences cannot continue with one.
    let err = model
        .forward(common::ids(&[vec![7]]), &mut cache, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch of 1"), "{err}");
    assert!(
        model
            .forward_with(
                common::ids(&[vec![7], vec![8]]),
                Some(&wrong),
                &mut cache,
                true
            )
            .is_ok()
    );
}
