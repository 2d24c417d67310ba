//! Blockwise 4-bit quantization (NF4 and FP4), with optional double quantization of the absmax.

use std::borrow::Cow;

use rayon::prelude::*;

use super::blockwise8::{dequantize_blockwise_8bit, quantize_blockwise_8bit};
use super::tables::{FourBitSearch, dynamic_map, fp4_code, fp4_search, nf4_code, nf4_search};
use super::torch_sum::torch_mean_f32;
use crate::element::{Element, FloatDtype, check_finite, check_len};
use crate::error::{QuantError, Result};

/// The blocksizes bitsandbytes accepts for 4-bit quantization.
pub const VALID_BLOCKSIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
/// bitsandbytes' default 4-bit blocksize.
pub const DEFAULT_BLOCKSIZE: usize = 64;
/// The blocksize of the nested (double) quantization of the absmax.
pub const NESTED_BLOCKSIZE: usize = 256;

/// Checks a 4-bit blocksize.
pub fn check_blocksize(blocksize: usize) -> Result<()> {
    if VALID_BLOCKSIZES.contains(&blocksize) {
        Ok(())
    } else {
        Err(QuantError::InvalidBlocksize { blocksize })
    }
}

/// The two 4-bit data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FourBitType {
    /// NormalFloat4 (QLoRA): 16 quantiles of N(0, 1).
    Nf4,
    /// bitsandbytes' 4-bit float (1 sign, 2 exponent, 1 mantissa bit).
    Fp4,
}

impl FourBitType {
    /// The name bitsandbytes uses (`"nf4"` / `"fp4"`).
    pub fn name(self) -> &'static str {
        match self {
            FourBitType::Nf4 => "nf4",
            FourBitType::Fp4 => "fp4",
        }
    }

    /// Parses `"nf4"` / `"fp4"`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "nf4" => Some(FourBitType::Nf4),
            "fp4" => Some(FourBitType::Fp4),
            _ => None,
        }
    }

    /// The code table (index = 4-bit code), the `quant_map` bnb stores.
    pub fn code(self) -> &'static [f32; 16] {
        match self {
            FourBitType::Nf4 => nf4_code(),
            FourBitType::Fp4 => fp4_code(),
        }
    }

    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    /// The nearest-code search as tables: 15 midpoints between value-sorted codes (then
    /// `+inf`), the code of each sorted position, and the code odd counts are padded with.
    pub(crate) fn search_tables(self) -> (&'static [f32; 16], &'static [u8; 16], u8) {
        let s = self.search();
        (&s.bounds, &s.order, s.order[s.position(0.0)])
    }

    fn search(self) -> &'static FourBitSearch {
        match self {
            FourBitType::Nf4 => nf4_search(),
            FourBitType::Fp4 => fp4_search(),
        }
    }
}

impl std::fmt::Display for FourBitType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Double-quantized absmax: the per-block absmax minus their mean, quantized blockwise (blocks
/// of 256) with the signed dynamic 8-bit map.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedAbsmax {
    codes: Vec<u8>,
    absmax: Vec<f32>,
    offset: f32,
    code: Vec<f32>,
}

impl NestedAbsmax {
    /// Double-quantizes per-block absmax values as bnb does: `offset = absmax.mean()` (torch's
    /// single-threaded f32 summation order), then blockwise 8-bit on `absmax - offset`.
    pub fn quantize(absmax: &[f32]) -> Result<Self> {
        check_finite("nested absmax", absmax)?;
        let offset = torch_mean_f32(absmax);
        let centered: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
        let (codes, nested) = quantize_blockwise_8bit(&centered, dynamic_map(), NESTED_BLOCKSIZE)?;
        Ok(NestedAbsmax {
            codes,
            absmax: nested,
            offset,
            code: dynamic_map().to_vec(),
        })
    }

