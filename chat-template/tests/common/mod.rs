//! Shared helpers of the integration tests: the artifact cache and the committed fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_chat_template::{ApplyOptions, SpecialTokens};
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The artifact cache: `$KILN_CACHE`, else `<repo>/.cache/kiln`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".cache").join("kiln"),
    }
}

/// A path in the artifact cache; fails the test when it is missing.
pub fn cached(rel: &str) -> PathBuf {
    let path = cache_dir().join(rel);
    assert!(
        path.exists(),
        "missing test artifact {}: run `cargo xtask fetch` (or set KILN_CACHE)",
        path.display()
    );
    path
}

/// A committed fixture of `testdata/chat-template/`, parsed.
pub fn fixture(name: &str) -> Value {
    let path = repo_root()
        .join("testdata")
        .join("chat-template")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}

/// Reads a cached text file.
pub fn read_cached(rel: &str) -> String {
    let path = cached(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The instant the fixtures' `strftime_now` rendered (naive, read as UTC).
pub fn fixture_now(meta: &Value) -> SystemTime {
    let iso = meta["strftime_now_instant"]
        .as_str()
        .expect("strftime_now_instant");
    // "YYYY-MM-DDTHH:MM:SS"
    let num = |r: std::ops::Range<usize>| iso[r].parse::<i64>().expect("date field");
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    // Days from civil (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// Special tokens from a fixture's `{"bos_token": ..., ...}` map.
pub fn special_tokens(map: &Value) -> SpecialTokens {
    let mut s = SpecialTokens::default();
    for (k, v) in map.as_object().expect("special tokens map") {
        let v = v.as_str().expect("token").to_owned();
        match k.as_str() {
            "bos_token" => s.bos_token = Some(v),
            "eos_token" => s.eos_token = Some(v),
            "unk_token" => s.unk_token = Some(v),
            "sep_token" => s.sep_token = Some(v),
            "pad_token" => s.pad_token = Some(v),
            "cls_token" => s.cls_token = Some(v),
            "mask_token" => s.mask_token = Some(v),
            other => {
                s.extra.insert(other.to_owned(), v);
            }
        }
    }
    s
}

/// Apply options for a fixture case.
pub fn case_options(case: &Value, special: &SpecialTokens, now: SystemTime) -> ApplyOptions {
    let list = |key: &str| case.get(key).and_then(Value::as_array).cloned();
    ApplyOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
        continue_final_message: case
            .get("continue_final_message")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tools: list("tools"),
        documents: list("documents"),
        extra: case
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        special_tokens: special.clone(),
        now: Some(now),
        ..ApplyOptions::default()
    }
}

/// The case's messages.
pub fn case_messages(case: &Value) -> Vec<Value> {
    case["messages"].as_array().expect("messages").clone()
}

/// sha256 of a text, hex.
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Byte offset to character offset in `text`.
pub fn char_index(text: &str, byte: usize) -> usize {
    text[..byte].chars().count()
}

/// Whether `path` exists (for tests that build temporary model dirs).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The template source a fixture entry names (a `.jinja` file or a `tokenizer_config.json`'s
/// `chat_template`, in the artifact cache), checked against the entry's hash.
pub fn fixture_template_source(entry: &Value) -> String {
    let rel = entry["source"].as_str().expect("source");
    let source = if rel.ends_with("tokenizer_config.json") {
        let config: Value = serde_json::from_str(&read_cached(rel)).expect("tokenizer_config.json");
        config["chat_template"]
            .as_str()
            .expect("chat_template")
            .to_owned()
    } else {
        read_cached(rel)
    };
    assert_eq!(
        sha256(&source),
        entry["sha256"].as_str().unwrap_or_default(),
        "{rel} differs from the file the fixture was made from: re-run `cargo xtask fetch`"
    );
    source
}
