//! NF4/FP4 quantization on the device, bit-identical to the CPU codec (and so to bitsandbytes).

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::device::{DeviceAbsmax, DeviceQuant4, check_capacity};
use super::int8::DeviceInt8;
use super::{
    check_dtype, cube_count, read_back, read_back_f32, upload_f32, upload_padded, vector_width,
    with_float,
};
use crate::codec::{Absmax, FourBitType, NestedAbsmax, Quantized4bit, check_blocksize};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// The absmax bits written for a block holding a NaN or an infinity.
const NON_FINITE: u32 = 0x7FC0_0000;

/// One unit per block: the absmax (unclamped for full blocks, clamped to `tiny` for the partial
/// last one), then each value scaled (reciprocal-multiply for full blocks, division for the
/// last) and mapped to the nearest code by counting the midpoints below it. Eight codes per
/// u32 word, the first in the high nibble of the lowest byte.
///
/// The absmax is written as raw bits so that the subnormal clamp survives devices that flush
/// subnormals; a block with a non-finite value gets a NaN absmax.
#[cube(launch_unchecked)]
pub(crate) fn quant4_kernel<F: Float, NI: Size>(
    input: &Array<Vector<F, NI>>,
    bounds: &Array<f32>,
    order: &Array<u32>,
    packed: &mut Array<u32>,
    absmax: &mut Array<u32>,
    numel: u32,
    block_shift: u32,
    pad: u32,
    tiny: f32,
    tiny_bits: u32,
) {
    let mut codes = SharedMemory::<u32>::new(16usize);
    if UNIT_POS < 16 {
        codes[UNIT_POS as usize] = order[UNIT_POS as usize];
    }
    sync_cube();

    let ni = input.vector_size();
    let block = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    let bs = 1usize << (block_shift as usize);
    let start = block * bs;
    let n = numel as usize;
    if start < n {
        let len = min(bs, n - start);
        let mut mid = Array::<f32>::new(15usize);
        #[unroll]
        for i in 0..15usize {
            mid[i] = bounds[i];
        }

        let mut m = 0.0f32;
        let mut finite = true;
        let vectors = len / ni;
        let first = start / ni;
        for v in 0..vectors {
            let xv = Vector::<f32, NI>::cast_from(input[first + v]);
            #[unroll]
            for e in 0..ni {
                let a = xv[e].abs();
                finite = finite && a <= f32::max_value();
                m = max(m, a);
            }
        }
        let full = len == bs;
        let am = if full { m } else { max(m, tiny) };
        let inv = 1.0f32 / max(m, tiny);
        if !finite {
            absmax[block] = NON_FINITE;
        } else if m == 0.0 && !full {
            absmax[block] = tiny_bits;
        } else {
            absmax[block] = u32::reinterpret(am);
        }

        let words = len.div_ceil(8);
        let word0 = start / 8;
        for wi in 0..words {
            let mut word = 0u32;
            #[unroll]
            for v in 0..comptime!(8 / ni) {
                let idx0 = wi * 8 + v * ni;
                if idx0 < len {
                    let xv = Vector::<f32, NI>::cast_from(input[first + idx0 / ni]);
                    #[unroll]
                    for e in 0..ni {
                        let idx = idx0 + e;
                        let x = xv[e];
                        let mut s = 0.0f32;
                        if m != 0.0 {
                            if full {
                                s = x * inv;
                            } else {
                                s = x / am;
                            }
                        }
                        let mut pos = 0u32;
                        #[unroll]
                        for i in 0..15usize {
                            pos += u32::cast_from(mid[i] < s);
                        }
                        let shift = (((idx % 8) / 2) * 8 + 4 * (1 - idx % 2)) as u32;
                        word |= codes[pos as usize] << shift;
                    }
                }
            }
            // An odd count is padded with the code of 0.0 in the low nibble of its last byte.
            let last = len - wi * 8;
            if last < 8 && last % 2 == 1 {
                word |= pad << ((((last % 8) / 2) * 8) as u32);
            }
            packed[word0 + wi] = word;
        }
        // The last block zeroes the padding words (to a multiple of 16 bytes).
        if start + len == n {
            let used = n.div_ceil(8);
            let total = n.div_ceil(32) * 4;
            for w in used..total {
                packed[w] = 0u32;
            }
        }
    }
}

