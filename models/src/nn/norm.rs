//! RMSNorm, in the Llama form (`w * x`) and the Gemma form (`(1 + w) * x`).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

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

    /// Normalizes `[..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        x * rms * self.weight.clone().unsqueeze::<D>()
    }
}
