//! HF safetensors checkpoints: one file or a sharded dir, memory-mapped.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::{HostTensor, WeightSource};
use crate::ModelError;

/// One memory-mapped safetensors file.
struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
}

impl SafetensorsSource {
    /// Opens a model dir (single file or sharded) or one `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.join("model.safetensors.index.json").exists() {
            let index_path = path.join("model.safetensors.index.json");
            let text = std::fs::read(&index_path).map_err(|source| ModelError::Io {
                path: index_path.clone(),
                source,
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
                let p = path.join(file);
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
            let f = File::open(&file).map_err(|source| ModelError::Io {
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
            shards.push(Shard { path: file, map });
        }
        Ok(Self {
            origin: path.to_path_buf(),
            shards,
            index,
        })
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
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
