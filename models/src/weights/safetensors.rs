//! HF safetensors checkpoints: one file or a sharded dir, memory-mapped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_quant::checkpoint::{HfTensor, LinearWeight, bnb_format};
use kiln_quant::codec::FourBitType;
use kiln_quant::{QuantConfig, QuantError};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::{FloatDtype, HostTensor, RawFloat, WeightOptions, WeightSource};
use crate::ModelError;

/// One memory-mapped safetensors file.
struct Shard {
    path: PathBuf,
    file: Arc<std::fs::File>,
    map: Arc<Mmap>,
    /// `path`, shared by the tensors read lazily from this shard.
    shared_path: Arc<Path>,
}

/// `model.safetensors`, or the shards listed by `model.safetensors.index.json`; the Linear
/// weights of bitsandbytes checkpoints (saved by transformers after `load_in_4bit` /
/// `load_in_8bit`) come back quantized through [`WeightSource::stored_linear`].
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
    /// `quantization_config` of the `config.json` beside the weights.
    stored_quantization: Option<QuantConfig>,
    options: WeightOptions,
}

impl SafetensorsSource {
    /// Opens a model dir (single file or sharded) or one `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.join("model.safetensors.index.json").exists() {
            let index_path = path.join("model.safetensors.index.json");
            let text = kiln_quant::checkpoint::read_regular(&index_path).map_err(|source| {
                ModelError::Io {
                    path: index_path.clone(),
                    source,
                }
            })?;
            let index: serde_json::Value =
                serde_json::from_slice(&text).map_err(|source| ModelError::Json {
                    path: index_path.clone(),
                    source,
                })?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::MissingKey {
                    path: Some(index_path.clone()),
                    key: "weight_map".into(),
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for file in map.values().filter_map(|v| v.as_str()) {
                let p = shard_path(path, &index_path, file)?;
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files
        } else {
            vec![path.join("model.safetensors")]
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (i, file) in files.into_iter().enumerate() {
            let f =
                kiln_quant::checkpoint::open_regular(&file).map_err(|source| ModelError::Io {
                    path: file.clone(),
                    source,
                })?;
            // SAFETY: the map is read-only; a checkpoint changed under a running process is
            // outside what any loader can defend against.
            let map = unsafe { Mmap::map(&f) }.map_err(|source| ModelError::Io {
                path: file.clone(),
                source,
            })?;
            let st = SafeTensors::deserialize(&map).map_err(|e| ModelError::Format {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_owned(), i);
            }
            shards.push(Shard {
                shared_path: Arc::from(file.as_path()),
                path: file,
                file: Arc::new(f),
                map: Arc::new(map),
            });
        }
        let stored_quantization = read_quantization_config(path)?;
        Ok(Self {
            origin: path.to_path_buf(),
            shards,
            index,
            stored_quantization,
            options: WeightOptions::default(),
        })
    }

    /// Loads with these dtype and quantization settings.
    pub fn with_options(mut self, options: WeightOptions) -> Self {
        self.options = options;
        self
    }

    /// One stored tensor as it is in the file (bitsandbytes tensors are not floats).
    fn raw_tensor(&self, name: &str) -> Result<Option<HfTensor>, QuantError> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[i];
        let bad = |reason: String| QuantError::Safetensors {
            path: shard.path.clone(),
            reason,
        };
        let st = SafeTensors::deserialize(&shard.map).map_err(|e| bad(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        Ok(Some(HfTensor::new(
            view.dtype(),
            view.shape().to_vec(),
            view.data().to_vec(),
        )))
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

/// The shard `file` named by the index at `index_path`: a plain file name or relative path that
/// stays inside the model dir `dir` (no absolute paths, no `..`).
fn shard_path(dir: &Path, index_path: &Path, file: &str) -> Result<PathBuf, ModelError> {
    use std::path::Component;
    let relative = Path::new(file);
    let inside = !file.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(ModelError::Format {
            file: index_path.to_path_buf(),
            reason: format!(
                "shard `{file}` is not a file inside the model dir (absolute paths and `..` \
                 are refused)"
            ),
        });
    }
    Ok(dir.join(relative))
}

/// The `quantization_config` of the `config.json` in `path` (a dir) or beside it (a file).
fn read_quantization_config(path: &Path) -> Result<Option<QuantConfig>, ModelError> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Ok(None);
    }
    let text =
        kiln_quant::checkpoint::read_regular(&config_path).map_err(|source| ModelError::Io {
            path: config_path.clone(),
            source,
        })?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| ModelError::Json {
            path: config_path.clone(),
            source,
        })?;
    QuantConfig::from_model_config(&value).map_err(|e| ModelError::Format {
        file: config_path,
        reason: format!("quantization_config: {e}"),
    })
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn stored_linear(&mut self, prefix: &str) -> Result<Option<LinearWeight>, ModelError> {
        let weight = format!("{prefix}.weight");
        let four_bit = [FourBitType::Nf4, FourBitType::Fp4]
            .iter()
            .any(|&qt| self.contains(&bnb_format::quant_state_key(&weight, qt)));
        let int8 = self.contains(&format!("{prefix}.SCB"));
        if !four_bit && !int8 {
            return Ok(None);
        }
        let get = |name: &str| self.raw_tensor(name);
        let read = if four_bit {
            bnb_format::four_bit_from_tensors(&weight, get).map(LinearWeight::FourBit)
        } else {
            bnb_format::int8_from_tensors(prefix, get).map(LinearWeight::Int8)
        };
        read.map(Some).map_err(|e| ModelError::Format {
            file: self.origin.clone(),
            reason: format!("bitsandbytes weight `{weight}`: {e}"),
        })
    }

