//! What the CLI's integration tests share: the artifact cache and the committed fixtures.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses part of it; a failed unwrap is a failed test.

use std::path::PathBuf;

/// `path` in the artifact cache (`$KILN_CACHE`, else `.cache/kiln` in the repository); fails
/// the test, saying how to fetch it, when `path` is missing.
pub fn cached(path: &str) -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")));
    let path = cache.join(path);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch`",
        path.display()
    );
    path
}

/// The SmolLM2-135M-Instruct GGUF of the cache.
pub fn smollm2() -> PathBuf {
    cached("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A JSON fixture under `testdata/`.
pub fn fixture(path: &str) -> serde_json::Value {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(path);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}
