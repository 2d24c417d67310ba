//! Where weights come from: a safetensors file or sharded dir, a GGUF file, ...
//!
//! Loaders ask a [`WeightSource`] for one tensor at a time by its HF name, so a model is
//! built layer by layer and never held twice in memory.

mod gguf;
mod safetensors;

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

pub use self::gguf::GgufSource;
pub use self::safetensors::SafetensorsSource;
use crate::ModelError;

/// A tensor on the host, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// A source of named tensors (HF names, e.g. `model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// The file or dir, for error messages.
    fn origin(&self) -> &Path;

    /// Whether a tensor exists.
    fn contains(&self, name: &str) -> bool;

    /// Reads one tensor as f32.
    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError>;
}

impl dyn WeightSource + '_ {
    /// Reads a tensor, checks its shape and puts it on `device`.
    pub fn tensor<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        let t = self.host_tensor(name)?;
        if t.shape != shape {
            return Err(ModelError::ShapeMismatch {
                file: self.origin().to_path_buf(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        Ok(Tensor::from_data(TensorData::new(t.data, shape), device))
    }
}