/// Quantizes `numel` = `shape.product()` values of `dtype` in `input` on the device, with
/// plain absmax: packed codes (u32 words, zero-padded to 16 bytes) and one f32 per block.
/// Fails with [`QuantError::NonFinite`] on a NaN or an infinity.
pub fn quantize_4bit_device<R: Runtime>(
    client: &ComputeClient<R>,
    input: &Handle,
    dtype: FloatDtype,
    shape: &[usize],
    quant_type: FourBitType,
    blocksize: usize,
    double_quant: bool,
) -> Result<DeviceQuant4> {
    check_dtype(client, dtype)?;
    check_blocksize(blocksize)?;
    let numel: usize = shape.iter().product();
    if numel > u32::MAX as usize - 4096 {
        return Err(QuantError::Device(format!(
            "tensor of {numel} elements exceeds the kernels' 32-bit indexing"
        )));
    }
    check_capacity(input, numel * dtype.size(), "quantize_4bit input")?;
    let blocks = numel.div_ceil(blocksize);
    let packed = client.empty(numel.div_ceil(32).max(1) * 16);
    let absmax = client.empty(blocks.max(1) * 4);
    if numel > 0 {
        let (bounds, order, pad) = quant_type.search_tables();
        let order: Vec<u32> = order.iter().map(|&o| o as u32).collect();
        let bounds_h = upload_f32(client, bounds);
        let order_h = upload_padded(client, bytemuck::cast_slice(&order), 4);
        let mut ni = vector_width(client, dtype.size(), numel).min(8);
        let offset = input.offset_start.unwrap_or(0) as usize;
        while ni > 1 && !offset.is_multiple_of(ni * dtype.size()) {
            ni /= 2;
        }
        let tiny = 1e-38f32;
        let threads = 128usize;
        with_float!(dtype, F => unsafe {
            quant4_kernel::launch_unchecked::<F, R>(
                client,
                cube_count(client, blocks.div_ceil(threads)),
                CubeDim::new_1d(threads as u32),
                ni,
                ArrayArg::from_raw_parts(input.clone(), numel / ni),
                ArrayArg::from_raw_parts(bounds_h, 16),
                ArrayArg::from_raw_parts(order_h, 16),
                ArrayArg::from_raw_parts(packed.clone(), numel.div_ceil(32) * 4),
                ArrayArg::from_raw_parts(absmax.clone(), blocks),
                numel as u32,
                blocksize.trailing_zeros(),
                pad as u32,
                tiny,
                tiny.to_bits(),
            )
        });
    }
    // The absmax is small (1/16 of the packed bytes at blocksize 64): read it back to check for
    // non-finite input and, for double quantization, to quantize it on the CPU (its offset is
    // torch's mean, summed in torch's order).
    let host_absmax: Vec<f32> = read_back(client, absmax.clone(), blocks)?;
    if let Some(b) = host_absmax.iter().position(|a| a.is_nan()) {
        let start = b * blocksize;
        let len = blocksize.min(numel - start);
        let values = read_back_f32(client, input.clone(), numel, dtype)?;
        let (i, v) = values[start..start + len]
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, v)| (start + i, *v))
            .unwrap_or((start, f32::NAN));
        return Err(QuantError::NonFinite {
            what: "quantize_4bit input (device)".into(),
            index: i,
            value: v,
        });
    }
    let absmax = if double_quant {
        let nested = NestedAbsmax::quantize(&host_absmax)?;
        DeviceAbsmax::Nested {
            codes: upload_padded(client, nested.codes(), 4),
            absmax: upload_f32(client, nested.absmax()),
            code: upload_f32(client, nested.code()),
            offset: nested.offset(),
        }
    } else {
        DeviceAbsmax::Plain(absmax)
    };
    Ok(DeviceQuant4 {
        packed,
        absmax,
        code: upload_f32(client, quant_type.code()),
        quant_type,
        blocksize,
        shape: shape.to_vec(),
    })
}

