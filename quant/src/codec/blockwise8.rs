//! Blockwise 8-bit quantization with a 256-entry code (bnb's `quantize_blockwise` on CPU).
//!
//! This is the codec behind double quantization: bnb's CPU kernel scales each block by the
//! reciprocal of its absmax and maps the result to a code through a 65536-entry lookup table
//! over [-1, 1] (not an exact nearest-code search). kiln builds the same table the same way, so
//! the codes match bit for bit.

use rayon::prelude::*;

use crate::error::{QuantError, Result};

const LUT_SIZE: usize = 65536;

/// The lookup table bnb's CPU kernel quantizes through: [-1, 1] cut into 65536 bins, each
/// holding the index of the first code whose midpoint with its successor is not below the bin.
struct CodeLut {
    table: Box<[u8; LUT_SIZE]>,
}

impl CodeLut {
    fn new(code: &[f32; 256]) -> Self {
        let mut mids = [0.0f32; 255];
        for (i, m) in mids.iter_mut().enumerate() {
            *m = 0.5 * (code[i] + code[i + 1]);
        }
        let mut table = Box::new([0u8; LUT_SIZE]);
        let mut idx = 0usize;
        for (i, slot) in table.iter_mut().enumerate() {
            let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
            while idx < 255 && mids[idx] < val {
                idx += 1;
            }
            *slot = idx as u8;
        }
        CodeLut { table }
    }

    #[inline(always)]
    fn lookup(&self, v: f32) -> u8 {
        let v = v.clamp(-1.0, 1.0);
        // `as` truncates toward zero and maps NaN to 0, as the C++ cast does on x86.
        let i = ((v + 1.0) * 0.5 * (LUT_SIZE - 1) as f32 + 0.5) as u16;
        self.table[i as usize]
    }
}

/// Quantizes `data` in blocks of `blocksize` with a sorted 256-entry `code`; returns the codes
/// and one f32 absmax per block. An all-zero block gets absmax 0 and codes 0, as in bnb.
///
/// ```
/// use kiln_quant::codec::{dynamic_map, quantize_blockwise_8bit, dequantize_blockwise_8bit};
/// let x = [0.5f32, -0.25, 0.125, 1.0];
/// let (codes, absmax) = quantize_blockwise_8bit(&x, dynamic_map(), 256)?;
/// let back = dequantize_blockwise_8bit(&codes, &absmax, dynamic_map(), 256)?;
/// assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() < 0.01));
/// # Ok::<(), kiln_quant::QuantError>(())
/// ```
pub fn quantize_blockwise_8bit(
    data: &[f32],
    code: &[f32; 256],
    blocksize: usize,
) -> Result<(Vec<u8>, Vec<f32>)> {
    if blocksize == 0 {
        return Err(QuantError::InvalidBlocksize8 { blocksize });
    }
    crate::element::check_finite("quantize_blockwise_8bit", data)?;
    let lut = CodeLut::new(code);
    let blocks = data.len().div_ceil(blocksize);
    let mut codes = vec![0u8; data.len()];
    let mut absmax = vec![0.0f32; blocks];
    codes
        .par_chunks_mut(blocksize)
        .zip(absmax.par_iter_mut())
        .zip(data.par_chunks(blocksize))
        .for_each(|((out, am), block)| {
            let m = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            *am = m;
            if m == 0.0 {
                out.fill(0);
                return;
            }
            let inv = 1.0 / m;
            for (o, v) in out.iter_mut().zip(block) {
                *o = lut.lookup(v * inv);
            }
        });
    Ok((codes, absmax))
}

/// Dequantizes blockwise 8-bit codes: `code[q] * absmax[block]` in f32.
pub fn dequantize_blockwise_8bit(
    codes: &[u8],
    absmax: &[f32],
    code: &[f32; 256],
    blocksize: usize,
) -> Result<Vec<f32>> {
    if blocksize == 0 {
        return Err(QuantError::InvalidBlocksize8 { blocksize });
    }
    let blocks = codes.len().div_ceil(blocksize);
    if absmax.len() != blocks {
        return Err(QuantError::LengthMismatch {
            what: "dequantize_blockwise_8bit absmax".into(),
            expected: blocks,
            actual: absmax.len(),
        });
    }
    let mut out = vec![0.0f32; codes.len()];
    out.par_chunks_mut(blocksize)
        .zip(codes.par_chunks(blocksize))
        .zip(absmax.par_iter())
        .for_each(|((o, q), &scale)| {
            for (o, &q) in o.iter_mut().zip(q) {
                *o = code[q as usize] * scale;
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dynamic_map;

    #[test]
    fn lut_agrees_with_nearest_code_away_from_midpoints() {
        let code = dynamic_map();
        let lut = CodeLut::new(code);
        for k in -1000..=1000 {
            let v = k as f32 / 1000.0;
            let nearest = (0..256)
                .min_by(|&a, &b| (code[a] - v).abs().total_cmp(&(code[b] - v).abs()))
                .unwrap_or(0);
            let got = lut.lookup(v) as usize;
            // The table is an approximation: off by at most one bin (2/65535) in value.
            let (err_got, err_best) = ((code[got] - v).abs(), (code[nearest] - v).abs());
            assert!(
                err_got <= err_best + 2.0 / 65535.0,
                "v = {v}: {got} vs {nearest}"
            );
        }
    }

    #[test]
    fn zero_block_gets_zero_codes() {
        let (codes, absmax) =
            quantize_blockwise_8bit(&[0.0; 10], dynamic_map(), 4).expect("finite input");
        assert_eq!(codes, vec![0; 10]);
        assert_eq!(absmax, vec![0.0; 3]);
    }
}