    /// Builds from stored parts (checkpoint tensors), checking their lengths.
    pub fn from_parts(
        codes: Vec<u8>,
        absmax: Vec<f32>,
        offset: f32,
        code: Vec<f32>,
    ) -> Result<Self> {
        let expected = codes.len().div_ceil(NESTED_BLOCKSIZE);
        if absmax.len() != expected {
            return Err(QuantError::LengthMismatch {
                what: "nested_absmax".into(),
                expected,
                actual: absmax.len(),
            });
        }
        if code.len() != 256 {
            return Err(QuantError::LengthMismatch {
                what: "nested_quant_map".into(),
                expected: 256,
                actual: code.len(),
            });
        }
        Ok(NestedAbsmax {
            codes,
            absmax,
            offset,
            code,
        })
    }

    /// One 8-bit code per 4-bit block (`weight.absmax` in a checkpoint).
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// One f32 absmax per 256 codes (`weight.nested_absmax`).
    pub fn absmax(&self) -> &[f32] {
        &self.absmax
    }

    /// The mean subtracted before quantizing (`nested_offset`).
    pub fn offset(&self) -> f32 {
        self.offset
    }

    /// The 256-entry code (`weight.nested_quant_map`).
    pub fn code(&self) -> &[f32] {
        &self.code
    }

    /// The per-block absmax values: `code[q] * nested_absmax + offset`, in f32, two roundings.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut code = [0.0f32; 256];
        code.copy_from_slice(&self.code);
        // Lengths are checked at construction.
        let mut out = dequantize_blockwise_8bit(&self.codes, &self.absmax, &code, NESTED_BLOCKSIZE)
            .unwrap_or_default();
        for v in &mut out {
            *v += self.offset;
        }
        out
    }
}

/// The per-block absmax of a 4-bit tensor: plain f32, or double-quantized.
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    /// One f32 per block.
    Plain(Vec<f32>),
    /// Double-quantized.
    Nested(NestedAbsmax),
}

impl Absmax {
    /// Number of blocks described.
    pub fn len(&self) -> usize {
        match self {
            Absmax::Plain(v) => v.len(),
            Absmax::Nested(n) => n.codes.len(),
        }
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 absmax per block (dequantizing nested ones).
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match self {
            Absmax::Plain(v) => Cow::Borrowed(v),
            Absmax::Nested(n) => Cow::Owned(n.dequantize()),
        }
    }
}

/// A tensor quantized to 4 bits, laid out exactly as bitsandbytes lays it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized4bit {
    quant_type: FourBitType,
    blocksize: usize,
    dtype: FloatDtype,
    shape: Vec<usize>,
    packed: Vec<u8>,
    absmax: Absmax,
}

impl Quantized4bit {
    /// Quantizes a row-major tensor the way `bitsandbytes.functional.quantize_4bit` does on CPU:
    /// flat blocks of `blocksize`, absmax per block in f32, scaled values rounded to the nearest
    /// code (a value on a midpoint takes the lower code), two codes per byte with the first in
    /// the high nibble, an odd count padded with the code of 0.0. With `double_quant` the absmax
    /// are quantized again (`compress_statistics=True`).
    ///
    /// f16 and bf16 inputs are widened to f32 first, as bnb does.
    ///
    /// ```
    /// use kiln_quant::codec::{FourBitType, Quantized4bit};
    /// let w: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 10.0).collect();
    /// let q = Quantized4bit::quantize(&w, &[2, 64], FourBitType::Nf4, 64, false)?;
    /// assert_eq!(q.packed().len(), 64);
    /// let back: Vec<f32> = q.dequantize();
    /// // Within half the widest NF4 gap (0.30) times the block absmax (6.4).
    /// assert!(back.iter().zip(&w).all(|(a, b)| (a - b).abs() <= 0.98));
    /// # Ok::<(), kiln_quant::QuantError>(())
    /// ```
    pub fn quantize<T: Element>(
        data: &[T],
        shape: &[usize],
        quant_type: FourBitType,
        blocksize: usize,
        double_quant: bool,
    ) -> Result<Self> {
        check_blocksize(blocksize)?;
        check_len("quantize_4bit input", shape, data.len())?;
        check_finite("quantize_4bit input", data)?;
        let (packed, absmax) = quantize_4bit_raw(data, quant_type, blocksize);
        let absmax = if double_quant {
            Absmax::Nested(NestedAbsmax::quantize(&absmax)?)
        } else {
            Absmax::Plain(absmax)
        };
        Ok(Quantized4bit {
            quant_type,
            blocksize,
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            packed,
            absmax,
        })
    }

