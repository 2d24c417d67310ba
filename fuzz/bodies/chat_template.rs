//! The body of the `chat_template` target: a chat template and a conversation, split at the
//! first 0 byte: the template source, then a JSON case (a list of messages, or an object with
//! `messages`, `tools`, `documents`, `extra`, `add_generation_prompt`,
//! `continue_final_message`; invalid JSON stands for one user message). Rendered within tight
//! [`Limits`]: a render must end in `Ok` or `Err`, never a crash, a hang or a huge allocation.
//!
//! Shared by `fuzz_targets/chat_template.rs` and the bounded pass in
//! `chat-template/tests/fuzz_smoke.rs`; it may only use crates both of them depend on.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use kiln_chat_template::{ApplyOptions, ChatTemplate, Conversation, Limits, SpecialTokens};
use serde_json::{Value, json};

/// Compiles and renders `data`: template source, 0 byte, JSON case.
pub fn run(data: &[u8]) {
    let (source, case) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let Ok(template) = ChatTemplate::from_source("fuzz", source) else {
        return;
    };
    let template = template.with_limits(Limits {
        fuel: Some(1_000_000),
        max_output_bytes: 1 << 20,
        ..Limits::default()
    });
    let case: Value = serde_json::from_slice(case)
        .unwrap_or_else(|_| json!([{"role": "user", "content": "Hello"}]));
    let Ok(conversation) = Conversation::from_value(&case, Path::new("case.json")) else {
        return;
    };
    let flag = |key: &str| case.get(key).and_then(Value::as_bool).unwrap_or(false);
    let options = ApplyOptions {
        add_generation_prompt: flag("add_generation_prompt"),
        continue_final_message: flag("continue_final_message"),
        tools: conversation.tools,
        documents: conversation.documents,
        extra: case
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        special_tokens: SpecialTokens {
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            ..SpecialTokens::default()
        },
        now: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..ApplyOptions::default()
    };
    let _ = template.has_generation();
    let _ = template.apply_json(&conversation.messages, &options);
}
