//! `Linear4bit`: a Linear layer with an NF4/FP4 weight.

use burn::module::{Module, Param};
use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData, get_device_settings};

use super::{compact_int, compute_float_dtype, linear_weight_to_rows};
use crate::checkpoint::{Checkpoint, LinearWeight};
use crate::codec::{Absmax, FourBitType, NESTED_BLOCKSIZE, Quantized4bit};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// Shape and codec parameters of a [`Linear4bit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Linear4bitMeta {
    /// NF4 or FP4.
    pub quant_type: FourBitType,
    /// Elements per absmax block.
    pub blocksize: usize,
    /// The dtype the weight was quantized from (dequantization rounds to it first, as bnb does).
    pub weight_dtype: FloatDtype,
    /// The dtype inputs, weight and bias are cast to for the matmul.
    pub compute_dtype: FloatDtype,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// The offset of double quantization (0 when the absmax is plain).
    pub nested_offset: f32,
}

/// A Linear layer whose `[out, in]` weight is stored as bitsandbytes 4-bit: packed codes, the
/// per-block absmax (plain, or double-quantized), and the 16-entry code table. `forward`
/// dequantizes the weight to the compute dtype and multiplies: the reference path, on every
/// backend (fused low-bit kernels plug in behind the same module).
#[derive(Module, Debug)]
pub struct Linear4bit<B: Backend> {
    /// Packed codes (one byte per two elements, values 0..=255), first element in the high
    /// nibble. Stored as `u8` where the backend has it (half a byte per weight).
    pub packed: Tensor<B, 1, Int>,
    /// Per-block absmax in f32 when plain; empty when nested.
    pub absmax: Tensor<B, 1>,
    /// Per-block 8-bit absmax codes when nested (stored as `u8` where the backend has it).
    pub absmax_codes: Option<Tensor<B, 1, Int>>,
    /// One f32 absmax per 256 absmax codes when nested.
    pub nested_absmax: Option<Tensor<B, 1>>,
    /// The 256-entry nested code when nested.
    pub nested_code: Option<Tensor<B, 1>>,
    /// The 4-bit code table.
    pub code: Tensor<B, 1>,
    /// The values of both nibbles of every byte, `[256, 2]`: `[code[b >> 4], code[b & 15]]`
    /// (one lookup per packed byte unpacks two weights).
    pub code_pairs: Tensor<B, 2>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Shapes and codec parameters.
    #[module(skip)]
    pub meta: Linear4bitMeta,
}

impl<B: Backend> Linear4bit<B> {
    /// Builds from a quantized `[out, in]` weight and an optional bias.
    pub fn from_quantized(
        weight: &Quantized4bit,
        bias: Option<Tensor<B, 1>>,
        compute_dtype: FloatDtype,
        device: &B::Device,
    ) -> Result<Self> {
        let [out_features, in_features] = match weight.shape() {
            [o, i] => [*o, *i],
            other => {
                return Err(QuantError::BadShape {
                    what: "Linear4bit weight".into(),
                    shape: other.to_vec(),
                    reason: "a Linear weight is 2-D [out, in]".into(),
                });
            }
        };
        check_bias(&bias, out_features)?;
        let bytes = |v: &[u8]| {
            Tensor::<B, 1, Int>::from_data(
                TensorData::new(v.to_vec(), [v.len()]),
                (device, compact_int::<B>(device, DType::U8)),
            )
        };
        let packed = bytes(weight.packed());
        let floats =
            |v: &[f32]| Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        let (absmax, absmax_codes, nested_absmax, nested_code, nested_offset) =
            match weight.absmax() {
                Absmax::Plain(a) => (floats(a), None, None, None, 0.0),
                Absmax::Nested(n) => (
                    floats(&[]),
                    Some(bytes(n.codes())),
                    Some(floats(n.absmax())),
                    Some(floats(n.code())),
                    n.offset(),
                ),
            };
        let table = weight.quant_type().code();
        let pairs: Vec<f32> = (0..256)
            .flat_map(|b| [table[b >> 4], table[b & 15]])
            .collect();
        Ok(Linear4bit {
            packed,
            absmax,
            absmax_codes,
            nested_absmax,
            nested_code,
            code: floats(table),
            code_pairs: Tensor::from_data(TensorData::new(pairs, [256, 2]), device),
            bias: bias.map(Param::from_tensor),
            meta: Linear4bitMeta {
                quant_type: weight.quant_type(),
                blocksize: weight.blocksize(),
                weight_dtype: weight.dtype(),
                compute_dtype,
                in_features,
                out_features,
                nested_offset,
            },
        })
    }

