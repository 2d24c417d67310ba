//! Bytes as a `model.safetensors` file; the body is `bodies/safetensors.rs`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/safetensors.rs"]
mod body;

/// The reader memory-maps a path: each input is written to the same file of a private dir.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kiln-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("model.safetensors")
    })
}

fuzz_target!(|data: &[u8]| body::run(file(), data));
