//! Pieces shared by the flash kernels: the compile-time configuration, the per-sequence
//! metadata layout and the mask.

use cubecl::prelude::*;

/// Scores of masked keys. Finite (WGSL has no infinity literal) and far below any real score;
/// probabilities of masked keys are set to zero explicitly, never computed from this value.
pub(crate) const NEG: f32 = -1.0e30;
/// A running maximum above this has seen at least one unmasked key.
pub(crate) const NEG_HALF: f32 = -5.0e29;

/// Words of per-sequence metadata in the `seqs` array, per sequence.
pub(crate) const SEQ_WORDS: usize = 6;
/// Offset of the sequence's first query (token 0, head 0), in vectors.
pub(crate) const SEQ_Q_BASE: usize = 0;
/// Number of queries of the sequence.
pub(crate) const SEQ_Q_LEN: usize = 1;
/// Offset of the sequence's first key, in vectors.
pub(crate) const SEQ_K_BASE: usize = 2;
/// Offset of the sequence's first value, in vectors.
pub(crate) const SEQ_V_BASE: usize = 3;
/// Number of keys of the sequence (the keys that exist; padding is beyond).
pub(crate) const SEQ_K_LEN: usize = 4;
/// Offset of the sequence's first output row, in vectors.
pub(crate) const SEQ_O_BASE: usize = 5;

/// Compile-time choices of a flash kernel. Each distinct value compiles its own kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlashConfig {
    /// Head dimension.
    pub head_dim: usize,
    /// Elements per vector in global memory.
    pub vec: usize,
    /// Rows (query positions x heads of a group) per cube.
    pub block_q: usize,
    /// Keys per tile.
    pub block_k: usize,
    /// Causal masking.
    pub causal: bool,
    /// A left or right window bound is set.
    pub window: bool,
    /// Tanh soft-capping of the scores.
    pub softcap: bool,
    /// Write per-split partial results (normalized output and log-sum-exp) instead of the output.
    pub split: bool,
}

/// Runtime layout of the launch: strides in vectors, grouping and split counts.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
pub(crate) struct FlashLayout {
    /// Stride between query positions.
    pub q_stride_t: u32,
    /// Stride between query heads.
    pub q_stride_h: u32,
    /// Stride between key positions.
    pub k_stride_t: u32,
    /// Stride between key heads.
    pub k_stride_h: u32,
    /// Stride between value positions.
    pub v_stride_t: u32,
    /// Stride between value heads.
    pub v_stride_h: u32,
    /// Stride between output positions.
    pub o_stride_t: u32,
    /// Stride between output heads.
    pub o_stride_h: u32,
    /// Query heads per key/value head.
    pub group: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Rows reserved per (sequence, key/value head) in the split workspace.
    pub rows_cap: u32,
    /// Number of KV splits (grid z).
    pub splits: u32,
    /// Left window bound (`-1`: unbounded).
    pub window_left: i32,
    /// Right window bound (`-1`: unbounded).
    pub window_right: i32,
    /// Score scale.
    pub scale: f32,
    /// Soft-cap value (used when the config enables it).
    pub softcap: f32,
    /// Vectors per head (`head_dim / vec`), as a runtime loop bound for the portable kernel.
    pub head_vecs: u32,
    /// Keys per tile, as a runtime loop bound for the portable kernel.
    pub tile_keys: u32,
}

/// The keys query `qpos` may see: `[lo, hi)` (empty when `lo >= hi`).
#[cube]
pub(crate) fn key_range(
    qpos: i32,
    q_len: i32,
    k_len: i32,
    window_left: i32,
    window_right: i32,
    #[comptime] causal: bool,
    #[comptime] window: bool,
) -> (i32, i32) {
    let shift = k_len - q_len;
    let mut lo = 0i32;
    let mut hi = k_len;
    if causal {
        hi = min(hi, qpos + shift + 1);
    }
    if window {
        if window_left >= 0 {
            lo = max(lo, qpos + shift - window_left);
        }
        if window_right >= 0 {
            hi = min(hi, qpos + shift + window_right + 1);
        }
    }
    (lo, hi)
}

/// Applies scale and soft-cap to a raw dot product.
#[cube]
pub(crate) fn transform_score(dot: f32, scale: f32, softcap: f32, #[comptime] capped: bool) -> f32 {
    if capped {
        softcap * (dot * scale / softcap).tanh()
    } else {
        dot * scale
    }
}
