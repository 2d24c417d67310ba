//! Blockwise 4-bit dequantization kernel.

use cubecl::prelude::*;

/// The f32 absmax of the block holding flat element `first` (plain, or double-quantized).
#[cube]
pub(crate) fn block_scale(
    block: usize,
    absmax: &Array<f32>,
    nested_codes: &Array<u32>,
    nested_absmax: &Array<f32>,
    nested_table: &SharedMemory<f32>,
    offset: f32,
    #[comptime] nested: bool,
) -> f32 {
    if comptime!(nested) {
        let word = nested_codes[block / 4];
        let q = (word >> (((block % 4) * 8) as u32)) & 0xFF;
        nested_table[q as usize] * nested_absmax[block / 256] + offset
    } else {
        absmax[block]
    }
}

/// Copies the 16-entry 4-bit code and (nested) the 256-entry 8-bit code into shared memory.
#[cube]
pub(crate) fn load_tables(
    code: &Array<f32>,
    nested_code: &Array<f32>,
    table: &mut SharedMemory<f32>,
    nested_table: &mut SharedMemory<f32>,
    #[comptime] nested: bool,
) {
    let t = UNIT_POS as usize;
    let threads = CUBE_DIM as usize;
    let mut i = t;
    while i < 16 {
        table[i] = code[i];
        i += threads;
    }
    if comptime!(nested) {
        let mut j = t;
        while j < 256 {
            nested_table[j] = nested_code[j];
            j += threads;
        }
    }
    sync_cube();
}

/// Packed u32 words (8 codes each) a unit loads before decoding any.
pub(crate) const WORDS_PER_UNIT: usize = 4;

/// `out[i] = F(code[q_i] * absmax[i / blocksize])`, one packed u32 word (8 codes) per unit and
/// step. A cube of `T` units covers `WORDS_PER_UNIT * T` consecutive words: in each step the
/// units of a plane load 32 consecutive words (128 bytes) and store the 32 * 8 values they
/// decode as one contiguous run, so that loads and stores are both coalesced. All loads of a
/// unit are issued before any value is decoded.
///
/// `packed` holds the bitsandbytes bytes as little-endian u32 words (element `2j` in the high
/// nibble of byte `j`), padded to whole 16-byte vectors. `out` is written as vectors of `NO`
/// elements (`NO` divides 8); `numel` must be a multiple of `NO`.
#[cube(launch_unchecked)]
pub(crate) fn dequant4_kernel<F: Float, NO: Size>(
    packed: &Array<u32>,
    absmax: &Array<f32>,
    nested_codes: &Array<u32>,
    nested_absmax: &Array<f32>,
    nested_code: &Array<f32>,
    code: &Array<f32>,
    out: &mut Array<Vector<F, NO>>,
    numel: u32,
    offset: f32,
    block_shift: u32,
    #[comptime] nested: bool,
) {
    let mut table = SharedMemory::<f32>::new(16usize);
    let mut nested_table = SharedMemory::<f32>::new(if nested { 256usize } else { 1usize });
    load_tables(code, nested_code, &mut table, &mut nested_table, nested);

    let n = numel as usize;
    let words = n.div_ceil(8);
    let threads = CUBE_DIM as usize;
    let first_word = CUBE_POS * comptime!(WORDS_PER_UNIT) * threads + (UNIT_POS as usize);
    let vs = out.vector_size();

    let mut w = Array::<u32>::new(WORDS_PER_UNIT);
    let mut scale = Array::<f32>::new(WORDS_PER_UNIT);
    #[unroll]
    for u in 0..WORDS_PER_UNIT {
        let idx = first_word + u * threads;
        let safe = select(idx < words, idx, 0);
        w[u] = packed[safe];
        scale[u] = block_scale(
            (safe * 8) >> block_shift as usize,
            absmax,
            nested_codes,
            nested_absmax,
            &nested_table,
            offset,
            nested,
        );
    }
    #[unroll]
    for u in 0..WORDS_PER_UNIT {
        let idx = first_word + u * threads;
        let word = w[u];
        let s = scale[u];
        let base = idx * 8;
        #[unroll]
        for v in 0..comptime!(8 / vs) {
            if base + (v + 1) * vs <= n {
                let mut o = Vector::<F, NO>::empty();
                #[unroll]
                for e in 0..vs {
                    let idx = v * vs + e;
                    let shift = ((idx / 2) * 8 + 4 * (1 - idx % 2)) as u32;
                    o[e] = F::cast_from(table[((word >> shift) & 0xF) as usize] * s);
                }
                out[base / vs + v] = o;
            }
        }
    }
}

/// `out[b]` = the f32 absmax of block `b` as [`block_scale`] computes it for the GEMV and
/// dequantization kernels (nested ones `code[q] * nested + offset`, the same expression, so the
/// same rounding), for `blocks` blocks.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn absmax_kernel(
    absmax: &Array<f32>,
    nested_codes: &Array<u32>,
    nested_absmax: &Array<f32>,
    nested_code: &Array<f32>,
    code: &Array<f32>,
    out: &mut Array<f32>,
    blocks: u32,
    offset: f32,
    #[comptime] nested: bool,
) {
    let mut table = SharedMemory::<f32>::new(16usize);
    let mut nested_table = SharedMemory::<f32>::new(if nested { 256usize } else { 1usize });
    load_tables(code, nested_code, &mut table, &mut nested_table, nested);
    let b = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if b < blocks as usize {
        out[b] = block_scale(
            b,
            absmax,
            nested_codes,
            nested_absmax,
            &nested_table,
            offset,
            nested,
        );
    }
}
