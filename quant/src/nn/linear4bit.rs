//! `Linear4bit`: a Linear layer with an NF4/FP4 weight.

use burn::module::{Module, Param};
use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use super::{compute_float_dtype, linear_weight_to_rows, pack_words, unpack_fields, words_tensor};
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
/// per-block absmax (plain, or double-quantized), and the 16-entry code table. The bytes are
/// bitsandbytes' own, four to a 32-bit word, so the weight takes half a byte per parameter on
/// the device.
///
/// `forward` runs CubeCL kernels on burn's CUDA and wgpu backends (features `cuda` / `wgpu`):
/// the fused 4-bit GEMV for up to `gpu::MAX_GEMV_ROWS` (16) rows, a device dequantization
/// and burn's matmul for more. On other backends it dequantizes with burn ops and multiplies:
/// the reference path.
#[derive(Module, Debug)]
pub struct Linear4bit<B: Backend> {
    /// The packed bytes (two codes per byte, the first in the high nibble) as little-endian
    /// 32-bit words held in the int tensor, zero-padded to a multiple of 4 words (16 bytes).
    pub packed: Tensor<B, 1, Int>,
    /// Per-block absmax in f32 when plain; empty when nested.
    pub absmax: Tensor<B, 1>,
    /// Per-block 8-bit absmax codes when nested, four to a little-endian 32-bit word.
    pub absmax_codes: Option<Tensor<B, 1, Int>>,
    /// One f32 absmax per 256 absmax codes when nested.
    pub nested_absmax: Option<Tensor<B, 1>>,
    /// The 256-entry nested code when nested.
    pub nested_code: Option<Tensor<B, 1>>,
    /// The 4-bit code table.
    pub code: Tensor<B, 1>,
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
        let packed = pack_words(weight.packed(), 4);
        let ints = |v: Vec<i32>| {
            let n = v.len();
            words_tensor::<B, 1>(v, [n], device)
        };
        let floats =
            |v: &[f32]| Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        let (absmax, absmax_codes, nested_absmax, nested_code, nested_offset) =
            match weight.absmax() {
                Absmax::Plain(a) => (floats(a), None, None, None, 0.0),
                Absmax::Nested(n) => (
                    floats(&[]),
                    Some(ints(pack_words(n.codes(), 1))),
                    Some(floats(n.absmax())),
                    Some(floats(n.code())),
                    n.offset(),
                ),
            };
        Ok(Linear4bit {
            packed: ints(packed),
            absmax,
            absmax_codes,
            nested_absmax,
            nested_code,
            code: floats(weight.quant_type().code()),
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

    /// Quantizes a `[out, in]` weight held in a tensor, in the tensor's own dtype (f32, f16 or
    /// bf16), as bitsandbytes quantizes a weight loaded in that dtype. On burn's CUDA and wgpu
    /// backends the weight never leaves the device (the codes are bit-identical to the CPU
    /// codec's); elsewhere it is read back and quantized on the host.
    pub fn quantize(
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        quant_type: FourBitType,
        blocksize: usize,
        double_quant: bool,
        compute_dtype: FloatDtype,
    ) -> Result<Self> {
        let [out_features, _] = weight.dims();
        check_bias(&bias, out_features)?;
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if let Some(done) = crate::gpu::burn_glue::linear4bit_quantize(
            &weight,
            &bias,
            quant_type,
            blocksize,
            double_quant,
            compute_dtype,
        ) {
            return done;
        }
        let device = weight.device();
        let shape = weight.dims();
        let q = match weight.dtype() {
            DType::F16 => {
                let v = weight
                    .into_data()
                    .convert::<half::f16>()
                    .to_vec::<half::f16>();
                Quantized4bit::quantize(&host_vec(v)?, &shape, quant_type, blocksize, double_quant)?
            }
            DType::BF16 => {
                let v = weight
                    .into_data()
                    .convert::<half::bf16>()
                    .to_vec::<half::bf16>();
                Quantized4bit::quantize(&host_vec(v)?, &shape, quant_type, blocksize, double_quant)?
            }
            _ => {
                let v = weight.into_data().convert::<f32>().to_vec::<f32>();
                Quantized4bit::quantize(&host_vec(v)?, &shape, quant_type, blocksize, double_quant)?
            }
        };
        Self::from_quantized(&q, bias, compute_dtype, &device)
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

    /// The layers' outputs side by side as one layer (Q/K/V, gate/up: one launch where there
    /// were several). Each part's rows keep their codes and absmax: the parts must share the
    /// input size, code, blocksize and dtypes, hold whole blocks (no block spans two parts) and
    /// all have a bias or none. Double-quantized absmax is stored dequantized (f32, as the
    /// kernels compute it, so the values are unchanged): each part's nested quantization has
    /// its own offset, which one nested absmax cannot hold. That costs 3 more bytes per block
    /// (~0.05 byte per weight at blocksize 64).
    pub fn concat_rows(parts: &[Self]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(QuantError::InvalidConfig("no layers to concatenate".into()));
        };
        let m = first.meta.clone();
        for (i, p) in parts.iter().enumerate() {
            let pm = &p.meta;
            let numel = pm.in_features * pm.out_features;
            let reason = if (
                pm.quant_type,
                pm.blocksize,
                pm.weight_dtype,
                pm.compute_dtype,
            ) != (m.quant_type, m.blocksize, m.weight_dtype, m.compute_dtype)
            {
                Some("its code, blocksize or dtypes differ from the first layer's")
            } else if pm.in_features != m.in_features {
                Some("its input size differs from the first layer's")
            } else if !numel.is_multiple_of(m.blocksize) || p.packed.dims()[0] * 8 != numel {
                Some("its blocks or packed words do not end where its rows end")
            } else if p.bias.is_some() != first.bias.is_some() {
                Some("some layers have a bias and some do not")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(QuantError::InvalidConfig(format!(
                    "cannot concatenate 4-bit layer {i} ([{}, {}]): {reason}",
                    pm.out_features, pm.in_features
                )));
            }
        }
        let nested = parts.iter().any(|p| p.absmax_codes.is_some());
        let mut absmax = Vec::with_capacity(parts.len());
        for p in parts {
            absmax.push(if nested {
                p.absmax_dequantized()?
            } else {
                p.absmax.clone()
            });
        }
        let out_features = parts.iter().map(|p| p.meta.out_features).sum();
        let bias = super::concat_bias(parts.iter().map(|p| p.bias.as_ref()));
        let code = first.code.clone();
        Ok(Linear4bit {
            packed: Tensor::cat(parts.iter().map(|p| p.packed.clone()).collect(), 0),
            absmax: Tensor::cat(absmax, 0),
            absmax_codes: None,
            nested_absmax: None,
            nested_code: None,
            code,
            bias,
            meta: Linear4bitMeta {
                out_features,
                nested_offset: 0.0,
                ..m
            },
        })
    }

    /// [`absmax_f32`](Self::absmax_f32), computed by the device kernels' own expression where
    /// they run (CUDA, wgpu).
    fn absmax_dequantized(&self) -> Result<Tensor<B, 1>> {
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if let Some(done) = crate::gpu::burn_glue::linear4bit_absmax(self) {
            return done;
        }
        Ok(self.absmax_f32())
    }

    /// Number of absmax blocks.
    fn blocks(&self) -> usize {
        (self.meta.in_features * self.meta.out_features).div_ceil(self.meta.blocksize)
    }

    /// The per-block absmax in f32 (nested ones dequantized: `code[q] * nested + offset`).
    pub fn absmax_f32(&self) -> Tensor<B, 1> {
        match (&self.absmax_codes, &self.nested_absmax, &self.nested_code) {
            (Some(words), Some(nested), Some(code)) => {
                let blocks = self.blocks();
                let codes = unpack_fields(words.clone(), &[0, 8, 16, 24], 0xFF, blocks);
                let device = words.device();
                let block = Tensor::<B, 1, Int>::arange(0..blocks as i64, &device)
                    .div_scalar(NESTED_BLOCKSIZE as i64);
                let values = code.clone().select(0, codes);
                (values * nested.clone().select(0, block)).add_scalar(self.meta.nested_offset)
            }
            _ => self.absmax.clone(),
        }
    }

    /// The 4-bit codes, one per element, in order.
    fn codes(&self) -> Tensor<B, 1, Int> {
        let n = self.meta.in_features * self.meta.out_features;
        // Little-endian bytes; the first element of a byte in its high nibble.
        unpack_fields(self.packed.clone(), &[4, 0, 12, 8, 20, 16, 28, 24], 0xF, n)
    }

    /// The dequantized `[out, in]` weight in the compute dtype.
    pub fn weight(&self) -> Tensor<B, 2> {
        let m = &self.meta;
        let n = m.in_features * m.out_features;
        let blocks = self.blocks();
        let mut values = self.code.clone().select(0, self.codes());
        let padded = blocks * m.blocksize;
        if padded > n {
            let zeros = Tensor::<B, 1>::zeros([padded - n], &values.device());
            values = Tensor::cat(vec![values, zeros], 0);
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
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        let x = match self.forward_device(x) {
            Ok(y) => return y,
            Err(x) => x,
        };
        self.forward_reference(x)
    }

    /// The forward through the CubeCL kernels, or `Err(x)` when the backend is not burn's
    /// CubeCL backend on CUDA or wgpu, or the device, dtypes or shapes do not allow them.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub fn forward_device<const D: usize>(
        &self,
        x: Tensor<B, D>,
    ) -> std::result::Result<Tensor<B, D>, Tensor<B, D>> {
        crate::gpu::burn_glue::linear4bit_forward(self, x)
    }

    /// The reference forward on burn ops (any backend): dequantize, then matmul.
    pub fn forward_reference<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
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

/// The values read back from a tensor.
fn host_vec<T>(v: std::result::Result<Vec<T>, burn::tensor::DataError>) -> Result<Vec<T>> {
    v.map_err(|e| QuantError::Device(format!("reading the weight back: {e:?}")))
}
