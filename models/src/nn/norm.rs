//! RMSNorm, in the Llama form (`w * x`) and the Gemma form (`(1 + w) * x`).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use crate::ModelError;
use crate::nn::kernels;
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
    /// (the squares would overflow f16) and cast back before the weight multiplies. On burn's
    /// CubeCL backends (CUDA, wgpu) this is one kernel launch.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        kernels::rms_norm(x, &self.weight, self.eps)
            .unwrap_or_else(|x| rms_norm_reference(x, &self.weight, self.eps))
    }

    /// `residual + x` and its normalization: `(sum, normed)`, as `let sum = residual + x;`
    /// followed by [`forward`](Self::forward) on the sum. On burn's CubeCL backends this is
    /// one kernel launch.
    pub fn forward_residual<const D: usize>(
        &self,
        residual: Tensor<B, D>,
        x: Tensor<B, D>,
    ) -> (Tensor<B, D>, Tensor<B, D>) {
        match kernels::add_rms_norm(residual, x, &self.weight, self.eps) {
            Ok(both) => both,
            Err((residual, x)) => {
                let sum = residual + x;
                (sum.clone(), self.forward(sum))
            }
        }
    }
}

/// RMSNorm in burn tensor ops: the path of every backend the kernels do not cover, and their
/// reference.
pub(crate) fn rms_norm_reference<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let half = matches!(dtype, DType::F16 | DType::BF16);
    let x = if half { x.cast(DType::F32) } else { x };
    let rms = x
        .clone()
        .powi_scalar(2)
        .mean_dim(D - 1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    let normed = x * rms;
    let normed = if half { normed.cast(dtype) } else { normed };
    normed * weight.clone().unsqueeze::<D>()
}
