//! BERT last hidden states against transformers (fixture from scripts/reference/models_bert.py):
//! right padding, sentence pairs (token type ids 1), both together, one token.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::ModelError;
use kiln_models::bert::{Bert, BertConfig};
use kiln_models::config::ModelConfig;
use kiln_models::model::Encoder;
use kiln_models::weights::SafetensorsSource;

type B = NdArray;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-bert")
}

fn config(dir: &Path) -> BertConfig {
    BertConfig::from_config(&ModelConfig::from_file(&dir.join("config.json")).unwrap()).unwrap()
}

fn load(dir: &Path, attention: AttentionImpl) -> Bert<B> {
    let mut src = SafetensorsSource::open(dir).unwrap();
    Bert::load(config(dir), &mut src, attention, &Default::default()).unwrap()
}

fn int2(rows: &serde_json::Value) -> Tensor<B, 2, Int> {
    let rows: Vec<Vec<i64>> = serde_json::from_value(rows.clone()).unwrap();
    let (b, s) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, s]), &Default::default())
}

fn cases() -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn check(model: &dyn Encoder<B>, label: &str) {
    let cases = cases();
    assert!(cases.iter().any(|c| c["name"] == "pair_padded"));
    for case in cases {
        let hidden = model
            .encode(
                int2(&case["input_ids"]),
                Some(int2(&case["token_type_ids"])),
                Some(int2(&case["attention_mask"])),
            )
            .unwrap();
        let want: Vec<Vec<Vec<f32>>> =
            serde_json::from_value(case["last_hidden_state"].clone()).unwrap();
        let want: Vec<f32> = want.concat().concat();
        let got: Vec<f32> = hidden.into_data().to_vec().unwrap();
        let diff = max_abs_diff(&got, &want);
        println!("{label} {}: max abs diff {diff:.2e}", case["name"]);
        assert!(diff < 1e-4, "{label} {}: max abs diff {diff}", case["name"]);
    }
}

#[test]
fn last_hidden_states_equal_transformers_eager_and_sdpa() {
    for attention in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
        let model = load(&fixture(), attention);
        check(&model, &attention.to_string());
    }
}

#[test]
fn padding_changes_nothing_for_the_tokens() {
    // The second row of `padded`, alone and unpadded, gives the same states as in the batch.
    let model = load(&fixture(), AttentionImpl::Eager);
    let padded = &cases()[0];
    assert_eq!(padded["name"], "padded");
    let want: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(padded["last_hidden_state"].clone()).unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![2i64, 40, 41, 3], [1, 4]),
        &Default::default(),
    );
    let got: Vec<f32> = model
        .encode(ids, None, None)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let diff = max_abs_diff(&got, &want[1][..4].concat());
    assert!(diff < 1e-4, "max abs diff {diff}");
}

#[test]
fn weights_with_the_bert_prefix_load_the_same() {
    // Task-head checkpoints (BertForMaskedLM, ...) store the encoder under `bert.`.
    let src = fixture();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: HashMap<String, safetensors::tensor::TensorView<'_>> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (format!("bert.{name}"), view))
        .collect();
    let dir = std::env::temp_dir().join(format!("kiln-bert-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    safetensors::serialize_to_file(&renamed, None, &dir.join("model.safetensors")).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let model = load(&dir, AttentionImpl::Eager);
    check(&model, "bert. prefix");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let model = load(&fixture(), AttentionImpl::Eager);
    let ids = |v: Vec<i64>, s: usize| {
        Tensor::<B, 2, Int>::from_data(TensorData::new(v, [1, s]), &Default::default())
    };
    let err = model.encode(ids(vec![2, 99], 2), None, None).unwrap_err();
    assert!(err.to_string().contains("outside the table of 99"), "{err}");
    let err = model
        .encode(ids(vec![2, 3], 2), Some(ids(vec![0, 2], 2)), None)
        .unwrap_err();
    assert!(err.to_string().contains("token type ids"), "{err}");
    let err = model
        .encode(ids(vec![2, 3], 2), None, Some(ids(vec![1, 1, 1], 3)))
        .unwrap_err();
    assert!(err.to_string().contains("attention_mask"), "{err}");
    let err = model.encode(ids(vec![5; 65], 65), None, None).unwrap_err();
    assert!(
        err.to_string().contains("max_position_embeddings 64"),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_problem() {
    let base = serde_json::json!({
        "model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 3, "intermediate_size": 16
    });
    let err = BertConfig::from_config(&ModelConfig::from_value(base.clone()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("num_attention_heads 3"), "{err}");
    let mut v = base.clone();
    v["num_attention_heads"] = 2.into();
    v["position_embedding_type"] = "relative_key".into();
    let err = BertConfig::from_config(&ModelConfig::from_value(v.clone()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("relative_key"), "{err}");
    v["position_embedding_type"] = "absolute".into();
    v["hidden_act"] = "mish".into();
    let err = BertConfig::from_config(&ModelConfig::from_value(v).unwrap()).unwrap_err();
    assert!(
        matches!(err, ModelError::Config(ref m) if m.contains("mish")),
        "{err}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let src = fixture();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: HashMap<String, safetensors::tensor::TensorView<'_>> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "encoder.layer.1.output.dense.bias")
        .collect();
    let dir = std::env::temp_dir().join(format!("kiln-bert-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    safetensors::serialize_to_file(&kept, None, &dir.join("model.safetensors")).unwrap();
    let mut source = SafetensorsSource::open(&dir).unwrap();
    let err = Bert::<B>::load(
        config(&src),
        &mut source,
        AttentionImpl::Eager,
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("missing tensor `encoder.layer.1.output.dense.bias`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_embedding_load_refuses_a_dtype_or_quantization_instead_of_ignoring_it() {
    use kiln_models::embed::EmbeddingPipeline;
    use kiln_models::pipeline::LoadOptions;
    use kiln_quant::QuantConfig;
    use kiln_quant::codec::{FloatDtype, FourBitType};

    let quantized = LoadOptions::<B> {
        quantization: Some(QuantConfig::four_bit(FourBitType::Nf4)),
        ..LoadOptions::default()
    };
    let err = EmbeddingPipeline::<B>::load(&fixture(), &quantized)
        .err()
        .unwrap();
    assert!(
        matches!(err, ModelError::Input(ref m) if m.contains("unquantized")),
        "{err}"
    );
    let half = LoadOptions::<B> {
        dtype: FloatDtype::F16,
        ..LoadOptions::default()
    };
    let err = EmbeddingPipeline::<B>::load(&fixture(), &half)
        .err()
        .unwrap();
    assert!(
        matches!(err, ModelError::Input(ref m) if m.contains("f32")),
        "{err}"
    );
}
