//! `kiln generate` and `kiln chat` on base models (no chat template): plain-text completion
//! equal to transformers' `generate(**tokenizer(prompt))` greedy tokens on tiny random Llama,
//! Mistral and Gemma 1/2/3 models (testdata/models/base_completion.json,
//! scripts/reference/models_base.py).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn testdata(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(path)
}

/// A base model dir as `save_pretrained` leaves one (weights, config, tokenizer, no template).
fn base_model_dir(case: &serde_json::Value, tag: &str) -> PathBuf {
    let model = case["model"].as_str().unwrap();
    let tokenizer = case["tokenizer"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!(
        "kiln-cli-base-{model}-{tokenizer}-{tag}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let weights = testdata("models").join(model);
    let tok = testdata("models/base-tokenizers").join(tokenizer);
    for (from, file) in [
        (&weights, "config.json"),
        (&weights, "model.safetensors"),
        (&tok, "tokenizer.json"),
        (&tok, "tokenizer_config.json"),
    ] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
    }
    dir
}

fn kiln(args: &[&str], model: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .arg("--model")
        .arg(model)
        .output()
        .unwrap()
}

fn json_out(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn generate_completes_plain_text_on_every_architecture_with_and_without_device_cpu() {
    let fx = common::fixture("models/base_completion.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let dir = base_model_dir(case, "generate");
        let single = &case["single"][0];
        let prompt = single["prompt"].as_str().unwrap();
        assert_eq!(prompt, "The quick brown fox");
        let max = case["max_new_tokens"].to_string();
        for device in [&["--device", "cpu"][..], &[]] {
            let mut args = device.to_vec();
            args.extend(["generate", "--json", "--max-new-tokens", &max, prompt]);
            let v = json_out(&kiln(&args, &dir));
            assert_eq!(
                v["tokens"], single["tokens"],
                "{} + {} {device:?}",
                case["model"], case["tokenizer"]
            );
            assert_eq!(v["text"], single["text"]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn chat_on_a_base_model_asks_for_a_chat_model_or_a_template() {
    let fx = common::fixture("models/base_completion.json");
    let case = &fx["cases"][0];
    let dir = base_model_dir(case, "chat");
    let out = kiln(&["--device", "cpu", "chat", "Hello"], &dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no chat template") && err.contains("--template FILE"),
        "{err}"
    );
    // --system has no place in a plain completion.
    let out = kiln(
        &["--device", "cpu", "generate", "--system", "Be brief.", "Hi"],
        &dir,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With --template the base model chats; --raw still completes the plain text.
    let template = dir.join("plain.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:",
    )
    .unwrap();
    let template = template.to_str().unwrap();
    let out = kiln(
        &[
            "--device",
            "cpu",
            "chat",
            "--max-new-tokens",
            "2",
            "--template",
            template,
            "Hello",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let single = &case["single"][0];
    let max = case["max_new_tokens"].to_string();
    let args = [
        "--device",
        "cpu",
        "generate",
        "--json",
        "--raw",
        "--template",
        template,
        "--max-new-tokens",
        &max,
        single["prompt"].as_str().unwrap(),
    ];
    assert_eq!(json_out(&kiln(&args, &dir))["tokens"], single["tokens"]);
    // A template file that does not parse fails before the model loads, naming the file.
    std::fs::write(dir.join("bad.jinja"), "{% for m in messages %}").unwrap();
    let bad = dir.join("bad.jinja");
    let out = kiln(
        &[
            "--device",
            "cpu",
            "chat",
            "--template",
            bad.to_str().unwrap(),
            "Hello",
        ],
        &dir,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.jinja"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tools_need_a_template_and_a_json_array() {
    let fx = common::fixture("models/base_completion.json");
    let dir = base_model_dir(&fx["cases"][0], "tools");
    let bad = dir.join("tools.json");
    std::fs::write(&bad, "{\"name\": \"not a list\"").unwrap();
    let bad = bad.to_str().unwrap().to_owned();
    let out = kiln(
        &["--device", "cpu", "generate", "--tools", &bad, "Hi"],
        &dir,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tools.json") && err.contains("invalid JSON"),
        "{err}"
    );
    let tools = dir.join("ok.json");
    std::fs::write(
        &tools,
        "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]",
    )
    .unwrap();
    let out = kiln(
        &[
            "--device",
            "cpu",
            "generate",
            "--tools",
            tools.to_str().unwrap(),
            "Hi",
        ],
        &dir,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no chat template") && err.contains("--tools"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
