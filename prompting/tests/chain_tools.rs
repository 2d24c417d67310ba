//! A [`Chain`] step with tools, through the real Llama 3.1, Hermes 3 and Mistral Nemo templates:
//! the model (a script writing each family's call syntax) calls a tool, the step answers it, and
//! the prompt of the next round is the text transformers renders for that conversation
//! (`testdata/chat-template/conversations.json`, case `schema_tool_call`, made by
//! `scripts/reference/chat_conversations.py`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_chat_template::{ApplyOptions, ChatTemplate, SpecialTokens};
use kiln_prompting::{
    Chain, Completion, GenerationParams, GeneratorError, Message, Step, StopReason,
    TemplateGenerator, Tools,
};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".cache").join("kiln"),
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (the templates come from `cargo xtask fetch`)",
            path.display()
        )
    })
}

/// The first 16 hex digits of the text's SHA-256, as the fixture stores them.
fn sha256_16(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16].to_owned()
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Found {
    found: String,
}

/// The chain step: find documents with the `search_docs` tool, answer in JSON.
fn run(template_name: &str, model_call: String) -> (Found, Vec<String>, Vec<Value>) {
    let fixture: Value = serde_json::from_str(&read(
        repo_root().join("testdata/chat-template/conversations.json"),
    ))
    .expect("fixture JSON");
    let case = &fixture["cases"]["schema_tool_call"];
    let source = read(
        cache_dir()
            .join("llama-cpp/templates")
            .join(format!("{template_name}.jinja")),
    );
    let template = ChatTemplate::from_source(template_name, source).expect("compiles");
    let special = &fixture["special_tokens"];
    let token = |k: &str| special[k].as_str().map(str::to_owned);
    let options = ApplyOptions {
        special_tokens: SpecialTokens {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            unk_token: token("unk_token"),
            pad_token: token("pad_token"),
            ..SpecialTokens::default()
        },
        ..ApplyOptions::default()
    };

    // The model: first the call, then the answer; every prompt is recorded.
    let prompts = Arc::new(Mutex::new(Vec::<String>::new()));
    let replies = Mutex::new(vec![model_call, r#"{"found": "결과"}"#.to_owned()]);
    let seen = prompts.clone();
    let model = TemplateGenerator::new(
        template,
        options,
        move |prompt: &str, _: &GenerationParams| {
            seen.lock().expect("lock").push(prompt.to_owned());
            let mut replies = replies.lock().expect("lock");
            if replies.is_empty() {
                return Err(GeneratorError::new("the script ran out"));
            }
            Ok(Completion::new(
                replies.remove(0),
                StopReason::EndOfSequence,
            ))
        },
    );

    let schemas = case["tools"].as_array().expect("tools").clone();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let mut tools = Tools::new();
    for schema in schemas {
        let name = schema["function"]["name"]
            .as_str()
            .expect("a string")
            .to_owned();
        let log = log.clone();
        tools = tools.add(schema, move |args| {
            log.lock()
                .expect("lock")
                .push(json!({ name.clone(): args }));
            Ok("결과".to_owned())
        });
    }
    let user = case["messages"][0]["content"]
        .as_str()
        .expect("a string")
        .to_owned();
    let chain = Chain::new(
        Step::json::<Found>("search", move |_: &()| vec![Message::user(user.clone())]).tools(tools),
    );
    let found = chain.run(&model, ()).expect("the chain runs");
    let prompts = prompts.lock().expect("lock").clone();
    let received = received.lock().expect("lock").clone();
    (found, prompts, received)
}

/// The arguments of the case's call, as JSON text.
fn arguments() -> (String, Value) {
    let fixture: Value = serde_json::from_str(&read(
        repo_root().join("testdata/chat-template/conversations.json"),
    ))
    .expect("fixture JSON");
    let args = fixture["cases"]["schema_tool_call"]["messages"][1]["tool_calls"][0]["function"]
        ["arguments"]
        .clone();
    (serde_json::to_string(&args).expect("JSON"), args)
}

fn check(template: &str, model_call: String) {
    let fixture: Value = serde_json::from_str(&read(
        repo_root().join("testdata/chat-template/conversations.json"),
    ))
    .expect("fixture JSON");
    let (_, args) = arguments();
    let (found, prompts, received) = run(template, model_call);
    assert_eq!(
        found,
        Found {
            found: "결과".into()
        }
    );
    assert_eq!(received, [json!({ "search_docs": args })], "{template}");
    assert_eq!(prompts.len(), 2, "{template}");
    // The second prompt (the call and its result, then the generation prompt) is the text
    // transformers renders for the case's conversation.
    let entry = &fixture["templates"][template]["results"]["schema_tool_call"];
    let want = entry["sha256_16"].as_str().expect("rendered by jinja2");
    if let Some(text) = entry["text"].as_str() {
        assert_eq!(prompts[1], text, "{template}");
    }
    assert_eq!(sha256_16(&prompts[1]), want, "{template}:\n{}", prompts[1]);
}

#[test]
fn hermes_tool_step_renders_like_transformers() {
    let (json_args, _) = arguments();
    check(
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
        format!(
            "<tool_call>\n{{\"name\": \"search_docs\", \"arguments\": {json_args}}}\n</tool_call>"
        ),
    );
}

#[test]
fn mistral_tool_step_renders_like_transformers() {
    let (json_args, _) = arguments();
    check(
        "mistralai-Mistral-Nemo-Instruct-2407",
        format!(
            "[TOOL_CALLS][{{\"name\": \"search_docs\", \"arguments\": {json_args}, \"id\": \"abcdefghi\"}}]"
        ),
    );
}

#[test]
fn llama31_tool_step_renders_like_transformers() {
    let (json_args, _) = arguments();
    check(
        "meta-llama-Llama-3.1-8B-Instruct",
        format!("{{\"name\": \"search_docs\", \"parameters\": {json_args}}}"),
    );
}
