//! Where weights come from: a safetensors file or sharded dir, a GGUF file, ...
//!
//! Loaders ask a [`WeightSource`] for one tensor at a time by its HF name, so a model is
//! built layer by layer and never held twice in memory. A source also carries the
//! [`WeightOptions`] of the load (float dtype, quantization): [`crate::nn::Linear::load`] reads
//! them, so quantizing a model on load needs nothing from the architecture's code.

mod gguf;
mod safetensors;

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use kiln_quant::QuantConfig;
use kiln_quant::checkpoint::LinearWeight;
pub use kiln_quant::codec::FloatDtype;

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

/// A float tensor as the file stores it: little-endian bytes of `dtype`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFloat {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The stored dtype.
    pub dtype: FloatDtype,
    /// The stored bytes.
    pub bytes: Vec<u8>,
}

impl RawFloat {
    /// The values as f32 (exact: every stored dtype widens to f32 without rounding).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.bytes;
        match self.dtype {
            FloatDtype::F32 => b
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatDtype::F16 => b
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatDtype::BF16 => b
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }

    /// On `device` in `dtype`: the stored bytes are uploaded as they are and converted there
    /// when the backend holds the stored dtype (GPU backends); otherwise converted on the host.
    /// Either way the values are the stored ones rounded once to `dtype`.
    pub fn to_device<B: Backend, const D: usize>(
        self,
        shape: [usize; D],
        dtype: FloatDtype,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        check_dtype::<B>(dtype, device)?;
        let stored = burn_dtype(self.dtype);
        // f32 goes through an aligned f32 vector (host backends read it in place).
        if self.dtype != FloatDtype::F32 && B::supports_dtype(device, stored) {
            let (start, n) = (std::time::Instant::now(), self.bytes.len());
            // Uploaded flat and reshaped there: a flat upload is one contiguous copy, where
            // burn-cuda copies a matrix row by row as a pitched 2-D copy (measured ~0.45 GB/s
            // from host memory on an H100 machine). (CubeCL's pinned staging, asked for by
            // marking the bytes as file data, measured slower: 6.5 s against 5.7 s for 2.5 GB.)
            let elems = shape.iter().product::<usize>();
            let data = TensorData::from_bytes_vec(self.bytes, [elems], stored);
            let t = Tensor::<B, 1>::from_data(data, (device, stored)).reshape(shape);
            tracing::debug!(
                "uploaded {n} bytes in {:.2} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
            return Ok(if self.dtype == dtype {
                t
            } else {
                t.cast(burn_dtype(dtype))
            });
        }
        float_tensor(self.to_f32(), shape, dtype, device)
    }
}

/// How weights become tensors as they are read: their float dtype and whether Linear layers
/// are quantized (transformers' `dtype` and `quantization_config` of `from_pretrained`).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightOptions {
    /// The float dtype of unquantized weights, and so of the model's compute.
    pub dtype: FloatDtype,
    /// Quantize each Linear as it is read: every Linear of the decoder layers (`lm_head`,
    /// embeddings and `skip_modules` stay unquantized). For a checkpoint stored quantized, the
    /// storage format is the checkpoint's; only `compute_dtype` and `int8_threshold` are
    /// taken from here.
    pub quantization: Option<QuantConfig>,
}

/// f32, unquantized.
pub static DEFAULT_WEIGHT_OPTIONS: WeightOptions = WeightOptions {
    dtype: FloatDtype::F32,
    quantization: None,
};

impl Default for WeightOptions {
    fn default() -> Self {
        DEFAULT_WEIGHT_OPTIONS.clone()
    }
}

/// A source of named tensors (HF names, e.g. `model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// The file or dir, for error messages.
    fn origin(&self) -> &Path;

    /// Whether a tensor exists.
    fn contains(&self, name: &str) -> bool;

    /// Reads one tensor as f32.
    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError>;

    /// Reads one float tensor as it is stored, when the source stores plain f32/f16/bf16
    /// (`None`: ask [`WeightSource::host_tensor`]). Lets loads skip the f32 round trip.
    fn raw_float(&mut self, name: &str) -> Result<Option<RawFloat>, ModelError> {
        let _ = name;
        Ok(None)
    }

    /// The weight of the Linear at `prefix` when the checkpoint stores it quantized
    /// (bitsandbytes 4-bit or 8-bit layout); `None` when `{prefix}.weight` is a float tensor.
    fn stored_linear(&mut self, prefix: &str) -> Result<Option<LinearWeight>, ModelError> {
        let _ = prefix;
        Ok(None)
    }

    /// The checkpoint's own `quantization_config`, when it was saved quantized.
    fn stored_quantization(&self) -> Option<&QuantConfig> {
        None
    }

    /// The dtype and quantization the model is loaded with.
    fn options(&self) -> &WeightOptions {
        &DEFAULT_WEIGHT_OPTIONS
    }
}

/// burn's dtype for a kiln float dtype.
pub fn burn_dtype(dtype: FloatDtype) -> DType {
    match dtype {
        FloatDtype::F32 => DType::F32,
        FloatDtype::F16 => DType::F16,
        FloatDtype::BF16 => DType::BF16,
    }
}

/// Checks that backend `B` computes in `dtype` on `device`; the error says which dtype works.
pub fn check_dtype<B: Backend>(dtype: FloatDtype, device: &B::Device) -> Result<(), ModelError> {
    if B::supports_dtype(device, burn_dtype(dtype)) {
        Ok(())
    } else {
        Err(ModelError::Config(format!(
            "dtype {dtype} is not supported by this backend on {device:?} \
             (the CPU backend computes in float32 only; CUDA has float16 and bfloat16, wgpu \
             float16 where the adapter has it)"
        )))
    }
}

/// A float tensor of `dtype` from f32 host values (rounded to nearest even).
pub fn float_tensor<B: Backend, const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    dtype: FloatDtype,
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    check_dtype::<B>(dtype, device)?;
    // Flat, then reshaped: see `RawFloat::to_device`.
    let elems = shape.iter().product::<usize>();
    Ok(
        Tensor::<B, 1>::from_data(TensorData::new(data, [elems]), (device, burn_dtype(dtype)))
            .reshape(shape),
    )
}

impl dyn WeightSource + '_ {
    /// Reads a tensor, checks its shape and puts it on `device` in the load's dtype.
    pub fn tensor<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        if let Some(raw) = self.raw_float(name)? {
            if raw.shape != shape {
                return Err(ModelError::ShapeMismatch {
                    file: self.origin().to_path_buf(),
                    tensor: name.to_owned(),
                    expected: shape.to_vec(),
                    found: raw.shape,
                });
            }
            return raw.to_device(shape, self.options().dtype, device);
        }
        let t = self.host_tensor(name)?;
        if t.shape != shape {
            return Err(ModelError::ShapeMismatch {
                file: self.origin().to_path_buf(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        float_tensor(t.data, shape, self.options().dtype, device)
    }
}