    /// Quantizes a burn `Linear` (weight `[in, out]`, as burn stores it).
    pub fn from_linear(
        linear: &burn::nn::Linear<B>,
        quant_type: FourBitType,
        blocksize: usize,
        double_quant: bool,
        compute_dtype: FloatDtype,
    ) -> Result<Self> {
        let (rows, out_f, in_f) = linear_weight_to_rows(&linear.weight.val())?;
        let q =
            Quantized4bit::quantize(&rows, &[out_f, in_f], quant_type, blocksize, double_quant)?;
        let device = linear.weight.val().device();
        Self::from_quantized(
            &q,
            linear.bias.as_ref().map(|b| b.val()),
            compute_dtype,
            &device,
        )
    }

    /// Loads the Linear at `module` from a bitsandbytes 4-bit checkpoint (bias included when
    /// present). The compute dtype defaults to the checkpoint's `bnb_4bit_compute_dtype`.
    pub fn from_checkpoint(
        checkpoint: &mut Checkpoint,
        module: &str,
        compute_dtype: Option<FloatDtype>,
        device: &B::Device,
    ) -> Result<Self> {
        let compute = compute_dtype
            .or(checkpoint.quant_config().map(|c| c.compute_dtype))
            .unwrap_or(FloatDtype::F32);
        let LinearWeight::FourBit(q) = checkpoint.linear_weight(module)? else {
            return Err(QuantError::bad_tensor(
                format!("{module}.weight"),
                "not a 4-bit weight",
            ));
        };
        let bias = super::read_bias::<B>(checkpoint, module, device)?;
        Self::from_quantized(&q, bias, compute, device)
    }

    /// The per-block absmax in f32 (nested ones dequantized: `code[q] * nested + offset`).
    pub fn absmax_f32(&self) -> Tensor<B, 1> {
        match (&self.absmax_codes, &self.nested_absmax, &self.nested_code) {
            (Some(codes), Some(nested), Some(code)) => {
                let device = codes.device();
                let n = codes.dims()[0] as i64;
                let block =
                    Tensor::<B, 1, Int>::arange(0..n, &device).div_scalar(NESTED_BLOCKSIZE as i64);
                let index_dtype = get_device_settings::<B>(&device).int_dtype;
                let values = code.clone().select(0, codes.clone().cast(index_dtype));
                (values * nested.clone().select(0, block)).add_scalar(self.meta.nested_offset)
            }
            _ => self.absmax.clone(),
        }
    }

    /// The dequantized `[out, in]` weight in the compute dtype.
    pub fn weight(&self) -> Tensor<B, 2> {
        let m = &self.meta;
        let n = m.in_features * m.out_features;
        let blocks = n.div_ceil(m.blocksize);
        let bytes = self.packed.dims()[0];
        let device = self.packed.device();
        // Indices in the backend's default int type (the compact u8 storage is not one).
        let index_dtype = get_device_settings::<B>(&device).int_dtype;
        let mut values = self
            .code_pairs
            .clone()
            .select(0, self.packed.clone().cast(index_dtype))
            .reshape([2 * bytes]);
        let padded = blocks * m.blocksize;
        if padded > 2 * bytes {
            let zeros = Tensor::<B, 1>::zeros([padded - 2 * bytes], &values.device());
            values = Tensor::cat(vec![values, zeros], 0);
        } else if padded < 2 * bytes {
            values = values.narrow(0, 0, padded);
        }
        let scaled = values.reshape([blocks, m.blocksize]) * self.absmax_f32().reshape([blocks, 1]);
        let w = scaled
            .reshape([padded])
            .narrow(0, 0, n)
            .reshape([m.out_features, m.in_features]);
        // bnb dequantizes to the weight's own dtype, then casts to the compute dtype.
        let w = cast(w, m.weight_dtype);
        cast(w, m.compute_dtype)
    }

    /// `y = x W^T + b`, computed in the compute dtype and returned in `x`'s dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let in_dtype = x.dtype();
        let x = cast(x, self.meta.compute_dtype);
        let bias = self
            .bias
            .as_ref()
            .map(|b| cast(b.val(), self.meta.compute_dtype));
        let y = burn::tensor::module::linear(x, self.weight().transpose(), bias);
        if y.dtype() == in_dtype {
            y
        } else {
            y.cast(in_dtype)
        }
    }
}

/// Casts to a kiln dtype unless the tensor already has it (a no-op cast must not require the
/// backend to support the dtype).
pub(crate) fn cast<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: FloatDtype) -> Tensor<B, D> {
    let target: FloatDType = compute_float_dtype(dtype);
    if t.dtype() == target.into() {
        t
    } else {
        t.cast(target)
    }
}

pub(crate) fn check_bias<B: Backend>(
    bias: &Option<Tensor<B, 1>>,
    out_features: usize,
) -> Result<()> {
    match bias {
        Some(b) if b.dims()[0] != out_features => Err(QuantError::LengthMismatch {
            what: "Linear bias".into(),
            expected: out_features,
            actual: b.dims()[0],
        }),
        _ => Ok(()),
    }
}
