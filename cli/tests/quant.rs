//! `--quant`, `--dtype` and friends on the model-loading commands, end to end on the real
//! SmolLM2-135M-Instruct GGUF: `generate --quant nf4` gives transformers + bitsandbytes' greedy
//! tokens (fixture from scripts/reference/bnb_smollm2_nf4.py).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::{Command, Output};

mod common;

use common::smollm2 as model;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_DEVICE")
        .env_remove("KILN_MODEL")
        .output()
        .unwrap()
}

#[test]
fn generate_nf4_equals_transformers_bitsandbytes_greedy_tokens() {
    let fx = common::fixture("quant/smollm2_nf4_greedy.json");
    let max = fx["max_new_tokens"].as_u64().unwrap().to_string();
    let model = model().display().to_string();
    for case in fx["cases"].as_array().unwrap() {
        let prompt = case["messages"][0]["content"].as_str().unwrap();
        let out = kiln(&[
            "--device",
            "cpu",
            "generate",
            "--json",
            "--quant",
            "nf4",
            "--max-new-tokens",
            &max,
            "--model",
            &model,
            prompt,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tokens"], case["tokens"], "{prompt}");
        assert_eq!(v["text"], case["text"]);
        assert_eq!(v["stop"]["reason"], "max_tokens");
    }
}

#[test]
fn model_flags_are_listed_on_every_loading_command() {
    for command in ["generate", "chat"] {
        let out = kiln(&[command, "--help"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--dtype",
            "--quant",
            "--double-quant",
            "--compute-dtype",
            "nf4",
            "int8",
        ] {
            assert!(text.contains(flag), "`kiln {command} --help` lacks {flag}");
        }
    }
}

#[test]
fn four_bit_flags_without_a_four_bit_quant_are_a_one_line_error() {
    let model = model().display().to_string();
    for args in [
        vec!["--double-quant"],
        vec!["--quant", "int8", "--compute-dtype", "bf16"],
    ] {
        let mut all = vec!["--device", "cpu", "generate", "--model", &model];
        all.extend(&args);
        all.push("hi");
        let out = kiln(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("4-bit") && err.contains("--quant nf4"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn f16_on_the_cpu_is_a_clear_error() {
    let model = model().display().to_string();
    for dtype in ["f16", "bf16"] {
        let out = kiln(&[
            "--device", "cpu", "generate", "--dtype", dtype, "--model", &model, "hi",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not supported by this backend"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
