//! The real templates on longer conversations than `parity.rs` uses: Korean system prompts,
//! multi-turn and plain chats, richer tool schemas, parallel tool calls and tool results, Hermes'
//! and the old Command-R's tool descriptions, whitespace only Python counts, reasoning fields.
//! Expected renders: `testdata/chat-template/conversations.json`, made by
//! `scripts/reference/chat_conversations.py` with transformers and jinja2 (the first 16 hex
//! digits of each text's SHA-256 and its length, the full text for a few tool-use templates).

mod common;

use common::*;
use kiln_chat_template::{ChatTemplate, Error, Message, Rendered};
use serde_json::Value;

/// The template `entry` of the fixture was made from, checked against its hash.
fn template(name: &str, entry: &Value) -> ChatTemplate {
    ChatTemplate::from_source(name, fixture_template_source(entry)).expect("compiles")
}

/// What is wrong with `got` given jinja2's result `expected`, if anything.
fn mismatch(expected: &Value, got: &Result<Rendered, Error>) -> Option<String> {
    match (expected.get("sha256_16").and_then(Value::as_str), got) {
        (Some(want), Ok(out)) => match expected.get("text").and_then(Value::as_str) {
            Some(text) if text != out.text => Some(format!(
                "text differs:\n--- want\n{text}\n--- got\n{}",
                out.text
            )),
            _ if sha256(&out.text)[..16] != *want => Some(format!(
                "text differs from jinja2's ({} chars, kiln {}):\n--- got\n{}",
                expected["len"],
                out.text.chars().count(),
                out.text
            )),
            _ => None,
        },
        (Some(_), Err(e)) => Some(format!("kiln failed where transformers rendered: {e}")),
        (None, Ok(out)) => Some(format!(
            "kiln rendered where transformers failed ({}: {}):\n{}",
            expected["error"], expected["message"], out.text
        )),
        (None, Err(e)) => {
            let want_msg = expected["message"].as_str().unwrap_or_default();
            match (expected["error"].as_str(), e) {
                (Some("raise"), Error::Raised { message, .. }) if message == want_msg => None,
                (Some("raise"), other) => Some(format!(
                    "expected raise_exception({want_msg:?}), got: {other}"
                )),
                // Errors name the template and a line.
                (_, Error::Render { template, line, .. })
                | (_, Error::LimitExceeded { template, line, .. })
                    if template.is_empty() || *line == 0 =>
                {
                    Some(format!("error without template or line: {e}"))
                }
                _ => None,
            }
        }
    }
}

#[test]
fn real_templates_render_conversations_like_transformers() {
    let fixture = fixture("conversations.json");
    let special = special_tokens(&fixture["special_tokens"]);
    let now = fixture_now(&fixture["meta"]);
    let mut failures = Vec::new();
    let mut rendered = 0;
    for (name, entry) in fixture["templates"].as_object().expect("templates") {
        let template = template(name, entry);
        for (case_name, expected) in entry["results"].as_object().expect("results") {
            let case = &fixture["cases"][case_name];
            let got = template.apply_json(&case_messages(case), &case_options(case, &special, now));
            rendered += usize::from(expected.get("sha256_16").is_some());
            if let Some(p) = mismatch(expected, &got) {
                failures.push(format!("{name} / {case_name}: {p}"));
            }
        }
    }
    assert!(
        rendered > 3000,
        "only {rendered} rendered pairs in the fixture"
    );
    assert!(
        failures.is_empty(),
        "{} of {rendered} renders differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The tool-use templates render typed [`Message`]s (assistant tool calls, `tool` results) as
/// transformers renders the same messages as dicts.
#[test]
fn typed_messages_with_tool_calls_render_like_transformers() {
    const TEMPLATES: [&str; 5] = [
        "meta-llama-Llama-3.1-8B-Instruct",
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
        "mistralai-Mistral-Nemo-Instruct-2407",
        "CohereForAI-c4ai-command-r-plus-tool_use",
    ];
    let fixture = fixture("conversations.json");
    let special = special_tokens(&fixture["special_tokens"]);
    let now = fixture_now(&fixture["meta"]);
    let mut failures = Vec::new();
    let mut tool_turns = 0;
    let mut untyped = 0;
    for name in TEMPLATES {
        let entry = &fixture["templates"][name];
        let template = template(name, entry);
        for (case_name, expected) in entry["results"].as_object().expect("results") {
            // `tool_calls: []` is a key a typed message without calls does not write.
            if case_name == "empty_tool_calls" {
                continue;
            }
            let case = &fixture["cases"][case_name];
            // Messages a typed `Message` cannot hold (a dict as content, a call without its
            // `function` wrapper) are the dict renders' business only.
            let Ok(messages) = case_messages(case)
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<Vec<Message>, _>>()
            else {
                untyped += 1;
                continue;
            };
            tool_turns += messages
                .iter()
                .filter(|m| !m.tool_calls.is_empty() || m.role == "tool")
                .count();
            let got = template.apply(&messages, &case_options(case, &special, now));
            if let Some(p) = mismatch(expected, &got) {
                failures.push(format!("{name} / {case_name}: {p}"));
            }
        }
    }
    assert!(tool_turns > 100, "only {tool_turns} tool turns rendered");
    assert!(
        untyped <= 3 * TEMPLATES.len(),
        "{untyped} cases skipped as untyped"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
