//! Finding templates, choosing among named ones, and errors that name the template and line.

mod common;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use kiln_chat_template::{ApplyOptions, Builtin, ChatTemplate, Error, Message};
use serde_json::json;

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-chat-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("dir");
    }
    std::fs::write(path, text).expect("write");
}

fn render(t: &ChatTemplate, opts: &ApplyOptions) -> String {
    t.apply(&[Message::user("hi")], opts).expect("renders").text
}

#[test]
fn model_dir_reads_tokenizer_config() {
    let dir = cached("tokenizers/llama3_1");
    let t = ChatTemplate::from_model_dir(&dir).expect("template");
    assert_eq!(t.names(), vec!["default"]);
    let config: serde_json::Value =
        serde_json::from_str(&read_cached("tokenizers/llama3_1/tokenizer_config.json"))
            .expect("json");
    assert_eq!(t.source("default"), config["chat_template"].as_str());
}

#[test]
fn model_dir_precedence_jinja_then_json_then_config() {
    let dir = temp_dir("precedence");
    write(
        &dir,
        "tokenizer_config.json",
        r#"{"chat_template": "from config"}"#,
    );
    assert_eq!(
        render(
            &ChatTemplate::from_model_dir(&dir).expect("ok"),
            &ApplyOptions::default()
        ),
        "from config"
    );
    write(
        &dir,
        "chat_template.json",
        r#"{"chat_template": "from json"}"#,
    );
    assert_eq!(
        render(
            &ChatTemplate::from_model_dir(&dir).expect("ok"),
            &ApplyOptions::default()
        ),
        "from json"
    );
    write(&dir, "chat_template.jinja", "from jinja\n");
    assert_eq!(
        render(
            &ChatTemplate::from_model_dir(&dir).expect("ok"),
            &ApplyOptions::default()
        ),
        "from jinja"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn named_templates_are_chosen_like_transformers() {
    let dir = temp_dir("named");
    write(&dir, "chat_template.jinja", "DEFAULT");
    write(
        &dir,
        "additional_chat_templates/tool_use.jinja",
        "TOOLS {{ tools | length }}",
    );
    let t = ChatTemplate::from_model_dir(&dir).expect("ok");
    assert_eq!(t.names(), vec!["default", "tool_use"]);
    assert_eq!(render(&t, &ApplyOptions::default()), "DEFAULT");
    let with_tools = ApplyOptions {
        tools: Some(vec![json!({"type": "function", "function": {"name": "f"}})]),
        ..ApplyOptions::default()
    };
    assert_eq!(render(&t, &with_tools), "TOOLS 1");
    let by_name = ApplyOptions {
        template_name: Some("default".into()),
        ..with_tools.clone()
    };
    assert_eq!(render(&t, &by_name), "DEFAULT");
    let unknown = ApplyOptions {
        template_name: Some("rag".into()),
        ..ApplyOptions::default()
    };
    let err = t
        .apply(&[Message::user("hi")], &unknown)
        .expect_err("unknown name");
    assert!(
        matches!(err, Error::UnknownTemplateName { ref name, .. } if name == "rag"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();

    // The list form of tokenizer_config.json, without a `default`.
    let config = json!({"chat_template": [
        {"name": "rag", "template": "RAG"},
        {"name": "tool_use", "template": "TOOL"}
    ]});
    let t = ChatTemplate::from_tokenizer_config(&config, "tokenizer_config.json").expect("ok");
    let err = t
        .apply(&[Message::user("hi")], &ApplyOptions::default())
        .expect_err("no default");
    assert!(matches!(err, Error::NoDefaultTemplate { .. }), "{err}");
    assert_eq!(render(&t, &with_tools), "TOOL");
}

#[test]
fn missing_template_says_where_it_looked() {
    let dir = temp_dir("missing");
    write(&dir, "tokenizer_config.json", r#"{"bos_token": "<s>"}"#);
    let err = ChatTemplate::from_model_dir(&dir).expect_err("no template");
    let Error::MissingTemplate { looked_in } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(looked_in.len(), 4, "{looked_in:?}");
    let msg = err.to_string();
    for needle in [
        "chat_template.jinja",
        "additional_chat_templates",
        "chat_template.json",
        "tokenizer_config.json",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    std::fs::remove_dir_all(&dir).ok();
    let err = ChatTemplate::from_file(dir.join("nope.jinja")).expect_err("no file");
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn syntax_errors_name_template_and_line() {
    let err = ChatTemplate::from_source(
        "broken.jinja",
        "line one\n{% for m in messages %}\n{{ m.content }\n",
    )
    .expect_err("syntax error");
    match err {
        Error::Syntax { template, line, .. } => {
            assert_eq!(template, "broken.jinja");
            assert_eq!(line, 3);
        }
        other => panic!("expected a syntax error, got {other}"),
    }
}

#[test]
fn raise_exception_carries_the_template_message() {
    let t = ChatTemplate::builtin(Builtin::Gemma);
    let err = t
        .apply(
            &[Message::system("s"), Message::user("u")],
            &ApplyOptions::default(),
        )
        .expect_err("gemma rejects system");
    match err {
        Error::Raised {
            template,
            line,
            message,
        } => {
            assert_eq!(template, "gemma");
            assert_eq!(line, 1);
            assert_eq!(message, "System role not supported");
        }
        other => panic!("expected Raised, got {other}"),
    }
    let err = t
        .apply(
            &[Message::user("a"), Message::user("b")],
            &ApplyOptions::default(),
        )
        .expect_err("alternation");
    assert!(
        err.to_string()
            .contains("Conversation roles must alternate user/assistant/user/assistant/..."),
        "{err}"
    );
}

#[test]
fn undefined_values_used_strictly_fail_with_the_line() {
    let t = ChatTemplate::from_source("strict.jinja", "ok {{ nothing }}\n{{ nothing.attr }}")
        .expect("ok");
    let err = t
        .apply(&[Message::user("hi")], &ApplyOptions::default())
        .expect_err("undefined");
    match err {
        Error::Render { template, line, .. } => {
            assert_eq!(template, "strict.jinja");
            assert_eq!(line, 2);
        }
        other => panic!("expected Render, got {other}"),
    }
}

#[test]
fn inputs_transformers_rejects_are_rejected() {
    let t = ChatTemplate::builtin(Builtin::ChatMl);
    let both = ApplyOptions {
        add_generation_prompt: true,
        continue_final_message: true,
        ..ApplyOptions::default()
    };
    let err = t
        .apply(&[Message::user("hi")], &both)
        .expect_err("incompatible");
    assert!(err.to_string().contains("not compatible"), "{err}");
    let err = t.apply(&[], &ApplyOptions::default()).expect_err("empty");
    assert!(err.to_string().contains("empty conversation"), "{err}");
    let clash = ApplyOptions {
        extra: json!({"messages": []})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..ApplyOptions::default()
    };
    assert!(t.apply(&[Message::user("hi")], &clash).is_err());
}

#[test]
fn messages_and_json_render_the_same() {
    let t = ChatTemplate::from_model_dir(cached("tokenizers/qwen3")).expect("template");
    let messages = vec![
        Message::system("sys"),
        Message::user("u"),
        Message::assistant("a"),
        Message::tool("call_1", "result"),
    ];
    let json: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::to_value(m).expect("json"))
        .collect();
    let opts = ApplyOptions::generation_prompt();
    assert_eq!(
        t.apply(&messages, &opts).expect("renders"),
        t.apply_json(&json, &opts).expect("renders")
    );
}

#[test]
fn strftime_now_uses_the_given_instant() {
    let t = ChatTemplate::from_source("date", "{{ strftime_now('%d %b %Y %H:%M') }}").expect("ok");
    let opts = ApplyOptions {
        // 2024-07-26 12:34:00 UTC
        now: Some(UNIX_EPOCH + Duration::from_secs(1_721_997_240)),
        ..ApplyOptions::default()
    };
    assert_eq!(render(&t, &opts), "26 Jul 2024 12:34");
}

#[test]
fn every_builtin_compiles_and_is_named() {
    for b in Builtin::ALL {
        assert_eq!(Builtin::from_name(b.name()), Some(b));
        let t = ChatTemplate::builtin(b);
        assert_eq!(t.source("default"), Some(b.source()));
    }
}
