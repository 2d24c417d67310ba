//! RMSNorm, in the Llama form (`w * x`) and the Gemma form (`(1 + w) * x`).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use crate::ModelError;
use crate::weights::WeightSource;

/// Root-mean-square normalization over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    weight: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Loads `{prefix}.weight`; `add_unit_offset` gives Gemma's `(1 + w)` scale.
    pub fn load(
        source: &mut dyn WeightSource,
        prefix: &str,
        dim: usize,
        eps: f64,
        add_unit_offset: bool,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let weight = source.tensor::<B, 1>(&format!("{prefix}.weight"), [dim], device)?;
        let weight = if add_unit_offset {
            weight.add_scalar(1.0)
        } else {
            weight
        };
        Ok(Self { weight, eps })
    }

    /// Normalizes `[..., dim]`. As transformers does, f16/bf16 inputs are normalized in f32
    /// (the squares would overflow f16) and cast back before the weight multiplies.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let half = matches!(dtype, DType::F16 | DType::BF16);
        let x = if half { x.cast(DType::F32) } else { x };
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        let normed = x * rms;
        let normed = if half { normed.cast(dtype) } else { normed };
        normed * self.weight.clone().unsqueeze::<D>()
    }
}
