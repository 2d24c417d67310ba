//! A linear layer with HF's `[out, in]` weight convention at load time.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::ModelError;
use crate::weights::WeightSource;

/// `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// `[in, out]`: stored transposed so the forward pass is one matmul.
    weight_t: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{prefix}.weight` (`[out, in]`) and, when `bias`, `{prefix}.bias`.
    pub fn load(
        source: &mut dyn WeightSource,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let weight = source.tensor::<B, 2>(
            &format!("{prefix}.weight"),
            [out_features, in_features],
            device,
        )?;
        let bias = if bias {
            Some(source.tensor::<B, 1>(&format!("{prefix}.bias"), [out_features], device)?)
        } else {
            None
        };
        Ok(Self {
            weight_t: weight.transpose(),
            bias,
        })
    }

    /// From a weight already in memory (`[out, in]`), e.g. tied embeddings.
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        Self {
            weight_t: weight.transpose(),
            bias: None,
        }
    }

    /// `[batch, seq, in]` -> `[batch, seq, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = x.matmul(self.weight_t.clone().unsqueeze::<3>());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze::<3>(),
            None => y,
        }
    }
}
