//! Bytes as a GGUF file; the body is `bodies/gguf.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/gguf.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
