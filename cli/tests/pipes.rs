//! Output into a pipe whose reader is gone (`kiln ... | head -1`): kiln ends quietly and
//! successfully, as Unix tools do, instead of panicking.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

/// Runs kiln with standard output a pipe already closed at the reading end, and checks it
/// exits 0 without an error message.
fn into_closed_pipe(args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_DEVICE")
        .env_remove("KILN_MODEL")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    for word in ["error", "Broken pipe"] {
        assert!(!err.contains(word), "{args:?}: {err}");
    }
}

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(path)
}

#[test]
fn completions_info_and_inspect() {
    into_closed_pipe(&["completions", "zsh"]);
    into_closed_pipe(&["completions", "bash"]);
    into_closed_pipe(&["--device", "cpu", "info"]);
    into_closed_pipe(&["--device", "cpu", "info", "--json"]);
    let tiny = testdata("models/tiny-llama");
    into_closed_pipe(&["inspect", tiny.to_str().unwrap()]);
    into_closed_pipe(&["inspect", tiny.to_str().unwrap(), "--json"]);
}

#[test]
fn template() {
    let dir = std::env::temp_dir().join(format!("kiln-pipes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("t.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}",
    )
    .unwrap();
    let messages = dir.join("m.json");
    std::fs::write(&messages, r#"[{"role": "user", "content": "hello"}]"#).unwrap();
    into_closed_pipe(&[
        "template",
        "--template",
        template.to_str().unwrap(),
        "--messages",
        messages.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantize() {
    let out = std::env::temp_dir().join(format!("kiln-pipes-quantize-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let model = testdata("quant/tiny-llama/f32");
    into_closed_pipe(&[
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quant",
        "nf4",
    ]);
    // The summary line is lost, the checkpoint is not.
    assert!(out.join("model.safetensors").is_file());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn streaming_generate_and_chat() {
    let model = common::smollm2().display().to_string();
    for command in ["generate", "chat"] {
        into_closed_pipe(&[
            "--device",
            "cpu",
            command,
            "--model",
            &model,
            "--max-new-tokens",
            "4",
            "Say hello.",
        ]);
    }
}

#[test]
fn embed() {
    let model = common::cached("minilm").display().to_string();
    into_closed_pipe(&["--device", "cpu", "embed", "--model", &model, "hello"]);
    into_closed_pipe(&[
        "--device", "cpu", "embed", "--model", &model, "--json", "hello",
    ]);
}
