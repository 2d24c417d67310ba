//! Bytes as a `config.json` (and the other JSON files of a model dir); the body is
//! `bodies/config.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/config.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::run(data));
