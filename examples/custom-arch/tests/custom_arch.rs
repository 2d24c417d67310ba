//! An architecture registered from outside kiln-models loads and generates through the same
//! `ChatPipeline::load_with` path as the built-in ones.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_chat_template::Message;
use kiln_example_custom_arch::{ToyBigram, ToyConfig, VOCAB, register, write_checkpoint};
use kiln_models::ModelError;
use kiln_models::config::ModelConfig;
use kiln_models::generate::{GenerationConfig, StopReason};
use kiln_models::model::CausalLm;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use kiln_models::registry::Registry;
use kiln_models::weights::SafetensorsSource;

type B = NdArray;

fn checkpoint(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-toy-{name}-{}", std::process::id()));
    write_checkpoint(&dir).unwrap();
    dir
}

#[test]
fn the_registered_architecture_counts_through_chat_pipeline() {
    let dir = checkpoint("chat");
    let mut registry = Registry::<B>::default();
    register(&mut registry);
    assert!(registry.causal_lm_types().any(|t| t == "toy_bigram"));
    let pipeline = ChatPipeline::load_with(&dir, &LoadOptions::default(), &registry).unwrap();
    assert_eq!(pipeline.terminators(), [0]);
    let config = GenerationConfig {
        max_new_tokens: Some(20),
        ..GenerationConfig::default()
    };
    let mut streamed = String::new();
    let out = pipeline
        .chat(&[Message::user("six")], &config, &mut |d| {
            streamed.push_str(d);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(out.text, "seven eight nine ten");
    assert_eq!(streamed, out.text);
    assert_eq!(out.tokens, [8, 9, 10, 11, 0]);
    assert_eq!(out.stop, StopReason::Eos(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_registration_the_model_type_is_unknown() {
    let dir = checkpoint("unknown");
    let err = ChatPipeline::<B>::load(&dir, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, ModelError::UnknownArchitecture { model_type, known }
            if model_type == "toy_bigram" && known.contains("llama")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forward_computes_the_documented_logits() {
    let dir = checkpoint("forward");
    let config =
        ToyConfig::from_config(&ModelConfig::from_file(&dir.join("config.json")).unwrap()).unwrap();
    let mut source = SafetensorsSource::open(&dir).unwrap();
    let model = ToyBigram::<B>::load(config, &mut source, &Default::default()).unwrap();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![2i64, 11], [1, 2]),
        &Default::default(),
    );
    let mut cache = model.new_cache();
    let logits: Vec<f32> = model
        .forward(ids, &mut cache, false)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let v = VOCAB.len();
    let mut want = vec![0.0f32; 2 * v];
    want[3] = 10.0; // "one" -> "two"
    want[v] = 10.0; // "ten" -> "</s>"
    assert_eq!(logits, want);
    assert_eq!(cache.seq_len, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
