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
mod mask;

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
    /// Options that are invalid or do not fit the shapes.
    #[error("invalid attention options: {0}")]
    Options(String),
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
///
/// Positions are bottom-right aligned, as in FlashAttention 2.1+: with `q_len` queries and
/// `k_len` keys, query `i` sits at key position `p = i + k_len - q_len` (the queries are the
/// last `q_len` tokens of the keys). Query `i` of sequence `b` then sees key `j` when
/// * `causal` is off or `j <= p`,
/// * `j >= p - window.left` and `j <= p + window.right` (for the bounds that are set),
/// * `key_padding` keeps key `j` of sequence `b`.
///
/// A query that sees no key at all gives zeros, never NaN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionOptions {
    /// Score scale; `1/sqrt(head_dim)` when `None`.
    pub scale: Option<f64>,
    /// Causal masking, bottom-right aligned when query and key lengths differ
    /// (query `i` of `q_len` sees keys `..= i + k_len - q_len`), as FlashAttention 2.1+.
    pub causal: bool,
    /// Logit soft-capping (Gemma 2): scaled scores become `softcap * tanh(scores / softcap)`
    /// before masking. Must be positive and finite.
    pub softcap: Option<f64>,
    /// Local attention (sliding window), as FlashAttention's `window_size`.
    pub window: Window,
    /// Padding keys per sequence (batched sequences of different lengths).
    pub key_padding: Option<KeyPadding>,
}

impl AttentionOptions {
    /// Causal attention with the default scale.
    pub fn causal() -> Self {
        Self {
            causal: true,
            ..Self::default()
        }
    }

    /// These options with a score scale.
    pub fn with_scale(self, scale: f64) -> Self {
        Self {
            scale: Some(scale),
            ..self
        }
    }

    /// These options with logit soft-capping.
    pub fn with_softcap(self, softcap: f64) -> Self {
        Self {
            softcap: Some(softcap),
            ..self
        }
    }

    /// These options with a window.
    pub fn with_window(self, window: Window) -> Self {
        Self { window, ..self }
    }

    /// These options with padding keys.
    pub fn with_key_padding(self, key_padding: KeyPadding) -> Self {
        Self {
            key_padding: Some(key_padding),
            ..self
        }
    }

    /// Whether no mask applies at all (every query sees every key).
    pub fn is_unmasked(&self) -> bool {
        !self.causal && self.window.is_unbounded() && self.key_padding.is_none()
    }

    /// Checks the options against the shapes: `Err` names what does not fit.
    pub fn validate(&self, batch: usize, k_len: usize) -> Result<(), AttentionError> {
        if let Some(cap) = self.softcap
            && !(cap > 0.0 && cap.is_finite())
        {
            return Err(AttentionError::Options(format!(
                "softcap must be positive and finite, got {cap}"
            )));
        }
        if let Some(scale) = self.scale
            && !scale.is_finite()
        {
            return Err(AttentionError::Options(format!(
                "scale must be finite, got {scale}"
            )));
        }
        match &self.key_padding {
            None => Ok(()),
            Some(p) => p.validate(batch, k_len),
        }
    }
}

/// A local attention window in the manner of FlashAttention's `window_size = (left, right)`:
/// the query at key position `p` sees keys `p - left ..= p + right`. A side that is `None` is
/// unbounded (FlashAttention's `-1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Window {
    /// How many keys before the query's own position are visible.
    pub left: Option<usize>,
    /// How many keys after the query's own position are visible.
    pub right: Option<usize>,
}

impl Window {
    /// No window: every key is visible (up to the other masks).
    pub const UNBOUNDED: Window = Window {
        left: None,
        right: None,
    };

    /// transformers' `sliding_window = size` of causal models (Mistral, Gemma 2/3): the query
    /// sees itself and the `size - 1` keys before it (`window_size = (size - 1, _)`).
    /// `size` 0 is treated as 1 (the query itself only).
    pub fn sliding(size: usize) -> Self {
        Self {
            left: Some(size.saturating_sub(1)),
            right: None,
        }
    }

    /// Whether neither side is bounded.
    pub fn is_unbounded(&self) -> bool {
        self.left.is_none() && self.right.is_none()
    }
}

