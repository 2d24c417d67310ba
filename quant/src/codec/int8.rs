//! Row-wise (vector-wise) absmax int8 and the LLM.int8 mixed-precision decomposition.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::element::{Element, FloatDtype, check_finite, check_len};
use crate::error::{QuantError, Result};

/// bitsandbytes' `int8_vectorwise_dequant` constant: the Python float 1/127, applied in f32.
pub(crate) const INV_127: f32 = 7.874015718698502e-3_f64 as f32;
/// bitsandbytes' `int8_mm_dequant` constant (1/127², applied in f32).
pub(crate) const INV_127_SQ: f32 = 6.200124e-05;
/// transformers' default `llm_int8_threshold`.
pub const DEFAULT_INT8_THRESHOLD: f64 = 6.0;

/// A matrix quantized row-wise to int8: `round(x * 127 / rowmax)` per row, and the row absmax
/// (`SCB` for a weight).
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Rowwise {
    data: Vec<i8>,
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// The result of row-wise quantization with the outlier threshold: the int8 matrix (outlier
/// columns zeroed when there is more than one row) and the outlier columns, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Decomposition {
    /// The quantized inliers.
    pub quantized: Int8Rowwise,
    /// Hidden dimensions that hold at least one |x| >= threshold.
    pub outlier_cols: Vec<usize>,
}

impl Int8Rowwise {
    /// Row-wise int8 of a `[rows, cols]` matrix, as `int8_vectorwise_quant(x, threshold=0)`:
    /// the row absmax in the input dtype, the scale `127 * (1 / rowmax)` in f32 (torch's
    /// reciprocal-then-multiply), `round_half_even(x * scale)`. A row of zeros quantizes to zeros.
    ///
    /// ```
    /// use kiln_quant::codec::Int8Rowwise;
    /// let q = Int8Rowwise::quantize(&[1.0f32, -2.0, 0.5, 4.0], 2, 2)?;
    /// assert_eq!(q.data(), &[64, -127, 16, 127]);
    /// assert_eq!(q.scales(), &[2.0, 4.0]);
    /// # Ok::<(), kiln_quant::QuantError>(())
    /// ```
    pub fn quantize<T: Element>(x: &[T], rows: usize, cols: usize) -> Result<Self> {
        Ok(quantize_rows(x, rows, cols, 0.0)?.quantized)
    }

    /// Quantizes a Linear weight `[out, in]` as `Int8Params` does: cast to f16 first, then
    /// row-wise int8. The scales are the `SCB` of an 8-bit checkpoint.
    pub fn quantize_weight<T: Element>(weight: &[T], out: usize, inp: usize) -> Result<Self> {
        check_len("int8 weight", &[out, inp], weight.len())?;
        check_finite("int8 weight", weight)?;
        let half: Vec<f16> = weight.iter().map(|v| f16::from_f32(v.to_f32())).collect();
        check_finite("int8 weight (as f16)", &half)?;
        Self::quantize(&half, out, inp)
    }

    /// Builds from stored parts (`weight` int8 and `SCB`), checking lengths.
    pub fn from_parts(data: Vec<i8>, scales: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        check_len("int8 matrix", &[rows, cols], data.len())?;
        if scales.len() != rows {
            return Err(QuantError::LengthMismatch {
                what: "int8 row scales (SCB)".into(),
                expected: rows,
                actual: scales.len(),
            });
        }
        Ok(Int8Rowwise {
            data,
            scales,
            rows,
            cols,
        })
    }

    /// The int8 values, row-major.
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// The row absmax values (`SCB`).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `int8_vectorwise_dequant`: `q * scale * (1/127)`, two f32 roundings.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.data.len()];
        if self.cols == 0 {
            return out;
        }
        out.par_chunks_mut(self.cols)
            .zip(self.data.par_chunks(self.cols))
            .zip(self.scales.par_iter())
            .for_each(|((o, q), &s)| {
                for (o, &q) in o.iter_mut().zip(q) {
                    *o = (q as f32 * s) * INV_127;
                }
            });
        out
    }
}

