//! Runs the `kiln` binary as a user would.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_DEVICE")
        .output()
        .expect("kiln runs")
}

#[test]
fn help_lists_global_flags() {
    let out = kiln(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--device", "--verbose", "--version", "info", "completions"] {
        assert!(text.contains(flag), "`--help` lacks {flag}:\n{text}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = kiln(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kiln {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn info_json_reports_the_cpu_device() {
    let out = kiln(&["--device", "cpu", "info", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["device"], "cpu");
    assert!(v["backends"].as_array().unwrap().contains(&"cpu".into()));
}

#[test]
fn bad_device_is_a_one_line_error() {
    let out = kiln(&["--device", "tpu", "info"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tpu'"), "{err}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_get_it() {
    let out = kiln(&["--device", "cuda", "info"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: this kiln was built without CUDA"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn completions_for_bash() {
    let out = kiln(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("_kiln()"));
}

#[test]
fn inspect_a_safetensors_dir() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/models/tiny-llama");
    let out = kiln(&["inspect", dir, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["format"], "safetensors");
    let text = kiln(&["inspect", dir]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("parameters"));
}

#[test]
fn inspect_a_missing_path_is_a_one_line_error() {
    let out = kiln(&["inspect", "/nonexistent/model"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/model"), "{err}");
}
