//! End to end on the real SmolLM2-135M-Instruct GGUF: greedy tokens equal transformers'
//! (fixture from scripts/reference/models_smollm2.py), and the chat REPL works.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::io::Write;
use std::process::{Command, Stdio};

mod common;

use common::smollm2 as model;

fn fixture() -> serde_json::Value {
    common::fixture("models/smollm2_greedy.json")
}

#[test]
fn generate_json_equals_transformers_greedy_tokens() {
    let fx = fixture();
    let max = fx["max_new_tokens"].as_u64().unwrap().to_string();
    for case in fx["cases"].as_array().unwrap() {
        let messages = case["messages"].as_array().unwrap();
        // `generate` takes an optional system message and one user message.
        if messages.len() > 2 {
            continue;
        }
        let mut args = vec![
            "--device".to_owned(),
            "cpu".into(),
            "generate".into(),
            "--json".into(),
        ];
        args.extend(["--max-new-tokens".into(), max.clone(), "--model".into()]);
        args.push(model().display().to_string());
        if messages[0]["role"] == "system" {
            args.extend([
                "--system".into(),
                messages[0]["content"].as_str().unwrap().to_owned(),
            ]);
        }
        args.push(
            messages.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tokens"], case["tokens"], "{messages:?}");
        assert_eq!(v["text"], case["text"]);
        assert_eq!(v["stop"]["reason"], "eos");
    }
}

#[test]
fn chat_repl_keeps_history_and_resets() {
    let fx = fixture();
    // Case 3 is case 2's question, transformers' answer to it, and a follow-up.
    let case = &fx["cases"][3];
    let turns = case["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--device",
            "cpu",
            "chat",
            "--max-new-tokens",
            "40",
            "--model",
        ])
        .arg(model())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Turn 1, then turn 3 of the fixture: the model sees turn 1 and its own answer as history.
    let script = format!(
        "{}\n{}\n/reset\n/exit\n",
        turns[0]["content"].as_str().unwrap(),
        turns[2]["content"].as_str().unwrap()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        answers[0],
        turns[1]["content"].as_str().unwrap(),
        "{stdout}"
    );
    assert_eq!(answers[1], case["text"].as_str().unwrap(), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("(conversation reset)"));
}

#[test]
fn template_tokens_equal_transformers_apply_chat_template() {
    let fx = fixture();
    let dir = std::env::temp_dir().join(format!("kiln-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let messages = dir.join(format!("messages{i}.json"));
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["template", "--add-generation-prompt", "--tokens", "--model"])
            .arg(model())
            .arg("--messages")
            .arg(&messages)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids, case["prompt_ids"], "case {i}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_the_gguf() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", "--json"])
        .arg(model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["quantization"], "Q4_1");
    // SmolLM2-135M: 134.5M parameters (tied embeddings, stored once).
    let params = v["parameters"].as_u64().unwrap();
    assert!((134_000_000..135_000_000).contains(&params), "{params}");
}