    /// Builds from stored parts (a checkpoint), checking that they are consistent.
    pub fn from_parts(
        quant_type: FourBitType,
        blocksize: usize,
        dtype: FloatDtype,
        shape: Vec<usize>,
        packed: Vec<u8>,
        absmax: Absmax,
    ) -> Result<Self> {
        check_blocksize(blocksize)?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| QuantError::BadShape {
                what: "4-bit tensor".into(),
                shape: shape.clone(),
                reason: "element count overflows".into(),
            })?;
        if packed.len() != n.div_ceil(2) {
            return Err(QuantError::LengthMismatch {
                what: format!("packed 4-bit data of shape {shape:?}"),
                expected: n.div_ceil(2),
                actual: packed.len(),
            });
        }
        if absmax.len() != n.div_ceil(blocksize) {
            return Err(QuantError::LengthMismatch {
                what: format!("absmax of shape {shape:?} with blocksize {blocksize}"),
                expected: n.div_ceil(blocksize),
                actual: absmax.len(),
            });
        }
        Ok(Quantized4bit {
            quant_type,
            blocksize,
            dtype,
            shape,
            packed,
            absmax,
        })
    }

    /// NF4 or FP4.
    pub fn quant_type(&self) -> FourBitType {
        self.quant_type
    }

    /// Elements per block.
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }

    /// The dtype of the tensor that was quantized (what dequantization returns in bnb).
    pub fn dtype(&self) -> FloatDtype {
        self.dtype
    }

    /// The original shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Packed codes, two per byte, first element in the high nibble.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The per-block absmax.
    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }

    /// Whether the absmax is double-quantized.
    pub fn is_nested(&self) -> bool {
        matches!(self.absmax, Absmax::Nested(_))
    }

    /// Bytes of quantized state (packed codes and absmax, nested state included, code tables not).
    pub fn storage_bytes(&self) -> usize {
        self.packed.len()
            + match &self.absmax {
                Absmax::Plain(v) => 4 * v.len(),
                Absmax::Nested(n) => n.codes.len() + 4 * n.absmax.len() + 4,
            }
    }

    /// Dequantizes to `T`: `code[q] * absmax[block]` in f32, then rounded to `T`. With flat
    /// blocks, as bnb's CUDA and default backends compute it.
    pub fn dequantize<T: Element>(&self) -> Vec<T> {
        let absmax = self.absmax.to_f32();
        let n = self.numel();
        let mut out = vec![T::from_f32(0.0); n];
        dequantize_4bit_into(
            &self.packed,
            &absmax,
            self.quant_type,
            self.blocksize,
            &mut out,
        );
        out
    }

    /// `y = x W^T + b` on the CPU for this `[out, in]` weight and `x` `[tokens, in]`, in f32:
    /// each weight dequantized exactly as [`dequantize`](Self::dequantize) does (rounded to the
    /// stored dtype), one row at a time, so the dense matrix is never materialized. This is
    /// bitsandbytes' reference path (`dequantize_4bit`, then `torch.nn.functional.linear` with
    /// an f32 compute dtype) up to the order of the f32 sums.
    ///
    /// ```
    /// use kiln_quant::codec::{FourBitType, Quantized4bit};
    /// let w: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 100.0).collect();
    /// let q = Quantized4bit::quantize(&w, &[4, 64], FourBitType::Nf4, 64, false)?;
    /// let x = vec![1.0f32; 64];
    /// let y = q.linear(&x, 1, None)?;
    /// let dense: Vec<f32> = q.dequantize();
    /// let want: f32 = dense[..64].iter().sum();
    /// assert!((y[0] - want).abs() < 1e-4);
    /// # Ok::<(), kiln_quant::QuantError>(())
    /// ```
    pub fn linear(&self, x: &[f32], tokens: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        let [out_f, in_f] = match self.shape.as_slice() {
            [o, i] => [*o, *i],
            other => {
                return Err(QuantError::BadShape {
                    what: "4-bit linear weight".into(),
                    shape: other.to_vec(),
                    reason: "a Linear weight is 2-D [out, in]".into(),
                });
            }
        };
        check_len("4-bit linear input", &[tokens, in_f], x.len())?;
        if let Some(b) = bias
            && b.len() != out_f
        {
            return Err(QuantError::LengthMismatch {
                what: "4-bit linear bias".into(),
                expected: out_f,
                actual: b.len(),
            });
        }
        let absmax = self.absmax.to_f32();
        // y transposed ([out, tokens]): each task decodes one weight row once for all tokens.
        let mut yt = vec![0.0f32; out_f * tokens];
        if tokens > 0 {
            yt.par_chunks_mut(tokens).enumerate().for_each_init(
                || vec![0.0f32; in_f],
                |row, (j, yj)| {
                    decode_row(self, &absmax, j * in_f, row);
                    let b = bias.map_or(0.0, |b| b[j]);
                    for (t, y) in yj.iter_mut().enumerate() {
                        *y = dot(&x[t * in_f..(t + 1) * in_f], row) + b;
                    }
                },
            );
        }
        let mut y = vec![0.0f32; tokens * out_f];
        for (j, yj) in yt.chunks_exact(tokens.max(1)).enumerate() {
            for (t, &v) in yj.iter().enumerate() {
                y[t * out_f + j] = v;
            }
        }
        Ok(y)
    }

    /// The unpacked 4-bit codes, one per element.
    pub fn codes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .packed
            .iter()
            .flat_map(|b| [b >> 4, b & 0x0F])
            .collect();
        out.truncate(self.numel());
        out
    }
}

