//! The gated MLP of Llama (SwiGLU) and Gemma (GeGLU): `down(act(gate(x)) * up(x))`.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::backend::Backend;

use crate::ModelError;
use crate::nn::{Linear, kernels};
use crate::weights::WeightSource;

/// The gate activation, by its transformers name (`hidden_act` / `hidden_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (also `swish`): Llama, Mistral.
    Silu,
    /// `gelu_pytorch_tanh`: GELU with the tanh approximation (Gemma 1/2/3). Gemma 1 configs
    /// that say `gelu` mean this too (transformers rewrites it).
    GeluTanh,
}

impl Activation {
    /// From a transformers activation name.
    pub fn from_hf(name: &str) -> Result<Self, ModelError> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "gelu_python_tanh" => {
                Ok(Self::GeluTanh)
            }
            other => Err(ModelError::Config(format!(
                "unsupported activation `{other}` (supported: silu, gelu_pytorch_tanh)"
            ))),
        }
    }

    /// Applies it element-wise.
    pub fn forward<const D: usize, B: Backend>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => silu(x),
            Self::GeluTanh => gelu_approximate(x),
        }
    }

    /// `act(gate) * up` for tensors of one shape. On burn's CubeCL backends (CUDA, wgpu) this
    /// is one kernel launch, the activation computed in f32 and rounded once to the tensors'
    /// dtype (as torch's half-precision `silu`/`gelu`).
    pub fn gated<const D: usize, B: Backend>(
        self,
        gate: Tensor<B, D>,
        up: Tensor<B, D>,
    ) -> Tensor<B, D> {
        kernels::gated(self, gate, up).unwrap_or_else(|(gate, up)| self.forward(gate) * up)
    }
}

/// `down_proj(act(gate_proj(x)) * up_proj(x))`.
#[derive(Debug, Clone)]
pub struct GatedMlp<B: Backend> {
    gate_up: GateUp<B>,
    down_proj: Linear<B>,
    activation: Activation,
}

/// The gate and up projections: one Linear with both outputs side by side where the weights
/// allow it (dense, 4-bit or int8 on GPU backends: one launch instead of two), else two.
#[derive(Debug, Clone)]
enum GateUp<B: Backend> {
    Fused {
        gate_up: Linear<B>,
        intermediate: usize,
    },
    Split {
        gate: Linear<B>,
        up: Linear<B>,
    },
}

impl<B: Backend> GatedMlp<B> {
    /// Loads `{prefix}.gate_proj`, `{prefix}.up_proj` and `{prefix}.down_proj`.
    pub fn load(
        source: &mut dyn WeightSource,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
        bias: bool,
        activation: Activation,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, i) = (hidden, intermediate);
        let (gate, up) = (format!("{prefix}.gate_proj"), format!("{prefix}.up_proj"));
        let mut parts = Linear::load_fused(source, &[gate, up], h, &[i, i], bias, device)?;
        let gate_up = match (parts.pop(), parts.pop()) {
            (Some(gate_up), None) => GateUp::Fused {
                gate_up,
                intermediate: i,
            },
            (Some(up), Some(gate)) => GateUp::Split { gate, up },
            _ => unreachable!("load_fused gives one Linear or one per name"),
        };
        Ok(Self {
            gate_up,
            down_proj: Linear::load(source, &format!("{prefix}.down_proj"), i, h, bias, device)?,
            activation,
        })
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (gate, up) = match &self.gate_up {
            GateUp::Fused {
                gate_up,
                intermediate: i,
            } => {
                let y = gate_up.forward(x);
                (y.clone().narrow(2, 0, *i), y.narrow(2, *i, *i))
            }
            GateUp::Split { gate, up } => (gate.forward(x.clone()), up.forward(x)),
        };
        self.down_proj.forward(self.activation.gated(gate, up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn gelu_tanh_matches_torch_values() {
        // torch.nn.functional.gelu(x, approximate="tanh") for x = -3, -1, 0, 0.5, 2.
        let x = Tensor::<NdArray, 1>::from_data(
            TensorData::from([-3.0f32, -1.0, 0.0, 0.5, 2.0]),
            &Default::default(),
        );
        let want = [-0.003_637_4f32, -0.158_808, 0.0, 0.345_714, 1.954_597_7];
        let got: Vec<f32> = Activation::GeluTanh
            .forward(x)
            .into_data()
            .to_vec()
            .unwrap_or_default();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn unknown_activation_is_named() {
        let err = Activation::from_hf("relu2").unwrap_err().to_string();
        assert!(err.contains("relu2"), "{err}");
    }
}
