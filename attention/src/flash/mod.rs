//! kiln's flash attention kernels, written in CubeCL.
//!
//! Two kernel families compute `softmax(q k^T * scale) v` tile by tile with an online softmax
//! (running maximum and sum, FlashAttention-2 style), keeping K/V tiles in shared memory and
//! accumulating in f32:
//!
//! - the tensor-core kernel (CUDA, f16/bf16, compute capability 8.0+): each plane (warp)
//!   owns 16 rows, computes `q k^T` and `p v` with `mma.m16n8k16` on registers and keeps the
//!   softmax state in registers;
//! - the portable kernel (every CubeCL device, every float type): one unit per row.
//!
//! Rows are (query position, query head) pairs of one key/value head, so with grouped-query
//! attention the query heads sharing a key/value head read each K/V tile once. Tiles of keys
//! that every row of a block masks (causal, sliding window, key padding) are never visited.
//! When there are too few blocks to fill the device (decoding: few queries, long caches) the
//! key range is split across cubes (flash-decoding) and a second kernel merges the splits by
//! log-sum-exp.
//!
//! Masks follow FlashAttention 2.1+: with `q_len` queries and `k_len` keys, query `i` is
//! aligned to key `i + k_len - q_len`; causal masking hides keys after it, a window
//! `(left, right)` hides keys more than `left` before or `right` after it. Rows with no visible
//! key produce zeros.

#[cfg(all(test, feature = "cuda"))]
mod cuda_source;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod kernels;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod launch;

use std::any::Any;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::{AttentionError, AttentionImpl};

/// Which kernel family computes [`flash_attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashKernel {
    /// The tensor-core kernel where the device and dtype support it, else the portable one.
    #[default]
    Auto,
    /// The portable kernel (any device, any float type).
    Portable,
    /// The tensor-core kernel; an error where the device or dtype does not support it.
    TensorCore,
    /// The tensor-core kernel with two K/V stages in shared memory, the next tile copied
    /// asynchronously (`cp.async`) while the current one is computed; an error where the device
    /// or dtype does not support the tensor-core kernel or the tensors are not 16-byte aligned.
    TensorCorePipelined,
    /// The tensor-core kernel's code with its plane-level matrix operations emulated through
    /// shared memory. Slow; runs on any device. It exists to test the tensor-core kernel's
    /// logic on machines without tensor cores.
    TensorCoreEmulated,
    /// [`FlashKernel::TensorCorePipelined`]'s code, emulated as [`FlashKernel::TensorCoreEmulated`]
    /// (its copies are plain, its stage alternation the same).
    TensorCorePipelinedEmulated,
}

/// What [`flash_attention`] computes besides `softmax(q k^T * scale) v`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlashParams {
    /// Score scale; `1/sqrt(head_dim)` when `None`.
    pub scale: Option<f64>,
    /// Causal masking, bottom-right aligned.
    pub causal: bool,
    /// Keys more than this many positions before the query's aligned key are hidden
    /// (`-1`: unbounded).
    pub window_left: i64,
    /// Keys more than this many positions after the query's aligned key are hidden
    /// (`-1`: unbounded).
    pub window_right: i64,
    /// Tanh soft-capping of the scaled scores, `softcap * tanh(s / softcap)` (`0`: off).
    pub softcap: f64,
    /// Number of real keys of each sequence; the keys after them are padding and hidden.
    /// Causal and window masks align to each sequence's own key count.
    pub key_lens: Option<Vec<usize>>,
    /// Number of key splits (flash-decoding); chosen from the device's size when `None`.
    pub num_splits: Option<usize>,
    /// Which kernel family runs.
    pub kernel: FlashKernel,
}

impl Default for FlashParams {
    fn default() -> Self {
        Self {
            scale: None,
            causal: false,
            window_left: -1,
            window_right: -1,
            softcap: 0.0,
            key_lens: None,
            num_splits: None,
            kernel: FlashKernel::Auto,
        }
    }
}

impl FlashParams {
    /// Causal attention with the default scale.
    pub fn causal() -> Self {
        Self {
            causal: true,
            ..Self::default()
        }
    }
}