    fn stored_quantization(&self) -> Option<&QuantConfig> {
        self.stored_quantization.as_ref()
    }

    fn options(&self) -> &WeightOptions {
        &self.options
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn raw_float(&mut self, name: &str) -> Result<Option<RawFloat>, ModelError> {
        let Some(&i) = self.index.get(name) else {
            return Err(ModelError::MissingTensor {
                file: self.origin.clone(),
                tensor: name.to_owned(),
            });
        };
        let shard = &self.shards[i];
        let format_err = |reason: String| ModelError::Format {
            file: shard.path.clone(),
            reason,
        };
        let st = SafeTensors::deserialize(&shard.map).map_err(|e| format_err(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| format_err(e.to_string()))?;
        let dtype = match view.dtype() {
            Dtype::F32 => FloatDtype::F32,
            Dtype::F16 => FloatDtype::F16,
            Dtype::BF16 => FloatDtype::BF16,
            _ => return Ok(None),
        };
        let start = view.data().as_ptr() as usize - shard.map.as_ptr() as usize;
        Ok(Some(RawFloat::mapped(
            view.shape().to_vec(),
            dtype,
            shard.shared_path.clone(),
            shard.file.clone(),
            shard.map.clone(),
            start,
            view.data().len(),
        )))
    }

    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.origin.clone(),
                tensor: name.to_owned(),
            })?;
        let shard = &self.shards[i];
        let format_err = |reason: String| ModelError::Format {
            file: shard.path.clone(),
            reason,
        };
        let st = SafeTensors::deserialize(&shard.map).map_err(|e| format_err(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| format_err(e.to_string()))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    file: shard.path.clone(),
                    tensor: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(HostTensor {
            shape: view.shape().to_vec(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_stay_inside_the_model_dir() {
        let (dir, index) = (Path::new("m"), Path::new("m/model.safetensors.index.json"));
        assert_eq!(
            shard_path(dir, index, "model-00001-of-00002.safetensors").unwrap(),
            Path::new("m/model-00001-of-00002.safetensors")
        );
        assert_eq!(
            shard_path(dir, index, "sub/x.safetensors").unwrap(),
            Path::new("m/sub/x.safetensors")
        );
        for bad in ["../../etc/passwd", "/etc/passwd", "a/../../b", ""] {
            let err = shard_path(dir, index, bad).unwrap_err().to_string();
            assert!(err.contains("inside the model dir"), "{bad}: {err}");
        }
    }
}
