//! Blockwise 4-bit dequantization kernel.

use cubecl::prelude::*;

/// Codes per thread: one 16-byte load of packed codes.
pub(crate) const CODES_PER_THREAD: usize = 32;

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

/// One thread per 32 codes (16 packed bytes): `out[i] = F(code[q_i] * absmax[i / blocksize])`.
///
/// `packed` holds the bitsandbytes bytes as little-endian u32 words (element `2j` in the high
/// nibble of byte `j`), padded to whole 16-byte vectors. `out` is written as vectors of `NO`
/// elements; `numel` must be a multiple of `NO`.
#[cube(launch_unchecked)]
pub(crate) fn dequant4_kernel<F: Float, NO: Size>(
    packed: &Array<Vector<u32, Const<4>>>,
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

    let chunk = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    let first = chunk * CODES_PER_THREAD;
    let n = numel as usize;
    if first < n {
        let words = packed[chunk];
        let scale = block_scale(
            first >> block_shift as usize,
            absmax,
            nested_codes,
            nested_absmax,
            &nested_table,
            offset,
            nested,
        );
        let vs = out.vector_size();
        let base = first / vs;
        #[unroll]
        for v in 0..comptime!(CODES_PER_THREAD / vs) {
            if first + (v + 1) * vs <= n {
                let mut o = Vector::<F, NO>::empty();
                #[unroll]
                for e in 0..vs {
                    let idx = v * vs + e;
                    let word = words[idx / 8];
                    let shift = (((idx % 8) / 2) * 8 + 4 * (1 - idx % 2)) as u32;
                    let q = (word >> shift) & 0xF;
                    o[e] = F::cast_from(table[q as usize] * scale);
                }
                out[base + v] = o;
            }
        }
    }
}
