//! The body of the `safetensors` target: bytes as a `model.safetensors` file, opened as the
//! loaders open it, then every tensor read as a float (stored and converted to f32) and every
//! bitsandbytes Linear it holds read and dequantized.
//!
//! Shared by `fuzz_targets/safetensors.rs` and the bounded pass in
//! `models/tests/fuzz_smoke.rs`; it may only use crates both of them depend on.

use std::path::Path;

use kiln_models::inspect::inspect_safetensors;
use kiln_models::weights::{SafetensorsSource, WeightSource};

/// Writes `data` to `path` (the reader memory-maps a file) and reads it.
pub fn run(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write the input");
    let _ = inspect_safetensors(path);
    let Ok(mut source) = SafetensorsSource::open(path) else {
        return;
    };
    let mut names: Vec<String> = source.names().map(str::to_owned).collect();
    names.sort();
    for name in &names {
        assert!(source.contains(name));
        if let Ok(Some(raw)) = source.raw_float(name) {
            let _ = raw.to_f32();
        }
        let _ = source.host_tensor(name);
        if let Some(prefix) = name.strip_suffix(".weight")
            && let Ok(Some(weight)) = source.stored_linear(prefix)
        {
            let _ = weight.dequantize_f32(name);
        }
    }
}
