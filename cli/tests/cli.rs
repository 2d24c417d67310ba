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
    for flag in [
        "--device",
        "--verbose",
        "--version",
        "info",
        "completions",
        "chat",
        "generate",
        "embed",
        "inspect",
        "quantize",
        "template",
    ] {
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

fn safetensors_map(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            (
                name,
                (
                    format!("{:?}", v.dtype()),
                    v.shape().to_vec(),
                    v.data().to_vec(),
                ),
            )
        })
        .collect()
}

#[test]
fn quantize_writes_the_checkpoint_bitsandbytes_writes() {
    // testdata/quant/tiny-llama: one f32 model, and the NF4 + double-quant checkpoint that
    // transformers + bitsandbytes 0.50.2 saved from it.
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/quant/tiny-llama");
    let out = std::env::temp_dir().join(format!("kiln-quantize-{}", std::process::id()));
    let run = kiln(&[
        "quantize",
        "--model",
        data.join("f32").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quant",
        "nf4",
        "--double-quant",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("weights quantized"));
    let ours = safetensors_map(&out.join("model.safetensors"));
    let bnb = safetensors_map(&data.join("nf4-dq/model.safetensors"));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        bnb.keys().collect::<Vec<_>>()
    );
    for (name, (dtype, shape, bytes)) in &bnb {
        let (d, s, b) = &ours[name];
        assert_eq!((d, s), (dtype, shape), "{name}");
        if name.contains(".quant_state.") {
            let a: serde_json::Value = serde_json::from_slice(b).unwrap();
            let e: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(a, e, "{name}");
        } else {
            assert!(b == bytes, "{name}: bytes differ");
        }
    }
    let inspect = kiln(&["inspect", out.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["quantization"], "bitsandbytes nf4 (double quant)");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn quantize_bad_input_is_a_one_line_error() {
    let out = kiln(&[
        "quantize",
        "--model",
        "/nonexistent",
        "--out",
        "/tmp/x",
        "--quant",
        "nf4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent"), "{err}");
}