/// Dequantizes elements `start..start + row.len()` (flat, row-major) into `row`, one
/// 16-entry table of `code * absmax` (rounded to the stored dtype) per block.
fn decode_row(q: &Quantized4bit, absmax: &[f32], start: usize, row: &mut [f32]) {
    let code = q.quant_type.code();
    let (bs, packed) = (q.blocksize, &q.packed);
    let mut k = 0;
    while k < row.len() {
        let block = (start + k) / bs;
        let end = ((block + 1) * bs - start).min(row.len());
        let scale = absmax[block];
        let table: [f32; 16] = std::array::from_fn(|c| q.dtype.round(code[c] * scale));
        if !(start + k).is_multiple_of(2) {
            row[k] = table[(packed[(start + k) / 2] & 0x0F) as usize];
            k += 1;
        }
        while k + 1 < end {
            let byte = packed[(start + k) / 2];
            row[k] = table[(byte >> 4) as usize];
            row[k + 1] = table[(byte & 0x0F) as usize];
            k += 2;
        }
        if k < end {
            row[k] = table[(packed[(start + k) / 2] >> 4) as usize];
            k += 1;
        }
    }
}

/// An f32 dot product in eight interleaved partial sums (vectorizable).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// How many blocks one rayon task handles (amortizes scheduling on small blocksizes).
fn blocks_per_task(blocksize: usize) -> usize {
    (16384 / blocksize).max(1)
}

