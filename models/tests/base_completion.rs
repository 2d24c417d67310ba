//! Base models (no chat template): plain-text completion through `ChatPipeline::complete`
//! against transformers' `generate(**tokenizer(text))` on tiny random Llama, Mistral and Gemma
//! 1/2/3 models (testdata/models/base_completion.json, scripts/reference/models_base.py).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use kiln_chat_template::{ChatTemplate, Message};
use kiln_models::ModelError;
use kiln_models::generate::GenerationConfig;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use serde_json::Value;

use common::{B, fixture};

/// A base model dir as `save_pretrained` leaves one: a tiny model's weights and config, one of
/// the template-less tokenizers.
fn base_model_dir(case: &Value, test: &str) -> PathBuf {
    let model = case["model"].as_str().unwrap();
    let tokenizer = case["tokenizer"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!(
        "kiln-base-{model}-{tokenizer}-{test}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (from, file) in [
        (fixture(model), "config.json"),
        (fixture(model), "model.safetensors"),
        (fixture("base-tokenizers").join(tokenizer), "tokenizer.json"),
        (
            fixture("base-tokenizers").join(tokenizer),
            "tokenizer_config.json",
        ),
    ] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
    }
    dir
}

fn cases() -> Vec<Value> {
    let path = fixture("base_completion.json");
    let fx: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap().clone();
    let models: Vec<&str> = cases.iter().map(|c| c["model"].as_str().unwrap()).collect();
    for m in [
        "tiny-llama",
        "tiny-mistral",
        "tiny-gemma",
        "tiny-gemma2",
        "tiny-gemma3",
    ] {
        assert!(models.contains(&m), "{m} missing from {}", path.display());
    }
    cases
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| u32::try_from(t.as_u64().unwrap()).unwrap())
        .collect()
}

fn load(dir: &Path) -> ChatPipeline<B> {
    ChatPipeline::<B>::load(dir, &LoadOptions::default()).unwrap()
}

fn quiet(_: &str) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[test]
fn completions_equal_transformers_generate_on_every_architecture() {
    for case in cases() {
        let dir = base_model_dir(&case, "complete");
        let pipeline = load(&dir);
        let label = format!("{} + {}", case["model"], case["tokenizer"]);
        assert!(pipeline.template().is_none(), "{label}");
        let config = GenerationConfig::greedy(case["max_new_tokens"].as_u64().unwrap() as usize);
        for single in case["single"].as_array().unwrap() {
            let prompt = single["prompt"].as_str().unwrap();
            assert_eq!(
                pipeline.text_ids(prompt).unwrap(),
                ids(&single["input_ids"]),
                "{label}: tokenizer({prompt:?})"
            );
            let mut streamed = String::new();
            let out = pipeline
                .complete(prompt, &config, &mut |d| {
                    streamed.push_str(d);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(out.tokens, ids(&single["tokens"]), "{label}: {prompt:?}");
            assert_eq!(
                out.text,
                single["text"].as_str().unwrap(),
                "{label}: {prompt:?}"
            );
            assert_eq!(streamed, out.text, "{label}: streamed text");
        }
        let batch = &case["batch"];
        let prompts: Vec<&str> = batch["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let outs = pipeline
            .complete_batch(&prompts, &config, &mut |_, _| ControlFlow::Continue(()))
            .unwrap();
        let want: Vec<Vec<u32>> = batch["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        let got: Vec<Vec<u32>> = outs.into_iter().map(|o| o.tokens).collect();
        assert_eq!(got, want, "{label}: left-padded batch");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_base_model_stops_on_the_eos_of_its_tokenizer_and_config() {
    for case in cases() {
        let dir = base_model_dir(&case, "eos");
        let pipeline = load(&dir);
        // No template: no end-of-turn tokens; the tokenizer's eos and config.json's
        // eos_token_id (transformers' generation config of a model without
        // generation_config.json).
        assert_eq!(
            pipeline.terminators(),
            ids(&case["eos_token_id"]),
            "{} + {}",
            case["model"],
            case["tokenizer"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn chat_on_a_base_model_says_it_has_no_template_and_a_given_one_works() {
    let case = cases().into_iter().next().unwrap();
    let dir = base_model_dir(&case, "chat");
    let mut pipeline = load(&dir);
    let messages = [Message::user("Hello")];
    let config = GenerationConfig::greedy(3);
    let err = pipeline.chat(&messages, &config, &mut quiet).err().unwrap();
    assert!(matches!(err, ModelError::NoChatTemplate { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.display().to_string()) && text.contains("--template"),
        "{text}"
    );

    // A template given later (`--template`): the chat renders through it; its end-of-turn
    // token becomes a terminator only while it is in use.
    let template = ChatTemplate::from_source(
        "plain.jinja",
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:",
    )
    .unwrap();
    pipeline.set_template(Some(template));
    assert_eq!(
        pipeline.prompt_ids(&messages).unwrap(),
        pipeline
            .tokenizer()
            .encode_rendered("user: Hello\nassistant:")
            .unwrap()
            .ids
    );
    let out = pipeline.chat(&messages, &config, &mut quiet).unwrap();
    assert!(!out.tokens.is_empty() && out.tokens.len() <= 3);
    // Raw completion still works with a template.
    let single = &case["single"][0];
    let raw = pipeline
        .complete(
            single["prompt"].as_str().unwrap(),
            &GenerationConfig::greedy(16),
            &mut quiet,
        )
        .unwrap();
    assert_eq!(raw.tokens, ids(&single["tokens"]));
    pipeline.set_template(None);
    assert!(pipeline.template().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
