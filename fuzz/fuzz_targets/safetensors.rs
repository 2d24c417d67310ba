//! Bytes as a `model.safetensors` file: open it as the loaders do, then read every tensor as a
//! float (stored and converted to f32) and every bitsandbytes Linear it holds.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use kiln_models::inspect::inspect_safetensors;
use kiln_models::weights::{SafetensorsSource, WeightSource};
use libfuzzer_sys::fuzz_target;

/// The reader memory-maps a path: each input is written to the same file of a private dir.
fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kiln-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("model.safetensors")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = file();
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
});
