//! The HF + bitsandbytes checkpoint format: reading, writing, and quantizing a model directory.
//!
//! [`Checkpoint`] reads a directory saved by transformers + bitsandbytes (or by kiln): each
//! Linear weight comes back as a [`LinearWeight`]. [`quantize_checkpoint`] turns an unquantized
//! HF safetensors model (single file or sharded) into a bitsandbytes checkpoint, streaming tensor
//! by tensor. The per-tensor layout lives in [`bnb_format`]; tensor I/O in
//! [`SafetensorsFile`], [`ModelFiles`] and [`SafetensorsWriter`].

pub mod bnb_format;
mod quantize;
mod safetensors_io;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::codec::{FourBitType, Int8Rowwise, Quantized4bit};
use crate::config::QuantConfig;
use crate::error::{QuantError, Result};

pub use quantize::{Progress, Summary, TensorAction, is_quantizable, quantize_checkpoint};
pub use safetensors_io::{
    HfTensor, INDEX_FILE, ModelFiles, SINGLE_FILE, SafetensorsFile, SafetensorsWriter, save_tensors,
};

/// A Linear weight as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum LinearWeight {
    /// A bitsandbytes 4-bit weight.
    FourBit(Quantized4bit),
    /// A bitsandbytes 8-bit weight (int8 + `SCB`).
    Int8(Int8Rowwise),
    /// An unquantized weight.
    Float(HfTensor),
}

impl LinearWeight {
    /// `[out, in]` of the weight.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            LinearWeight::FourBit(q) => q.shape().to_vec(),
            LinearWeight::Int8(q) => vec![q.rows(), q.cols()],
            LinearWeight::Float(t) => t.shape.clone(),
        }
    }

    /// The weight in f32, dequantized as bitsandbytes dequantizes it (4-bit: to the stored
    /// dtype, then widened; 8-bit: `int8_vectorwise_dequant`).
    pub fn dequantize_f32(&self, name: &str) -> Result<Vec<f32>> {
        Ok(match self {
            LinearWeight::FourBit(q) => match q.dtype() {
                crate::element::FloatDtype::F32 => q.dequantize::<f32>(),
                crate::element::FloatDtype::F16 => q
                    .dequantize::<half::f16>()
                    .iter()
                    .map(|v| v.to_f32())
                    .collect(),
                crate::element::FloatDtype::BF16 => q
                    .dequantize::<half::bf16>()
                    .iter()
                    .map(|v| v.to_f32())
                    .collect(),
            },
            LinearWeight::Int8(q) => q.dequantize(),
            LinearWeight::Float(t) => t.to_f32_vec(name)?,
        })
    }
}

/// A model directory: `config.json` (optional) and its safetensors files, read lazily.
#[derive(Debug)]
pub struct Checkpoint {
    files: ModelFiles,
    config: Value,
    quant: Option<QuantConfig>,
}

/// Opens a model file for reading, refusing anything but a regular file: opening a FIFO blocks
/// until a writer comes, and reading a device never ends.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    std::fs::File::open(path)
}

/// Reads a whole model file (a JSON config or index) that must be a regular file
/// ([`open_regular`]).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = read_regular(path).map_err(|e| QuantError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| QuantError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Checkpoint {
    /// Opens `dir` (headers and `config.json` only; tensors are read on demand).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let files = ModelFiles::open(dir)?;
        let config_path = dir.join("config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Value::Null
        };
        let quant = QuantConfig::from_model_config(&config).map_err(|e| QuantError::Json {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Checkpoint {
            files,
            config,
            quant,
        })
    }

    /// The directory.
    pub fn dir(&self) -> PathBuf {
        self.files.dir().to_path_buf()
    }

    /// `config.json` (`Null` when the directory has none).
    pub fn config_json(&self) -> &Value {
        &self.config
    }

    /// The `quantization_config` of `config.json`, if any.
    pub fn quant_config(&self) -> Option<&QuantConfig> {
        self.quant.as_ref()
    }

    /// The underlying files.
    pub fn files(&mut self) -> &mut ModelFiles {
        &mut self.files
    }

    /// Reads one stored tensor by name.
    pub fn tensor(&mut self, name: &str) -> Result<HfTensor> {
        self.files.read(name)
    }

    /// The module paths of all 2-D weights (quantized or not), sorted: `P` for each `P.weight`.
    pub fn linear_modules(&self) -> Vec<String> {
        self.files
            .names()
            .filter_map(|n| n.strip_suffix(".weight"))
            .filter(|m| {
                let name = format!("{m}.weight");
                let quantized = self.is_four_bit(m) || self.files.contains(&format!("{m}.SCB"));
                quantized || self.files.info(&name).is_some_and(|i| i.shape.len() == 2)
            })
            .map(str::to_string)
            .collect()
    }

    fn is_four_bit(&self, module: &str) -> bool {
        [FourBitType::Nf4, FourBitType::Fp4].iter().any(|&qt| {
            self.files.contains(&bnb_format::quant_state_key(
                &format!("{module}.weight"),
                qt,
            ))
        })
    }

    /// The weight of the Linear at `module` (e.g. `model.layers.0.self_attn.q_proj`).
    pub fn linear_weight(&mut self, module: &str) -> Result<LinearWeight> {
        let weight = format!("{module}.weight");
        if self.is_four_bit(module) {
            let files = &mut self.files;
            let q = bnb_format::four_bit_from_tensors(&weight, |name| {
                if files.contains(name) {
                    files.read(name).map(Some)
                } else {
                    Ok(None)
                }
            })
            .map_err(|e| with_file(e, files.dir()))?;
            return Ok(LinearWeight::FourBit(q));
        }
        if self.files.contains(&format!("{module}.SCB")) {
            let files = &mut self.files;
            let q = bnb_format::int8_from_tensors(module, |name| {
                if files.contains(name) {
                    files.read(name).map(Some)
                } else {
                    Ok(None)
                }
            })
            .map_err(|e| with_file(e, files.dir()))?;
            return Ok(LinearWeight::Int8(q));
        }
        Ok(LinearWeight::Float(self.files.read(&weight)?))
    }
}

fn with_file(err: QuantError, dir: &Path) -> QuantError {
    match err {
        QuantError::MissingTensor { name, file: None } => QuantError::MissingTensor {
            name,
            file: Some(dir.to_path_buf()),
        },
        other => other,
    }
}