/// [`quantize_4bit_device`], read back into a [`Quantized4bit`] (the codec's and the
/// checkpoint's representation).
pub fn quantize_4bit<R: Runtime>(
    client: &ComputeClient<R>,
    input: &Handle,
    dtype: FloatDtype,
    shape: &[usize],
    quant_type: FourBitType,
    blocksize: usize,
    double_quant: bool,
) -> Result<Quantized4bit> {
    let dev = quantize_4bit_device(
        client,
        input,
        dtype,
        shape,
        quant_type,
        blocksize,
        double_quant,
    )?;
    dev.to_host(client, dtype)
}

impl DeviceQuant4 {
    /// Reads the tensor back into a [`Quantized4bit`]; `dtype` is the dtype it was quantized
    /// from (what the checkpoint records).
    pub fn to_host<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        dtype: FloatDtype,
    ) -> Result<Quantized4bit> {
        let numel = self.numel();
        let bytes = numel.div_ceil(2);
        let blocks = numel.div_ceil(self.blocksize);
        let packed: Vec<u8> = read_back(client, self.packed.clone(), bytes)?;
        let absmax = match &self.absmax {
            DeviceAbsmax::Plain(a) => Absmax::Plain(read_back(client, a.clone(), blocks)?),
            DeviceAbsmax::Nested {
                codes,
                absmax,
                code,
                offset,
            } => Absmax::Nested(NestedAbsmax::from_parts(
                read_back(client, codes.clone(), blocks)?,
                read_back(
                    client,
                    absmax.clone(),
                    blocks.div_ceil(crate::codec::NESTED_BLOCKSIZE),
                )?,
                *offset,
                read_back(client, code.clone(), 256)?,
            )?),
        };
        Quantized4bit::from_parts(
            self.quant_type,
            self.blocksize,
            dtype,
            self.shape.clone(),
            packed,
            absmax,
        )
    }
}

/// Units per cube of [`quant8_kernel`].
pub(crate) const QUANT8_UNITS: usize = 256;