/// Round half to even for |v| < 2^22 (int8 products are within +-128): adding and subtracting
/// 1.5 * 2^23 leaves the rounded integer under the default rounding mode, without the libm call
/// `round_ties_even` needs on CPUs without SSE4.1.
#[inline(always)]
fn round_small_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// The threshold as torch compares it: a Python float cast to the tensor's dtype.
fn threshold_in(dtype: FloatDtype, threshold: f64) -> f32 {
    match dtype {
        FloatDtype::F32 => threshold as f32,
        FloatDtype::F16 => f16::from_f64(threshold).to_f32(),
        FloatDtype::BF16 => bf16::from_f64(threshold).to_f32(),
    }
}

/// `int8_vectorwise_quant(x, threshold)`: with `threshold > 0`, elements with |x| >= threshold
/// are left out of the row absmax and quantize to 0, and (for more than one row) their whole
/// columns are zeroed; those columns are returned for the 16-bit path.
pub fn quantize_rows<T: Element>(
    x: &[T],
    rows: usize,
    cols: usize,
    threshold: f64,
) -> Result<Int8Decomposition> {
    check_len("int8 input", &[rows, cols], x.len())?;
    check_finite("int8 input", x)?;
    if threshold.is_nan() || threshold < 0.0 {
        return Err(QuantError::InvalidConfig(format!(
            "int8 threshold must be >= 0, got {threshold}"
        )));
    }
    let thr = threshold_in(T::DTYPE, threshold);
    let use_thr = threshold > 0.0;
    let is_outlier = |v: f32| use_thr && v.abs() >= thr;

    let mut outlier = vec![false; cols];
    if use_thr {
        for row in x.chunks(cols.max(1)) {
            for (o, v) in outlier.iter_mut().zip(row) {
                *o |= is_outlier(v.to_f32());
            }
        }
    }
    let outlier_cols: Vec<usize> = (0..cols).filter(|&c| outlier[c]).collect();
    let zero_cols = rows > 1 && !outlier_cols.is_empty();

    let mut data = vec![0i8; x.len()];
    let mut scales = vec![0.0f32; rows];
    if cols > 0 {
        data.par_chunks_mut(cols)
            .zip(scales.par_iter_mut())
            .zip(x.par_chunks(cols))
            .for_each_init(
                || vec![0.0f32; cols],
                |row, ((q, s), src)| {
                    T::widen_into(src, row);
                    if use_thr {
                        // Outliers leave the row max and quantize to 0.
                        for v in row.iter_mut() {
                            if v.abs() >= thr {
                                *v = 0.0;
                            }
                        }
                    }
                    let rowmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    *s = rowmax;
                    if rowmax == 0.0 {
                        // torch computes 0 * inf = NaN here and casts it to 0.
                        return;
                    }
                    let scale = (1.0 / rowmax) * 127.0;
                    for (q, v) in q.iter_mut().zip(row.iter()) {
                        *q = round_small_ties_even(v * scale) as i8;
                    }
                    if zero_cols {
                        for (q, o) in q.iter_mut().zip(&outlier) {
                            if *o {
                                *q = 0;
                            }
                        }
                    }
                },
            );
    }
    Ok(Int8Decomposition {
        quantized: Int8Rowwise {
            data,
            scales,
            rows,
            cols,
        },
        outlier_cols,
    })
}

/// `out[j] = a · b[j]` for the rows `b[j]` of a row-major int8 matrix, in i32, over the rows in
/// parallel. Not generic, so it is compiled (optimized) here whoever calls [`int8_linear`].
#[inline(never)]
fn dot_rows_i8(a: &[i8], b: &[i8], out: &mut [i32]) {
    let n = a.len();
    if n == 0 {
        out.fill(0);
        return;
    }
    out.par_chunks_mut(64)
        .zip(b.par_chunks(64 * n))
        .for_each(|(out, rows)| {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
                *o = row
                    .iter()
                    .zip(a)
                    .map(|(&q, &p)| i32::from(p) * i32::from(q))
                    .sum();
            }
        });
}

