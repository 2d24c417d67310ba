//! `kiln embed` on the real all-MiniLM-L6-v2 dir: vectors equal sentence-transformers'
//! (fixture from scripts/reference/embed_minilm.py), from arguments and from a file.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::PathBuf;
use std::process::Command;

mod common;

fn model() -> String {
    common::cached("minilm/model.safetensors");
    common::cached("minilm").display().to_string()
}

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--device", "cpu"])
        .args(args)
        .env_remove("KILN_DEVICE")
        .env_remove("KILN_MODEL")
        .output()
        .expect("kiln runs")
}

fn fixture() -> Vec<serde_json::Value> {
    common::fixture("models/minilm_embeddings.json")["cases"]
        .as_array()
        .unwrap()
        .clone()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Parses `--json` output and checks each line against the fixture case with the same text.
fn check_json_lines(stdout: &[u8], key: &str, expected_texts: &[&str]) {
    let cases = fixture();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, expected_texts);
    for line in &lines {
        let case = cases.iter().find(|c| c["text"] == line["text"]).unwrap();
        let got: Vec<f32> = serde_json::from_value(line["embedding"].clone()).unwrap();
        let want: Vec<f32> = serde_json::from_value(case[key].clone()).unwrap();
        assert_eq!(got.len(), 384);
        let cos = cosine(&got, &want);
        assert!(cos >= 0.99999, "{key} {}: cosine {cos}", line["text"]);
    }
}

#[test]
fn embed_texts_as_json_lines_equal_sentence_transformers() {
    let texts = ["This is an example sentence", "Each sentence is converted"];
    let out = kiln(&["embed", "--model", &model(), "--json", texts[0], texts[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_json_lines(&out.stdout, "embedding", &texts);

    let out = kiln(&[
        "embed",
        "--model",
        &model(),
        "--json",
        "--no-normalize",
        "--pooling",
        "cls",
        texts[1],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_json_lines(&out.stdout, "cls_unnormalized", &texts[1..]);
}

#[test]
fn embed_a_file_line_by_line() {
    let cases = fixture();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let path = std::env::temp_dir().join(format!("kiln-embed-{}.txt", std::process::id()));
    // Blank lines are skipped.
    std::fs::write(&path, format!("{}\n\n", texts.join("\n"))).unwrap();
    let out = kiln(&[
        "embed",
        "--model",
        &model(),
        "--file",
        path.to_str().unwrap(),
        "--json",
        "--batch-size",
        "4",
    ]);
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_json_lines(&out.stdout, "embedding", &texts);
}

#[test]
fn embed_human_output_and_errors() {
    let out = kiln(&["embed", "--model", &model(), "This is an example sentence"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("This is an example sentence"));
    let summary = lines.next().unwrap();
    assert!(summary.contains("[384 dims, norm 1.0000]"), "{summary}");
    assert!(summary.contains(" … "), "{summary}");

    let out = kiln(&["embed", "--model", &model()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to embed"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let tiny_llama = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/models/tiny-llama");
    let out = kiln(&["embed", "--model", tiny_llama, "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`llama`"), "{err}");
}

/// A Hugging Face cache holding MiniLM as `sentence-transformers/all-MiniLM-L6-v2` (the
/// snapshot is a symlink to the artifact dir, as the hub cache links its blobs).
#[cfg(unix)]
fn fake_hub_cache() -> PathBuf {
    let root = std::env::temp_dir().join(format!("kiln-embed-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let repo = root.join("models--sentence-transformers--all-MiniLM-L6-v2");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    std::fs::write(
        repo.join("refs/main"),
        "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize(model()).unwrap(),
        repo.join("snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf"),
    )
    .unwrap();
    root
}

#[cfg(unix)]
#[test]
fn model_by_hub_id_from_the_cache() {
    let cache = fake_hub_cache();
    let run = |spec: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["--device", "cpu", "embed", "--json", "--model", spec])
            .arg("This is an example sentence")
            .env_remove("KILN_DEVICE")
            .env("HF_HUB_CACHE", &cache)
            .output()
            .expect("kiln runs")
    };
    let out = run("sentence-transformers/all-MiniLM-L6-v2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_json_lines(&out.stdout, "embedding", &["This is an example sentence"]);

    let out = run("sentence-transformers/all-mpnet-base-v2");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let looked = cache.join("models--sentence-transformers--all-mpnet-base-v2");
    assert!(err.contains(&looked.display().to_string()), "{err}");

    let out = run("sentence-transformers/all-MiniLM-L6-v2@v9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not at revision `v9`"), "{err}");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn model_flags_embed_does_not_apply_are_refused() {
    let tiny_bert = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/models/tiny-bert");
    for flags in [
        vec!["--quant", "nf4"],
        vec!["--quant", "int8"],
        vec!["--double-quant"],
        vec!["--compute-dtype", "bf16"],
        vec!["--dtype", "f16"],
    ] {
        let mut args = vec!["embed", "--model", tiny_bert, "hello"];
        args.extend(&flags);
        let out = kiln(&args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "error: {} is not supported by `kiln embed`",
                flags[0]
            )),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