/// One cube per row: the row absmax (exact: a max of magnitudes), the scale `127 * (1 / max)`
/// in f32, `round_half_even(x * scale)` as int8, four to a u32 word (little-endian), the row
/// zero-padded to `row_words` words. A row of zeros quantizes to zeros; a row holding a NaN or
/// an infinity gets a NaN scale.
// `!(a <= max)` is also true for NaN, which is what it is for.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[cube(launch_unchecked)]
pub(crate) fn quant8_kernel<F: Float>(
    input: &Array<F>,
    packed: &mut Array<u32>,
    scales: &mut Array<u32>,
    rows: u32,
    cols: u32,
    row_words: u32,
) {
    let mut partial = SharedMemory::<f32>::new(QUANT8_UNITS);
    let mut bad = SharedMemory::<u32>::new(QUANT8_UNITS);
    let row = CUBE_POS;
    let unit = UNIT_POS as usize;
    let threads = QUANT8_UNITS;
    let n = cols as usize;
    let valid = row < (rows as usize);
    let base = row * n;
    let mut m = 0.0f32;
    let mut nonfinite = 0u32;
    if valid {
        let iters = n.div_ceil(threads);
        for i in 0..iters {
            let c = i * threads + unit;
            if c < n {
                let a = f32::cast_from(input[base + c]).abs();
                if !(a <= f32::max_value()) {
                    nonfinite = 1u32;
                } else {
                    m = max(m, a);
                }
            }
        }
    }
    partial[unit] = m;
    bad[unit] = nonfinite;
    sync_cube();
    #[unroll]
    for s in 0..8u32 {
        let stride = QUANT8_UNITS >> (s + 1);
        if unit < stride {
            partial[unit] = max(partial[unit], partial[unit + stride]);
            bad[unit] = bad[unit] | bad[unit + stride];
        }
        sync_cube();
    }
    let rowmax = partial[0];
    if valid {
        if unit == 0 {
            if bad[0] != 0 {
                scales[row] = NON_FINITE;
            } else {
                scales[row] = u32::reinterpret(rowmax);
            }
        }
        let scale = (1.0f32 / rowmax) * 127.0f32;
        let words = row_words as usize;
        let wbase = row * words;
        let iters = words.div_ceil(threads);
        for i in 0..iters {
            let w = i * threads + unit;
            if w < words {
                let mut word = 0u32;
                #[unroll]
                for b in 0..4usize {
                    let c = w * 4 + b;
                    if c < n && rowmax > 0.0 {
                        let q = f32::round(f32::cast_from(input[base + c]) * scale);
                        let byte = u32::cast_from(i32::cast_from(q) + 256i32) & 0xFFu32;
                        word |= byte << ((b * 8) as u32);
                    }
                }
                packed[wbase + w] = word;
            }
        }
    }
}

/// Quantizes a `[rows, cols]` weight of `dtype` in `input` on the device as bitsandbytes'
/// `Int8Params` does: cast to f16 (the caller does it for other dtypes: pass f16), then row-wise
/// int8 with the row absmax as `SCB`. Bit-identical to
/// [`crate::codec::Int8Rowwise::quantize_weight`]; fails with [`QuantError::NonFinite`] on a NaN
/// or an infinity.
pub fn quantize_int8_device<R: Runtime>(
    client: &ComputeClient<R>,
    input: &Handle,
    dtype: FloatDtype,
    rows: usize,
    cols: usize,
) -> Result<DeviceInt8> {
    check_dtype(client, dtype)?;
    let numel = rows * cols;
    if numel > u32::MAX as usize - 4096 {
        return Err(QuantError::Device(format!(
            "tensor of {numel} elements exceeds the kernels' 32-bit indexing"
        )));
    }
    check_capacity(input, numel * dtype.size(), "quantize_int8 input")?;
    // Rows padded to 16 bytes, as `DeviceInt8` holds them.
    let row_words = cols.div_ceil(16) * 4;
    let weight = client.empty((rows * row_words * 4).max(16));
    let scb = client.empty(rows.max(1) * 4);
    if rows > 0 {
        with_float!(dtype, F => unsafe {
            quant8_kernel::launch_unchecked::<F, R>(
                client,
                cube_count(client, rows),
                CubeDim::new_1d(QUANT8_UNITS as u32),
                ArrayArg::from_raw_parts(input.clone(), numel.max(1)),
                ArrayArg::from_raw_parts(weight.clone(), (rows * row_words).max(1)),
                ArrayArg::from_raw_parts(scb.clone(), rows),
                rows as u32,
                cols as u32,
                row_words as u32,
            )
        });
        let scales: Vec<f32> = read_back(client, scb.clone(), rows)?;
        if let Some(r) = scales.iter().position(|s| s.is_nan()) {
            let values = read_back_f32(client, input.clone(), numel, dtype)?;
            let (i, v) = values[r * cols..(r + 1) * cols]
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .map(|(i, v)| (r * cols + i, *v))
                .unwrap_or((r * cols, f32::NAN));
            return Err(QuantError::NonFinite {
                what: "quantize_int8 input (device)".into(),
                index: i,
                value: v,
            });
        }
    }
    Ok(DeviceInt8 {
        weight,
        scb,
        rows,
        cols,
    })
}
