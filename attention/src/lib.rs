//! One attention API for burn, with the implementation chosen the way transformers'
//! `attn_implementation` chooses it.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use kiln_attention::{AttentionImpl, AttentionOptions, attention};
//!
//! let device = Default::default();
//! // [batch, heads, seq, head_dim]; 4 query heads share 2 K/V heads (GQA).
//! let q = Tensor::<NdArray, 4>::random([1, 4, 5, 8], Distribution::Normal(0.0, 1.0), &device);
//! let k = Tensor::<NdArray, 4>::random([1, 2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
//! let v = Tensor::<NdArray, 4>::random([1, 2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
//! let implementation: AttentionImpl = "eager".parse().unwrap();
//! let out = attention(implementation, q, k, v, &AttentionOptions::causal()).unwrap();
//! assert_eq!(out.dims(), [1, 4, 5, 8]);
//! ```

mod eager;
mod flash;

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use eager::eager_attention;
pub use flash::{FlashKernel, FlashParams, flash_attention, flash_attention_varlen};

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttentionError {
    /// An `attn_implementation` name that is not known.
    #[error(
        "unknown attention implementation `{0}` (expected eager, sdpa, flash, flash_attention_2 or auto)"
    )]
    UnknownImplementation(String),
    /// Tensor shapes that do not fit together.
    #[error("attention shapes do not fit: {0}")]
    Shape(String),
    /// The implementation is not available for this case on this backend.
    #[error("the `{implementation}` implementation cannot run this case: {reason}")]
    Unsupported {
        /// The implementation asked for.
        implementation: AttentionImpl,
        /// Why it cannot run.
        reason: String,
    },
}

/// Which implementation computes attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionImpl {
    /// Plain tensor ops: the readable reference.
    Eager,
    /// Burn's fused attention op where it supports the case, else eager.
    Sdpa,
    /// kiln's own flash kernels.
    Flash,
    /// The fastest implementation that supports the case.
    #[default]
    Auto,
}

impl FromStr for AttentionImpl {
    type Err = AttentionError;

    /// Accepts kiln's names and transformers' `attn_implementation` values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "eager" => Ok(Self::Eager),
            "sdpa" => Ok(Self::Sdpa),
            "flash" | "flash_attention_2" | "flash_attention_3" => Ok(Self::Flash),
            "auto" => Ok(Self::Auto),
            other => Err(AttentionError::UnknownImplementation(other.to_owned())),
        }
    }
}

impl fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eager => "eager",
            Self::Sdpa => "sdpa",
            Self::Flash => "flash",
            Self::Auto => "auto",
        })
    }
}

/// What to compute besides `softmax(q k^T * scale) v`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionOptions {
    /// Score scale; `1/sqrt(head_dim)` when `None`.
    pub scale: Option<f64>,
    /// Causal masking, bottom-right aligned when query and key lengths differ
    /// (query `i` of `q_len` sees keys `..= i + k_len - q_len`), as FlashAttention 2.1+.
    pub causal: bool,
}

impl AttentionOptions {
    /// Causal attention with the default scale.
    pub fn causal() -> Self {
        Self {
            causal: true,
            ..Self::default()
        }
    }
}

/// Computes attention with the chosen implementation.
///
/// Shapes: `q` `[batch, q_heads, q_len, head_dim]`, `k`/`v` `[batch, kv_heads, k_len, head_dim]`
/// with `q_heads` a multiple of `kv_heads`. Returns `[batch, q_heads, q_len, head_dim]`.
pub fn attention<B: Backend>(
    implementation: AttentionImpl,
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>, AttentionError> {
    match implementation {
        AttentionImpl::Eager | AttentionImpl::Auto => eager_attention(q, k, v, options),
        AttentionImpl::Sdpa => sdpa_attention(q, k, v, options),
        AttentionImpl::Flash => Err(AttentionError::Unsupported {
            implementation: AttentionImpl::Flash,
            reason: "the flash kernels are not part of this release; use eager or sdpa".into(),
        }),
    }
}

/// Burn's fused `module::attention` where it supports the case (as many K/V heads as query
/// heads, and for causal masking equal query and key lengths, since burn aligns the causal
/// mask top-left), else the eager implementation.
pub fn sdpa_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>, AttentionError> {
    let [_, q_heads, q_len, _] = q.dims();
    let [_, kv_heads, k_len, _] = k.dims();
    let fused_fits = q.dims()[0] == k.dims()[0]
        && q.dims()[3] == k.dims()[3]
        && k.dims() == v.dims()
        && q_heads == kv_heads
        && (!options.causal || q_len == k_len);
    if !fused_fits {
        return eager_attention(q, k, v, options);
    }
    let fused = burn::tensor::ops::AttentionModuleOptions {
        scale: options.scale,
        softcap: None,
        is_causal: options.causal,
    };
    Ok(burn::tensor::module::attention(q, k, v, None, None, fused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transformers_names() {
        assert_eq!("flash_attention_2".parse(), Ok(AttentionImpl::Flash));
        assert_eq!("sdpa".parse(), Ok(AttentionImpl::Sdpa));
        assert_eq!("eager".parse(), Ok(AttentionImpl::Eager));
        assert_eq!(
            "flex_attention".parse::<AttentionImpl>(),
            Err(AttentionError::UnknownImplementation(
                "flex_attention".into()
            ))
        );
        for i in [
            AttentionImpl::Eager,
            AttentionImpl::Sdpa,
            AttentionImpl::Flash,
            AttentionImpl::Auto,
        ] {
            assert_eq!(i.to_string().parse(), Ok(i));
        }
    }
}

#[cfg(test)]
mod sdpa_tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    fn rand(shape: [usize; 4]) -> Tensor<NdArray, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn sdpa_equals_eager_fused_and_fallback_cases() {
        // fused: equal heads, equal lengths; fallback: GQA, and causal with q_len < k_len.
        for (qs, ks, causal) in [
            ([2, 4, 7, 16], [2, 4, 7, 16], true),
            ([2, 4, 7, 16], [2, 4, 7, 16], false),
            ([1, 4, 5, 8], [1, 2, 5, 8], true),
            ([1, 2, 2, 8], [1, 2, 6, 8], true),
        ] {
            let (q, k, v) = (rand(qs), rand(ks), rand(ks));
            let opts = AttentionOptions {
                scale: Some(0.3),
                causal,
            };
            let a = attention(AttentionImpl::Sdpa, q.clone(), k.clone(), v.clone(), &opts).unwrap();
            let b = attention(AttentionImpl::Eager, q, k, v, &opts).unwrap();
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::default());
        }
    }
}
