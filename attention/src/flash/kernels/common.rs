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
    /// Tensor-core kernel only: emulate the plane-level matrix operations (see `mma.rs`).
    pub emulate: bool,
    /// Tensor-core kernel only: two K/V stages, the next tile copied while the current one is
    /// computed (asynchronous copies on CUDA; plain copies when emulating).
    pub pipelined: bool,
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

/// Where a cube's work lies: its rows and the tiles of keys it visits.
#[derive(CubeType, Clone, Copy)]
pub(crate) struct BlockPlan {
    /// Key/value head.
    pub kv_head: u32,
    /// First row of the block.
    pub row0: u32,
    /// One past the last valid row of the block.
    pub row1: u32,
    /// Queries of the sequence.
    pub q_len: u32,
    /// Keys of the sequence.
    pub k_len: u32,
    /// First key of the first tile.
    pub kv_lo: i32,
    /// First tile (relative to `kv_lo`, in tiles).
    pub tile_begin: u32,
    /// One past the last tile.
    pub tile_end: u32,
    /// Offsets (in vectors) of the sequence in q, k, v and the output.
    pub q_base: u32,
    pub k_base: u32,
    pub v_base: u32,
    pub o_base: u32,
}

/// Computes the cube's plan; `row1 <= row0` means the cube has no rows.
#[cube]
pub(crate) fn plan_block(
    seqs: &Array<u32>,
    layout: &FlashLayout,
    #[comptime] cfg: FlashConfig,
) -> BlockPlan {
    let b_kvh = CUBE_POS_Y;
    let batch = b_kvh / layout.kv_heads;
    let kv_head = b_kvh % layout.kv_heads;
    let meta = (batch as usize) * SEQ_WORDS;
    let q_len = seqs[meta + SEQ_Q_LEN];
    let k_len = seqs[meta + SEQ_K_LEN];
    let rows = q_len * layout.group;
    // Blocks of later rows see more keys under causal masking: start them first.
    let row0 = (CUBE_COUNT_X as i32 - 1 - CUBE_POS_X as i32) as u32 * cfg.block_q as u32;
    let row1 = min(row0 + cfg.block_q as u32, rows);

    let mut kv_lo = 0i32;
    let mut kv_hi = 0i32;
    if row1 > row0 {
        let q_first = (row0 / layout.group) as i32;
        let q_last = ((row1 - 1) / layout.group) as i32;
        let (lo, _h) = key_range(
            q_first,
            q_len as i32,
            k_len as i32,
            layout.window_left,
            layout.window_right,
            cfg.causal,
            cfg.window,
        );
        let (_l, hi) = key_range(
            q_last,
            q_len as i32,
            k_len as i32,
            layout.window_left,
            layout.window_right,
            cfg.causal,
            cfg.window,
        );
        kv_lo = lo;
        kv_hi = hi;
    }
    let mut tiles = 0u32;
    if kv_hi > kv_lo {
        tiles = ((kv_hi - kv_lo) as u32).div_ceil(cfg.block_k as u32);
    }
    let per_split = tiles.div_ceil(layout.splits);
    let tile_begin = min(CUBE_POS_Z * per_split, tiles);
    let tile_end = min(tile_begin + per_split, tiles);

    BlockPlan {
        kv_head,
        row0,
        row1,
        q_len,
        k_len,
        kv_lo,
        tile_begin,
        tile_end,
        q_base: seqs[meta + SEQ_Q_BASE],
        k_base: seqs[meta + SEQ_K_BASE],
        v_base: seqs[meta + SEQ_V_BASE],
        o_base: seqs[meta + SEQ_O_BASE],
    }
}

/// Index of row `row` of the cube's (sequence, key/value head, split) in the split workspace.
#[cube]
pub(crate) fn partial_row(row: u32, layout: &FlashLayout) -> u32 {
    let slabs = CUBE_COUNT_Y;
    (CUBE_POS_Z * slabs + CUBE_POS_Y) * layout.rows_cap + row
}