/// The 4-bit codec core: packed codes and plain f32 absmax.
fn quantize_4bit_raw<T: Element>(
    data: &[T],
    quant_type: FourBitType,
    blocksize: usize,
) -> (Vec<u8>, Vec<f32>) {
    let n = data.len();
    let search = quant_type.search();
    let blocks = n.div_ceil(blocksize);
    let mut packed = vec![0u8; n.div_ceil(2)];
    let mut absmax = vec![0.0f32; blocks];
    let per_task = blocks_per_task(blocksize);
    // bnb pads an odd count with a scaled value of 0.0.
    let pad = search.order[search.position(0.0)];
    packed
        .par_chunks_mut(per_task * blocksize / 2)
        .zip(absmax.par_chunks_mut(per_task))
        .zip(data.par_chunks(per_task * blocksize))
        .for_each(|((packed, absmax), data)| {
            let mut scaled = vec![0.0f32; blocksize];
            for ((block, am), out) in data
                .chunks(blocksize)
                .zip(absmax.iter_mut())
                .zip(packed.chunks_mut(blocksize / 2))
            {
                let len = block.len();
                let scaled = &mut scaled[..len];
                T::widen_into(block, scaled);
                let m = scaled.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if len == blocksize {
                    // Full blocks: multiply by the reciprocal; the unclamped max is stored.
                    *am = m;
                    let inv = 1.0 / m.max(1e-38);
                    for s in scaled.iter_mut() {
                        *s *= inv;
                    }
                } else {
                    // The partial last block: a true division, and the clamped max is stored.
                    let m = m.max(1e-38);
                    *am = m;
                    for s in scaled.iter_mut() {
                        *s /= m;
                    }
                }
                encode_pairs(scaled, search, pad, out);
            }
        });
    (packed, absmax)
}

/// Maps scaled values to codes and packs them two per byte, high nibble first.
#[inline]
fn encode_pairs(scaled: &[f32], search: &FourBitSearch, pad: u8, out: &mut [u8]) {
    // Branch-free nearest-code search: the sorted position of a value is the number of
    // midpoints below it, accumulated one midpoint at a time across a chunk (vectorizes).
    const CHUNK: usize = 256;
    let mut pos = [0u8; CHUNK];
    for (chunk, out) in scaled.chunks(CHUNK).zip(out.chunks_mut(CHUNK / 2)) {
        let pos = &mut pos[..chunk.len()];
        pos.fill(0);
        for b in &search.bounds[..15] {
            for (p, x) in pos.iter_mut().zip(chunk) {
                *p += (*b < *x) as u8;
            }
        }
        let mut pairs = pos.chunks_exact(2);
        for (o, pair) in out.iter_mut().zip(&mut pairs) {
            *o = (search.order[pair[0] as usize] << 4) | search.order[pair[1] as usize];
        }
        if let [last] = pairs.remainder()
            && let Some(o) = out.last_mut()
        {
            *o = (search.order[*last as usize] << 4) | pad;
        }
    }
}

/// Dequantizes packed 4-bit codes into `out` (flat blocks, absmax in f32).
fn dequantize_4bit_into<T: Element>(
    packed: &[u8],
    absmax: &[f32],
    quant_type: FourBitType,
    blocksize: usize,
    out: &mut [T],
) {
    let code = quant_type.code();
    let per_task = blocks_per_task(blocksize);
    out.par_chunks_mut(per_task * blocksize)
        .zip(packed.par_chunks(per_task * blocksize / 2))
        .zip(absmax.par_chunks(per_task))
        .for_each(|((out, packed), absmax)| {
            for ((out, packed), &scale) in out
                .chunks_mut(blocksize)
                .zip(packed.chunks(blocksize / 2))
                .zip(absmax)
            {
                // One f32 product per code, as bnb computes it, looked up per nibble.
                let table: [T; 16] = std::array::from_fn(|k| T::from_f32(code[k] * scale));
                let len = out.len();
                let mut pairs = out.chunks_exact_mut(2);
                for (o, &b) in (&mut pairs).zip(packed) {
                    o[0] = table[(b >> 4) as usize];
                    o[1] = table[(b & 0x0F) as usize];
                }
                // An odd tail (only in the last, partial block) sits in the high nibble.
                if let [last] = pairs.into_remainder()
                    && let Some(&b) = packed.get(len / 2)
                {
                    *last = table[(b >> 4) as usize];
                }
            }
        });
}
