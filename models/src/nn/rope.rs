//! Rotary position embeddings in HF's `rotate_half` layout, with Llama 3 frequency scaling.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use serde_json::Value;

use crate::nn::kernels;

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Linear position interpolation: frequencies divided by `factor`.
    Linear {
        /// The factor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        /// Overall factor (8 for Llama 3.1).
        factor: f64,
        /// Low-frequency factor.
        low_freq_factor: f64,
        /// High-frequency factor.
        high_freq_factor: f64,
        /// Context length the base model was trained with.
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// From an HF `rope_parameters`/`rope_scaling` object (`None` or `default` type: no scaling).
    pub fn from_hf(p: Option<&Value>) -> Result<Self, String> {
        let Some(p) = p else { return Ok(Self::None) };
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| {
            p.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("rope scaling `{kind}` needs the number `{key}`"))
        };
        match kind {
            "default" => Ok(Self::None),
            "linear" => Ok(Self::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(Self::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            other => Err(format!("unsupported rope scaling type `{other}`")),
        }
    }
}

/// Precomputed inverse frequencies for one head dimension.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    /// `inv_freq[i] = 1 / theta^(2i / rotary_dim)`, scaled as asked (f32, as transformers computes it).
    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Self {
        let mut inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        match *scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                inv_freq.iter_mut().for_each(|f| *f /= factor as f32);
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let (factor, lo, hi, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old as f32,
                );
                let low_wavelen = old / lo;
                let high_wavelen = old / hi;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        *f
                    };
                    // wavelengths are finite and positive here, so "not below, not above" is a plain range.
                    let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                    *f = if medium {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
        }
        Self { inv_freq, head_dim }
    }

    /// The head size it rotates.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// `cos`/`sin` tables for explicit positions: `positions[row][i]` is the position of token
    /// `i` of batch row `row`; one row is broadcast over the whole batch. All rows have the
    /// same length. Computed in f32 and cast once to `dtype`, the activations' dtype
    /// (transformers' `cos.to(x.dtype)`).
    pub fn tables<B: Backend>(
        &self,
        positions: &[Vec<usize>],
        dtype: DType,
        device: &B::Device,
    ) -> RopeTables<B> {
        let rows = positions.len();
        let len = positions.first().map_or(0, Vec::len);
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(rows * len * self.head_dim);
        let mut sin = Vec::with_capacity(rows * len * self.head_dim);
        for &p in positions.iter().flatten() {
            // HF's `emb = cat(freqs, freqs)`: each row is the half-row twice, computed in f32.
            let row = cos.len();
            for &f in &self.inv_freq[..half] {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
            cos.extend_from_within(row..);
            sin.extend_from_within(row..);
        }
        let shape = [rows, 1, len, self.head_dim];
        let table = |v: Vec<f32>| {
            let t = Tensor::<B, 4>::from_data(TensorData::new(v, shape), device);
            if t.dtype() == dtype { t } else { t.cast(dtype) }
        };
        RopeTables {
            cos: table(cos),
            sin: table(sin),
        }
    }

    /// Rotates `[batch, heads, seq, head_dim]` queries or keys at positions `start..`.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let seq = x.dims()[2];
        let positions = [(start..start + seq).collect::<Vec<_>>()];
        self.tables::<B>(&positions, x.dtype(), &x.device())
            .apply(x)
    }
}

/// RoPE `cos`/`sin` for the tokens of one forward pass, `[rows, 1, seq, head_dim]` (`rows` is
/// the batch, or 1 when every row has the same positions). Computed once per pass and shared
/// by every layer using the same [`Rope`].
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> RopeTables<B> {
    /// Rotates `[batch, heads, seq, head_dim]` queries or keys (HF's `rotate_half` layout).
    /// On burn's CubeCL backends (CUDA, wgpu) this is one kernel launch.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        kernels::rope(x, &self.cos, &self.sin)
            .unwrap_or_else(|x| rope_reference(x, &self.cos, &self.sin))
    }
}