/// Which keys of each sequence in a batch hold real tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPadding {
    /// Sequence `b` has real keys `0..lengths[b]`, padding after (right padding, as varlen).
    Lengths(Vec<usize>),
    /// An arbitrary `[batch, k_len]` row-major mask, `true` for a real key (transformers'
    /// `attention_mask == 1`): padding anywhere, e.g. left padding for batched generation.
    Mask {
        /// Keys per sequence.
        k_len: usize,
        /// `keep[b * k_len + j]`: whether key `j` of sequence `b` is real.
        keep: Vec<bool>,
    },
}

impl KeyPadding {
    /// Left padding: the first `pads[b]` of `k_len` keys of sequence `b` are padding.
    pub fn left(pads: &[usize], k_len: usize) -> Self {
        let keep = pads
            .iter()
            .flat_map(|&pad| (0..k_len).map(move |j| j >= pad))
            .collect();
        Self::Mask { k_len, keep }
    }

    /// Whether key `j` of sequence `b` is real (`false` out of range).
    pub fn keeps(&self, b: usize, j: usize) -> bool {
        match self {
            Self::Lengths(lengths) => lengths.get(b).is_some_and(|&len| j < len),
            Self::Mask { k_len, keep } => {
                j < *k_len && keep.get(b * k_len + j).copied().unwrap_or(false)
            }
        }
    }

