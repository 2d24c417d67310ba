//! `kiln generate` with several prompts on the real SmolLM2-135M-Instruct GGUF: one left-padded
//! batch whose rows equal transformers' greedy tokens for each prompt alone
//! (testdata/models/smollm2_greedy.json, scripts/reference/models_smollm2.py).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::Command;

mod common;

use common::smollm2 as model;

fn fixture() -> serde_json::Value {
    common::fixture("models/smollm2_greedy.json")
}

#[test]
fn prompts_generated_as_a_batch_equal_transformers_greedy_tokens() {
    let fx = fixture();
    // The cases that are a single user message (prompts of different lengths).
    let cases: Vec<&serde_json::Value> = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["messages"].as_array().unwrap().len() == 1)
        .collect();
    assert!(cases.len() >= 2);
    let lens: Vec<usize> = cases
        .iter()
        .map(|c| c["prompt_ids"].as_array().unwrap().len())
        .collect();
    assert!(lens.iter().any(|&l| l != lens[0]), "{lens:?}");
    let content = |c: &serde_json::Value| c["messages"][0]["content"].as_str().unwrap().to_owned();

    // The first prompt by --prompt, the others from a file (with a blank line to skip).
    let file = std::env::temp_dir().join(format!("kiln-prompts-{}.txt", std::process::id()));
    let rest: Vec<String> = cases[1..].iter().map(|c| content(c)).collect();
    std::fs::write(&file, format!("{}\n\n", rest.join("\n"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--device", "cpu", "generate", "--max-new-tokens"])
        .arg(fx["max_new_tokens"].to_string())
        .arg("--model")
        .arg(model())
        .arg("--prompt")
        .arg(content(cases[0]))
        .arg("--prompts")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (i, (line, case)) in lines.iter().zip(&cases).enumerate() {
        assert_eq!(line["index"], i);
        assert_eq!(line["prompt"], case["messages"][0]["content"]);
        assert_eq!(line["tokens"], case["tokens"], "prompt {i}");
        assert_eq!(line["text"], case["text"], "prompt {i}");
        assert_eq!(line["stop"]["reason"], "eos", "prompt {i}");
    }
}

#[test]
fn a_missing_prompts_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--device", "cpu", "generate", "--model"])
        .arg(model())
        .args(["--prompts", "no/such/prompts.txt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/prompts.txt"));
}
