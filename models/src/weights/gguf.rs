//! GGUF files as a [`WeightSource`]: tensors under their HF names, dequantized one at a time,
//! with llama.cpp's conversions undone (see [`Gguf::hf_tensor`]).

use std::collections::HashSet;
use std::path::Path;

use super::{HostTensor, WeightOptions, WeightSource};
use crate::ModelError;
use crate::gguf::Gguf;

/// A GGUF file read tensor by tensor under HF names.
pub struct GgufSource {
    file: Gguf,
    names: HashSet<String>,
    options: WeightOptions,
}

impl GgufSource {
    /// Wraps an opened file of a supported architecture family.
    pub fn new(file: Gguf) -> Result<Self, ModelError> {
        let names = file.hf_tensor_names()?.into_iter().collect();
        Ok(Self {
            file,
            names,
            options: WeightOptions::default(),
        })
    }

    /// Loads with these dtype and quantization settings (the dequantized tensors are
    /// re-quantized, e.g. to NF4, as they are read).
    pub fn with_options(mut self, options: WeightOptions) -> Self {
        self.options = options;
        self
    }

    /// The underlying file (metadata, tokenizer, chat template).
    pub fn gguf(&self) -> &Gguf {
        &self.file
    }
}

impl WeightSource for GgufSource {
    fn origin(&self) -> &Path {
        self.file.path()
    }

    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn options(&self) -> &WeightOptions {
        &self.options
    }

    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError> {
        if !self.names.contains(name) {
            return Err(ModelError::MissingTensor {
                file: self.file.path().to_path_buf(),
                tensor: name.to_owned(),
            });
        }
        let (shape, data) = self.file.hf_tensor(name)?;
        Ok(HostTensor { shape, data })
    }
}