impl<B: Backend> RopeTables<B> {
    /// A decode step's attention inputs: rotates `q` (returned) and `k`, and writes `k` and
    /// `v` into the KV cache buffers `k_cache`/`v_cache` at position `start` (see
    /// [`LayerCache::take_room`](crate::nn::LayerCache::take_room)); the same values as
    /// [`apply`](Self::apply) and a slice assignment. One launch on burn's CubeCL backends
    /// (CUDA, wgpu); `Err` hands everything back where that kernel does not run.
    #[allow(clippy::type_complexity)]
    pub fn apply_and_append(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        k_cache: Tensor<B, 4>,
        v_cache: Tensor<B, 4>,
        start: usize,
    ) -> kernels::RopeAppend<B> {
        kernels::rope_append(q, k, v, &self.cos, &self.sin, k_cache, v_cache, start)
    }
}

/// RoPE in burn tensor ops: the path of every backend the kernels do not cover, and their
/// reference.
pub(crate) fn rope_reference<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let dim = x.dims()[3];
    let half = dim / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    // The tables are built in the activations' dtype; a mismatch is cast rather than mixed.
    let dtype = x.dtype();
    let (cos, sin) = if cos.dtype() == dtype {
        (cos.clone(), sin.clone())
    } else {
        (cos.clone().cast(dtype), sin.clone().cast(dtype))
    };
    x * cos + rotated * sin
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llama3_scaling_matches_transformers_values() {
        // transformers 4.x `_compute_llama3_parameters` for Llama 3.1 8B (head_dim 128,
        // theta 500000, factor 8, low 1, high 4, original 8192): the first frequencies are
        // untouched, the last ones divided by 8.
        let scaling = RopeScaling::from_hf(Some(&json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
        })))
        .unwrap();
        let plain = Rope::new(128, 500000.0, &RopeScaling::None);
        let scaled = Rope::new(128, 500000.0, &scaling);
        assert_eq!(scaled.inv_freq[0], plain.inv_freq[0]);
        assert!((scaled.inv_freq[63] - plain.inv_freq[63] / 8.0).abs() < 1e-12);
        // In between, smoothly interpolated: strictly between the two.
        let mid = (0..64)
            .find(|&i| {
                scaled.inv_freq[i] != plain.inv_freq[i]
                    && scaled.inv_freq[i] != plain.inv_freq[i] / 8.0
            })
            .expect("a medium-frequency band exists");
        assert!(
            scaled.inv_freq[mid] < plain.inv_freq[mid]
                && scaled.inv_freq[mid] > plain.inv_freq[mid] / 8.0
        );
    }

    #[test]
    fn per_row_positions_rotate_each_row_at_its_own_positions() {
        use burn::backend::NdArray;
        use burn::tensor::Distribution;
        let rope = Rope::new(8, 10000.0, &RopeScaling::None);
        let x =
            Tensor::<NdArray, 4>::random([2, 3, 4, 8], Distribution::Default, &Default::default());
        // Row 0 at positions 0..4, row 1 left-padded by 2 (positions 0, 0, 0, 1).
        let tables = rope.tables::<NdArray>(
            &[vec![0, 1, 2, 3], vec![0, 0, 0, 1]],
            DType::F32,
            &Default::default(),
        );
        let both = tables.apply(x.clone());
        let row0 = rope.apply(x.clone().narrow(0, 0, 1), 0);
        both.clone()
            .narrow(0, 0, 1)
            .into_data()
            .assert_approx_eq::<f32>(&row0.into_data(), Default::default());
        let last = rope.apply(x.clone().slice([1..2, 0..3, 3..4, 0..8]), 1);
        both.clone()
            .slice([1..2, 0..3, 3..4, 0..8])
            .into_data()
            .assert_approx_eq::<f32>(&last.into_data(), Default::default());
        // Position 0 is the identity.
        both.slice([1..2, 0..3, 0..3, 0..8])
            .into_data()
            .assert_approx_eq::<f32>(
                &x.slice([1..2, 0..3, 0..3, 0..8]).into_data(),
                Default::default(),
            );
    }

    #[test]
    fn unknown_scaling_is_an_error() {
        let err = RopeScaling::from_hf(Some(&json!({"rope_type": "yarn2"}))).unwrap_err();
        assert!(err.contains("yarn2"));
        let err = RopeScaling::from_hf(Some(&json!({"rope_type": "linear"}))).unwrap_err();
        assert!(err.contains("factor"));
    }
}