/// Flash attention on burn tensors of a CubeCL backend (burn's `Cuda` or `Wgpu` without
/// fusion, with this crate's `cuda` or `wgpu` feature).
///
/// Shapes: `q` `[batch, q_heads, q_len, head_dim]`, `k`/`v` `[batch, kv_heads, k_len, head_dim]`
/// with `q_heads` a multiple of `kv_heads` (K/V heads are never repeated in memory). Returns
/// `[batch, q_heads, q_len, head_dim]` in `q`'s dtype (f32, f16 or bf16).
///
/// Other backends give [`AttentionError::Unsupported`].
pub fn flash_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    params: &FlashParams,
) -> Result<Tensor<B, 4>, AttentionError> {
    let [batch, q_heads, q_len, head_dim] = q.dims();
    let [kb, kv_heads, k_len, kd] = k.dims();
    if k.dims() != v.dims() || kb != batch || kd != head_dim {
        return Err(AttentionError::Shape(format!(
            "q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    check_heads(q_heads, kv_heads)?;
    let key_lens = match &params.key_lens {
        Some(lens) => {
            if lens.len() != batch {
                return Err(AttentionError::Shape(format!(
                    "{} key lengths for a batch of {batch}",
                    lens.len()
                )));
            }
            if let Some(bad) = lens.iter().find(|&&n| n > k_len) {
                return Err(AttentionError::Shape(format!(
                    "key length {bad} is more than the {k_len} keys given"
                )));
            }
            lens.clone()
        }
        None => vec![k_len; batch],
    };
    let shape = Shape {
        batch,
        q_heads,
        kv_heads,
        head_dim,
        layout: SeqLayout::Padded { q_len, key_lens },
    };
    let out = dispatch::<B>(
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
        &shape,
        params,
    )?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// Flash attention on packed sequences of different lengths (as `flash_attn_varlen_func`).
///
/// Shapes: `q` `[total_q, q_heads, head_dim]`, `k`/`v` `[total_k, kv_heads, head_dim]`;
/// sequence `i` owns queries `cu_seqlens_q[i]..cu_seqlens_q[i + 1]` and keys
/// `cu_seqlens_k[i]..cu_seqlens_k[i + 1]` (both start at 0 and never decrease). Returns
/// `[total_q, q_heads, head_dim]`. `params.key_lens`, when given, shortens each sequence's keys
/// further (as `seqused_k`).
pub fn flash_attention_varlen<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    params: &FlashParams,
) -> Result<Tensor<B, 3>, AttentionError> {
    let [total_q, q_heads, head_dim] = q.dims();
    let [total_k, kv_heads, kd] = k.dims();
    if k.dims() != v.dims() || kd != head_dim {
        return Err(AttentionError::Shape(format!(
            "q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    check_heads(q_heads, kv_heads)?;
    check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, total_q)?;
    check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, total_k)?;
    let batch = cu_seqlens_q.len() - 1;
    if cu_seqlens_k.len() != batch + 1 {
        return Err(AttentionError::Shape(format!(
            "cu_seqlens_q describes {batch} sequences, cu_seqlens_k {}",
            cu_seqlens_k.len() - 1
        )));
    }
    let mut key_lens: Vec<usize> = cu_seqlens_k.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(used) = &params.key_lens {
        if used.len() != batch {
            return Err(AttentionError::Shape(format!(
                "{} key lengths for {batch} sequences",
                used.len()
            )));
        }
        for (i, (&n, have)) in used.iter().zip(key_lens.iter_mut()).enumerate() {
            if n > *have {
                return Err(AttentionError::Shape(format!(
                    "key length {n} of sequence {i} is more than its {have} keys"
                )));
            }
            *have = n;
        }
    }
    let shape = Shape {
        batch,
        q_heads,
        kv_heads,
        head_dim,
        layout: SeqLayout::Packed {
            cu_q: cu_seqlens_q.to_vec(),
            cu_k: cu_seqlens_k.to_vec(),
            key_lens,
        },
    };
    let out = dispatch::<B>(
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
        &shape,
        params,
    )?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

fn check_heads(q_heads: usize, kv_heads: usize) -> Result<(), AttentionError> {
    if kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        return Err(AttentionError::Shape(format!(
            "{q_heads} query heads is not a multiple of {kv_heads} key/value heads"
        )));
    }
    Ok(())
}

fn check_cu_seqlens(name: &str, cu: &[usize], total: usize) -> Result<(), AttentionError> {
    if cu.len() < 2 || cu[0] != 0 || cu.windows(2).any(|w| w[1] < w[0]) {
        return Err(AttentionError::Shape(format!(
            "{name} must start at 0, never decrease and describe at least one sequence: {cu:?}"
        )));
    }
    if cu[cu.len() - 1] != total {
        return Err(AttentionError::Shape(format!(
            "{name} ends at {} but the tensor has {total} tokens",
            cu[cu.len() - 1]
        )));
    }
    Ok(())
}

/// The problem the kernels solve, independent of the backend.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
pub(crate) struct Shape {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub layout: SeqLayout,
}

/// How sequences lie in the tensors.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
pub(crate) enum SeqLayout {
    /// `[batch, heads, len, head_dim]`, every sequence `q_len` queries; of its key slots the
    /// first `key_lens[i]` are real.
    Padded { q_len: usize, key_lens: Vec<usize> },
    /// `[tokens, heads, head_dim]` with cumulative sequence lengths.
    Packed {
        cu_q: Vec<usize>,
        cu_k: Vec<usize>,
        key_lens: Vec<usize>,
    },
}

pub(crate) fn unsupported(reason: impl Into<String>) -> AttentionError {
    AttentionError::Unsupported {
        implementation: AttentionImpl::Flash,
        reason: reason.into(),
    }
}

/// Finds the CubeCL runtime behind `B`'s tensors and runs the kernels there.
fn dispatch<B: Backend>(
    q: B::FloatTensorPrimitive,
    k: B::FloatTensorPrimitive,
    v: B::FloatTensorPrimitive,
    shape: &Shape,
    params: &FlashParams,
) -> Result<B::FloatTensorPrimitive, AttentionError> {
    let (q, k, v): (Box<dyn Any>, Box<dyn Any>, Box<dyn Any>) =
        (Box::new(q), Box::new(k), Box::new(v));
    #[cfg(feature = "cuda")]
    let (q, k, v) = match try_runtime::<B, cubecl::cuda::CudaRuntime>(q, k, v, shape, params) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    #[cfg(feature = "wgpu")]
    let (q, k, v) = match try_runtime::<B, cubecl::wgpu::WgpuRuntime>(q, k, v, shape, params) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    let _ = (q, k, v, shape, params);
    Err(unsupported(format!(
        "the flash kernels run on burn's CubeCL backends without fusion (Cuda, Wgpu) with \
         kiln-attention's `cuda` or `wgpu` feature; this backend is {}",
        B::name(&Default::default())
    )))
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
type Inputs = (Box<dyn Any>, Box<dyn Any>, Box<dyn Any>);

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn try_runtime<B: Backend, R: burn_cubecl::CubeRuntime>(
    q: Box<dyn Any>,
    k: Box<dyn Any>,
    v: Box<dyn Any>,
    shape: &Shape,
    params: &FlashParams,
) -> Result<Result<B::FloatTensorPrimitive, AttentionError>, Inputs> {
    use burn_cubecl::tensor::CubeTensor;
    if !q.is::<CubeTensor<R>>() {
        return Err((q, k, v));
    }
    let (Ok(q), Ok(k), Ok(v)) = (
        q.downcast::<CubeTensor<R>>(),
        k.downcast::<CubeTensor<R>>(),
        v.downcast::<CubeTensor<R>>(),
    ) else {
        return Ok(Err(unsupported("q, k and v live on different backends")));
    };
    Ok(launch::run::<R>(*q, *k, *v, shape, params).and_then(|out| {
        let out: Box<dyn Any> = Box::new(out);
        out.downcast::<B::FloatTensorPrimitive>()
            .map(|b| *b)
            .map_err(|_| unsupported("the output tensor type does not match the backend"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    fn rand(shape: [usize; 4]) -> Tensor<NdArray, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn other_backends_are_unsupported() {
        let err = flash_attention(
            rand([1, 2, 3, 8]),
            rand([1, 1, 3, 8]),
            rand([1, 1, 3, 8]),
            &FlashParams::causal(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                AttentionError::Unsupported {
                    implementation: AttentionImpl::Flash,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_shapes_and_lengths_are_errors() {
        let bad_heads = flash_attention(
            rand([1, 3, 3, 8]),
            rand([1, 2, 3, 8]),
            rand([1, 2, 3, 8]),
            &FlashParams::default(),
        );
        assert!(matches!(bad_heads, Err(AttentionError::Shape(_))));
        let long_key = FlashParams {
            key_lens: Some(vec![4]),
            ..FlashParams::default()
        };
        let bad_lens = flash_attention(
            rand([1, 2, 3, 8]),
            rand([1, 2, 3, 8]),
            rand([1, 2, 3, 8]),
            &long_key,
        );
        assert!(matches!(bad_lens, Err(AttentionError::Shape(_))));
        let q = Tensor::<NdArray, 3>::zeros([5, 2, 8], &Default::default());
        let k = Tensor::<NdArray, 3>::zeros([4, 2, 8], &Default::default());
        let bad_cu = flash_attention_varlen(
            q,
            k.clone(),
            k,
            &[0, 2, 5],
            &[0, 3, 5],
            &FlashParams::default(),
        );
        assert!(matches!(bad_cu, Err(AttentionError::Shape(_))));
    }
}
