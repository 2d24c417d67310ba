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

/// A template of the artifact cache (`cargo xtask fetch`).
fn cached_template(name: &str) -> ChatTemplate {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")));
    let path = cache.join("llama-cpp/templates").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch`",
        path.display()
    );
    ChatTemplate::from_file(&path).unwrap()
}

#[test]
fn tools_go_through_the_template_and_the_reply_goes_back_into_the_conversation() {
    let case = cases().into_iter().next().unwrap();
    let dir = base_model_dir(&case, "tools");
    // The tool prompt is longer than the tiny model's 256 positions: allow more (plain RoPE).
    let config_path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 2048.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut pipeline = load(&dir);
    pipeline.set_template(Some(cached_template(
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    )));
    let tools = [serde_json::json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}
        }
    })];
    let mut messages = vec![Message::user("Weather in Paris?")];
    let plain = pipeline.prompt_ids(&messages).err();
    // Hermes' tool_use template needs tools (jinja2 fails on it without them too).
    assert!(plain.is_some());
    let with_tools = pipeline
        .prompt_ids_with_tools(&messages, Some(&tools))
        .unwrap();
    let render = |messages: &[Message]| {
        let options = kiln_chat_template::ApplyOptions {
            add_generation_prompt: true,
            special_tokens: pipeline.tokenizer().special_tokens().clone(),
            tools: Some(tools.to_vec()),
            ..Default::default()
        };
        let text = pipeline
            .template()
            .unwrap()
            .apply(messages, &options)
            .unwrap()
            .text;
        let ids = pipeline.tokenizer().encode_rendered(&text).unwrap().ids;
        (text, ids)
    };
    let (rendered, ids) = render(&messages);
    assert_eq!(with_tools, ids);
    assert!(
        rendered.contains("get_weather") && rendered.contains("<tools>"),
        "{rendered}"
    );

    let reply = pipeline
        .chat_with_tools(&messages, &tools, &GenerationConfig::greedy(8), &mut quiet)
        .unwrap();
    assert_eq!(
        reply.format,
        Some(kiln_chat_template::ToolCallFormat::Hermes)
    );
    // A random tiny model writes no call: the reply is its text.
    assert!(reply.message.tool_calls.is_empty());
    assert_eq!(reply.message.text(), reply.generation.text.trim());

    // A call and its result go back in: the next prompt renders both.
    let parsed = kiln_chat_template::ToolCallFormat::Hermes
        .parse("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>")
        .unwrap();
    messages.push(parsed.into_message());
    messages.push(Message::tool("call_0", "{\"temperature\": 21}"));
    let next = pipeline
        .prompt_ids_with_tools(&messages, Some(&tools))
        .unwrap();
    let (rendered, ids) = render(&messages);
    assert_eq!(next, ids);
    assert!(
        rendered.contains("\"city\": \"Paris\"") && rendered.contains("temperature"),
        "{rendered}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
