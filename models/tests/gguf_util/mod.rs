//! Helpers shared by the GGUF integration tests: artifact and fixture paths, fixture readers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repo root (the workspace dir above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `testdata/gguf/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("testdata/gguf").join(rel)
}

/// A real artifact from the cache (`$KILN_CACHE`, else `<repo>/.cache/kiln`); fails the test
/// with instructions when it is missing.
pub fn artifact(rel: &str) -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/kiln"));
    let path = cache.join(rel);
    assert!(
        path.exists(),
        "missing test artifact {}: run `cargo xtask fetch` first",
        path.display()
    );
    path
}

pub const SMOLLM2: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma3/gemma-3-270m-q4_k_m.gguf";

/// A JSON fixture.
pub fn json(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {}: {e}", path.display()))
}

/// A little-endian f32 fixture file.
pub fn f32s(rel: &str) -> Vec<f32> {
    let path = fixture(rel);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Asserts two f32 slices are bit-equal, reporting the first difference.
pub fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} differs: got {} ({:#010x}), want {} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// sha256 of f32 values as little-endian bytes.
pub fn sha256_f32(values: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}