/// The LLM.int8 forward of `Linear8bitLt` (inference), as bitsandbytes runs it on CPU:
/// activations cast to f16 and quantized per token with the outlier threshold, int8 × int8 →
/// int32, `C * (row_scale * col_scale) * (1/127²)` plus bias, and the outlier hidden dims
/// multiplied in the input precision against the dequantized int8 weight columns.
///
/// `x` is `[tokens, in]`, the result `[tokens, out]` in the input's dtype. The int8 part is
/// exact; the outlier product is summed in f32 (bnb uses torch's `addmm`, whose summation order
/// differs), so results agree with bnb to f32 rounding.
pub fn int8_linear<T: Element>(
    x: &[T],
    tokens: usize,
    weight: &Int8Rowwise,
    bias: Option<&[T]>,
    threshold: f64,
) -> Result<Vec<T>> {
    let (out_f, in_f) = (weight.rows, weight.cols);
    check_len("int8_linear input", &[tokens, in_f], x.len())?;
    if let Some(b) = bias
        && b.len() != out_f
    {
        return Err(QuantError::LengthMismatch {
            what: "int8_linear bias".into(),
            expected: out_f,
            actual: b.len(),
        });
    }
    let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(v.to_f32())).collect();
    let dec = quantize_rows(&xh, tokens, in_f, threshold)?;
    let (ca, sca) = (&dec.quantized.data, &dec.quantized.scales);
    let cols = &dec.outlier_cols;
    // Dequantized weight columns for the outlier dims, rounded to the input dtype as bnb does.
    let sub_b: Vec<f32> = if cols.is_empty() {
        Vec::new()
    } else {
        let mut v = Vec::with_capacity(out_f * cols.len());
        for j in 0..out_f {
            for &c in cols {
                let q = weight.data[j * in_f + c];
                v.push(T::DTYPE.round((q as f32 * weight.scales[j]) * INV_127));
            }
        }
        v
    };

    let mut out = vec![T::from_f32(0.0); tokens * out_f];
    if out_f == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(out_f).enumerate().for_each(|(i, row)| {
        let a = &ca[i * in_f..(i + 1) * in_f];
        let mut c = vec![0i32; out_f];
        dot_rows_i8(a, &weight.data, &mut c);
        for (j, o) in row.iter_mut().enumerate() {
            let c = c[j];
            let mut v = c as f32 * (sca[i] * weight.scales[j]) * INV_127_SQ;
            if let Some(bias) = bias {
                v += bias[j].to_f32();
            }
            if !cols.is_empty() {
                let partial = T::DTYPE.round(v);
                let mut sub = 0.0f32;
                for (k, &c) in cols.iter().enumerate() {
                    sub += x[i * in_f + c].to_f32() * sub_b[j * cols.len() + k];
                }
                v = partial + sub;
            }
            *o = T::from_f32(v);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlier_columns_are_zeroed_and_reported() {
        let x = [1.0f32, 7.0, 2.0, 0.5, 1.0, -3.0];
        let dec = quantize_rows(&x, 2, 3, 6.0).expect("finite");
        assert_eq!(dec.outlier_cols, vec![1]);
        assert_eq!(dec.quantized.scales(), &[2.0, 3.0]);
        assert_eq!(dec.quantized.data(), &[64, 0, 127, 21, 0, -127]);
    }

    #[test]
    fn zero_threshold_reports_no_columns() {
        let dec = quantize_rows(&[10.0f32, 1.0], 1, 2, 0.0).expect("finite");
        assert!(dec.outlier_cols.is_empty());
        assert_eq!(dec.quantized.data(), &[127, 13]);
    }

    #[test]
    fn rejects_non_finite() {
        let err = Int8Rowwise::quantize(&[1.0f32, f32::NAN], 1, 2).expect_err("NaN must fail");
        assert!(err.to_string().contains("non-finite"), "{err}");
    }
}
