//! A linear layer with HF's `[out, in]` weight convention at load time.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

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
        let name = format!("{prefix}.weight");
        let weight = source.host_tensor(&name)?;
        if weight.shape != [out_features, in_features] {
            return Err(ModelError::ShapeMismatch {
                file: source.origin().to_path_buf(),
                tensor: name,
                expected: vec![out_features, in_features],
                found: weight.shape,
            });
        }
        // Transposed on the host, so the device holds a contiguous `[in, out]` matrix.
        let mut t = vec![0.0f32; weight.data.len()];
        for (o, row) in weight.data.chunks_exact(in_features).enumerate() {
            for (i, &w) in row.iter().enumerate() {
                t[i * out_features + o] = w;
            }
        }
        let weight_t = Tensor::from_data(TensorData::new(t, [in_features, out_features]), device);
        let bias = if bias {
            Some(source.tensor::<B, 1>(&format!("{prefix}.bias"), [out_features], device)?)
        } else {
            None
        };
        Ok(Self { weight_t, bias })
    }

    /// From a weight already in memory (`[out, in]`), e.g. tied embeddings.
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        // Materialized once (a transposed view would be re-laid out by some backends per call).
        let device = weight.device();
        let weight_t = Tensor::from_data(weight.transpose().into_data(), &device);
        Self {
            weight_t,
            bias: None,
        }
    }

    /// `[batch, seq, in]` -> `[batch, seq, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, i] = x.dims();
        let y = x.reshape([b * s, i]).matmul(self.weight_t.clone());
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        let out = y.dims()[1];
        y.reshape([b, s, out])
    }
}