    /// Checks that it describes `batch` sequences of `k_len` keys.
    pub fn validate(&self, batch: usize, k_len: usize) -> Result<(), AttentionError> {
        match self {
            Self::Lengths(lengths) => {
                if lengths.len() != batch {
                    return Err(AttentionError::Options(format!(
                        "key padding has {} lengths for a batch of {batch}",
                        lengths.len()
                    )));
                }
                if let Some(&len) = lengths.iter().find(|&&len| len > k_len) {
                    return Err(AttentionError::Options(format!(
                        "key padding length {len} exceeds the {k_len} keys"
                    )));
                }
                Ok(())
            }
            Self::Mask { k_len: n, keep } => {
                if *n != k_len || keep.len() != batch * k_len {
                    return Err(AttentionError::Options(format!(
                        "key padding mask is [{}, {n}] for a batch of {batch} with {k_len} keys",
                        keep.len().checked_div(*n).unwrap_or(0)
                    )));
                }
                Ok(())
            }
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
        AttentionImpl::Eager => eager_attention(q, k, v, options),
        AttentionImpl::Auto => {
            let k_len = k.dims()[2];
            match auto_flash(q.clone(), k.clone(), v.clone(), options, k_len, None)? {
                Some(out) => Ok(out),
                None => eager_attention(q, k, v, options),
            }
        }
        AttentionImpl::Sdpa => sdpa_attention(q, k, v, options),
        AttentionImpl::Flash => {
            let k_len = k.dims()[2];
            flash_attention(q, k, v, &flash_params(options, k_len)?)
        }
    }
}

/// Attention over a KV cache buffer of which only the first `used` positions hold keys (as
/// FlashAttention's `flash_attn_with_kvcache` with `cache_seqlens`): `k`/`v` are `[batch,
/// kv_heads, capacity, head_dim]` and the queries are the last `q_len` of the `used` keys.
/// Masks (`options`) describe the `used` keys only. The flash kernels read the buffers as they
/// are; the other implementations see the first `used` positions.
pub fn attention_with_kvcache<B: Backend>(
    implementation: AttentionImpl,
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    used: usize,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>, AttentionError> {
    let [batch, _, capacity, _] = k.dims();
    if used > capacity || used < q.dims()[2] {
        return Err(AttentionError::Shape(format!(
            "{used} used cache positions for {} queries and a capacity of {capacity}",
            q.dims()[2]
        )));
    }
    let narrowed = |k: Tensor<B, 4>, v: Tensor<B, 4>| {
        if used == capacity {
            (k, v)
        } else {
            (k.narrow(2, 0, used), v.narrow(2, 0, used))
        }
    };
    match implementation {
        AttentionImpl::Flash | AttentionImpl::Auto => {
            let lens = Some(vec![used; batch]);
            let flash = auto_flash(q.clone(), k.clone(), v.clone(), options, used, lens);
            match flash {
                Ok(Some(out)) => Ok(out),
                Ok(None) if implementation == AttentionImpl::Auto => {
                    let (k, v) = narrowed(k, v);
                    eager_attention(q, k, v, options)
                }
                // Flash asked for: its own error says why it cannot run.
                Ok(None) => {
                    let (k, v) = narrowed(k, v);
                    attention(implementation, q, k, v, options)
                }
                Err(e) => Err(e),
            }
        }
        AttentionImpl::Eager | AttentionImpl::Sdpa => {
            let (k, v) = narrowed(k, v);
            attention(implementation, q, k, v, options)
        }
    }
}

/// The flash kernels where they run this case; `Ok(None)` where they do not (another backend,
/// dtype, head size, a padding mask), so that `Auto` takes the eager path.
fn auto_flash<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttentionOptions,
    k_len: usize,
    key_lens: Option<Vec<usize>>,
) -> Result<Option<Tensor<B, 4>>, AttentionError> {
    options.validate(q.dims()[0], k_len)?;
    let params = match flash_params(options, k_len) {
        Ok(p) => FlashParams { key_lens, ..p },
        Err(AttentionError::Unsupported { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match flash_attention(q, k, v, &params) {
        Ok(out) => Ok(Some(out)),
        Err(AttentionError::Unsupported { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The flash kernels' parameters for `options`. Key padding reaches them only as "no padding":
/// the kernels take per-sequence key counts with causal/window masks aligned to each count,
/// which is not the eager path's meaning of a padding mask, so real padding is refused.
fn flash_params(options: &AttentionOptions, k_len: usize) -> Result<FlashParams, AttentionError> {
    let padded = match &options.key_padding {
        None => false,
        Some(KeyPadding::Lengths(lengths)) => lengths.iter().any(|&n| n != k_len),
        Some(KeyPadding::Mask { keep, .. }) => keep.iter().any(|&real| !real),
    };
    if padded {
        return Err(AttentionError::Unsupported {
            implementation: AttentionImpl::Flash,
            reason: "key padding masks (use eager or sdpa for padded batches)".into(),
        });
    }
    let side = |w: Option<usize>| w.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    Ok(FlashParams {
        scale: options.scale,
        causal: options.causal,
        window_left: side(options.window.left),
        window_right: side(options.window.right),
        softcap: options.softcap.unwrap_or(0.0),
        ..FlashParams::default()
    })
}

/// Burn's fused `module::attention` where it supports the case, else the eager implementation.
///
/// Burn's op takes as many K/V heads as query heads (GQA goes to eager) and aligns its own
/// causal flag top-left on some backends, so only equal query and key lengths use that flag;
/// other masks (bottom-right causal, window, padding) are passed as one boolean mask. Rows
/// with no visible key are set to zeros afterwards, whatever the backend made of them.
pub fn sdpa_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>, AttentionError> {
    let [batch, q_heads, q_len, head_dim] = q.dims();
    let [_, kv_heads, k_len, _] = k.dims();
    let fused_fits = batch == k.dims()[0]
        && head_dim == k.dims()[3]
        && k.dims() == v.dims()
        && q_heads == kv_heads;
    if !fused_fits {
        return eager_attention(q, k, v, options);
    }
    options.validate(batch, k_len)?;
    let plain_causal = options.causal
        && q_len == k_len
        && options.window.is_unbounded()
        && options.key_padding.is_none();
    let fused = |is_causal| burn::tensor::ops::AttentionModuleOptions {
        scale: options.scale,
        softcap: options.softcap,
        is_causal,
    };
    if options.is_unmasked() || plain_causal {
        return Ok(burn::tensor::module::attention(
            q,
            k,
            v,
            None,
            None,
            fused(options.causal),
        ));
    }
    let device = q.device();
    let Some(masked) = mask::build::<B>(options, batch, q_len, k_len, &device) else {
        return Ok(burn::tensor::module::attention(
            q,
            k,
            v,
            None,
            None,
            fused(false),
        ));
    };
    let dead = masked.clone().all_dim(3);
    let masked = masked.expand([batch, q_heads, q_len, k_len]);
    let out = burn::tensor::module::attention(q, k, v, Some(masked), None, fused(false));
    Ok(out.mask_fill(dead.expand([batch, q_heads, q_len, head_dim]), 0.0))
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
