//! What a checkpoint holds: architecture, dtypes, quantization, parameter count, size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ModelError;
use crate::config::ModelConfig;

/// A summary of a checkpoint, as `kiln inspect` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The file or dir inspected.
    pub path: PathBuf,
    /// `safetensors` or `gguf`.
    pub format: String,
    /// `model_type` / `general.architecture`.
    pub architecture: Option<String>,
    /// Number of tensors.
    pub tensors: usize,
    /// Parameters (4-bit packed weights counted by their logical shape).
    pub parameters: u64,
    /// Bytes of tensor data.
    pub bytes: u64,
    /// Tensor count per stored dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// Quantization, e.g. `bitsandbytes nf4 (double quant)` or `Q4_1`.
    pub quantization: Option<String>,
}

impl Summary {
    /// Bits per parameter of the stored tensors.
    pub fn bits_per_parameter(&self) -> f64 {
        if self.parameters == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / self.parameters as f64
        }
    }
}

/// Summarizes an HF safetensors dir or file.
pub fn inspect_safetensors(path: &Path) -> Result<Summary, ModelError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let files: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| ModelError::Io {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        f.sort();
        f
    };
    if files.is_empty() {
        return Err(ModelError::Format {
            file: path.to_path_buf(),
            reason: "no .safetensors file here".into(),
        });
    }
    let config = dir.join("config.json");
    let config = config
        .exists()
        .then(|| ModelConfig::from_file(&config))
        .transpose()?;
    let mut summary = Summary {
        path: path.to_path_buf(),
        format: "safetensors".into(),
        architecture: config.as_ref().map(|c| c.model_type.clone()),
        tensors: 0,
        parameters: 0,
        bytes: 0,
        dtypes: BTreeMap::new(),
        quantization: None,
    };
    let mut quant_shapes: BTreeMap<String, u64> = BTreeMap::new();
    let mut packed: Vec<(String, u64)> = Vec::new();
    for file in &files {
        let io = |source| ModelError::Io {
            path: file.clone(),
            source,
        };
        let handle = kiln_quant::checkpoint::open_regular(file).map_err(io)?;
        // SAFETY: read-only map; only the header and the small quant-state tensors are touched.
        let bytes = unsafe { memmap2::Mmap::map(&handle) }.map_err(io)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Format {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            summary.tensors += 1;
            summary.bytes += view.data().len() as u64;
            *summary
                .dtypes
                .entry(format!("{:?}", view.dtype()))
                .or_default() += 1;
            let n: u64 = view.shape().iter().map(|&d| d as u64).product();
            if let Some(weight) = name
                .strip_suffix(".quant_state.bitsandbytes__nf4")
                .or_else(|| name.strip_suffix(".quant_state.bitsandbytes__fp4"))
            {
                // The JSON state holds the logical shape of the packed weight.
                let state: serde_json::Value =
                    serde_json::from_slice(view.data()).map_err(|source| ModelError::Json {
                        path: file.clone(),
                        source,
                    })?;
                let logical: u64 = state["shape"]
                    .as_array()
                    .map(|s| s.iter().filter_map(|d| d.as_u64()).product())
                    .unwrap_or(0);
                quant_shapes.insert(weight.to_owned(), logical);
                let nested = state.get("nested_blocksize").is_some();
                let kind = state["quant_type"].as_str().unwrap_or("4bit");
                summary.quantization = Some(format!(
                    "bitsandbytes {kind}{}",
                    if nested { " (double quant)" } else { "" }
                ));
                continue;
            }
            let is_aux = [
                ".absmax",
                ".quant_map",
                ".nested_absmax",
                ".nested_quant_map",
                ".SCB",
                ".weight_format",
            ]
            .iter()
            .any(|s| name.ends_with(s));
            if is_aux {
                if name.ends_with(".SCB") {
                    summary.quantization = Some("bitsandbytes int8 (LLM.int8)".into());
                }
                continue;
            }
            packed.push((name, n));
        }
    }
    for (name, n) in packed {
        summary.parameters += quant_shapes.get(&name).copied().unwrap_or(n);
    }
    Ok(summary)
}

/// Summarizes a GGUF file (metadata and tensor table only; no tensor is read).
pub fn inspect_gguf(path: &Path) -> Result<Summary, ModelError> {
    let file = crate::gguf::Gguf::open(path)?;
    let mut summary = Summary {
        path: path.to_path_buf(),
        format: format!("gguf v{}", file.version()),
        architecture: file.arch().ok().map(str::to_owned),
        tensors: file.tensors().len(),
        parameters: 0,
        bytes: 0,
        dtypes: BTreeMap::new(),
        quantization: None,
    };
    // The quantization is named by the type holding the most parameters among the quantized ones.
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for t in file.tensors() {
        summary.parameters += t.n_elements();
        summary.bytes += t.n_bytes();
        let name = t.ty().name().to_owned();
        *summary.dtypes.entry(name.clone()).or_default() += 1;
        if !matches!(name.as_str(), "F32" | "F16" | "BF16") {
            *by_type.entry(name).or_default() += t.n_elements();
        }
    }
    // llama.cpp records the mix it made (`Q4_K_M` mixes Q4_K, Q6_K, Q8_0, ...) in `general.file_type`.
    let file_type = file
        .opt_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(llama_ftype_name);
    summary.quantization = file_type
        .map(str::to_owned)
        .or_else(|| by_type.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t));
    Ok(summary)
}

/// llama.cpp's `llama_ftype` names.
fn llama_ftype_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// Summarizes a `.gguf` file or an HF safetensors dir/file.
pub fn inspect(path: &Path) -> Result<Summary, ModelError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        inspect_gguf(path)
    } else {
        inspect_safetensors(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_llama_counts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-llama");
        let s = inspect_safetensors(&dir).unwrap();
        assert_eq!(s.architecture.as_deref(), Some("llama"));
        assert_eq!(s.dtypes.get("F32"), Some(&s.tensors));
        // Embedding + lm_head 128x64 each, 2 layers of q,o 64x64, k,v 32x64, mlp 3x64x112, 2 norms; final norm.
        let layer = 2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 112 + 2 * 64;
        assert_eq!(s.parameters, (2 * 128 * 64 + 2 * layer + 64) as u64);
        assert_eq!(s.bytes, s.parameters * 4);
        assert_eq!(s.bits_per_parameter(), 32.0);
        assert!(s.quantization.is_none());
    }
}
