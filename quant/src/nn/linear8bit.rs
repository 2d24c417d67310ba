//! `Linear8bitLt`: a Linear layer with an LLM.int8 weight.

use burn::module::{Module, Param};
use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use super::linear4bit::check_bias;
use super::{linear_weight_to_rows, pack_words, unpack_fields, words_tensor};
use crate::checkpoint::{Checkpoint, LinearWeight};
use crate::codec::Int8Rowwise;
use crate::error::{QuantError, Result};

use crate::codec::int8::{INV_127, INV_127_SQ};

/// Shape and threshold of a [`Linear8bitLt`].
#[derive(Debug, Clone, PartialEq)]
pub struct Linear8bitMeta {
    /// LLM.int8 outlier threshold (0 disables the decomposition).
    pub threshold: f64,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

/// A Linear layer with a row-wise int8 weight (`CB`, `[out, in]`) and its row scales (`SCB`).
///
/// `forward` is LLM.int8: activations are rounded to f16 (as bitsandbytes casts them) and
/// quantized per token with the outlier hidden dims (any |x| >= threshold) held out, multiplied
/// in int8, rescaled by `row_scale * SCB / 127²`, and the outlier dims are added back in float
/// against the dequantized weight columns. On burn's CUDA
/// and wgpu backends (features `cuda` / `wgpu`) up to `gpu::MAX_GEMV_ROWS` (16) rows run
/// the fused device kernels (int8 x int8 -> int32, exactly); otherwise burn ops compute it (the
/// int8 product carried in float).
#[derive(Module, Debug)]
pub struct Linear8bitLt<B: Backend> {
    /// The int8 weight, each row's bytes as little-endian 32-bit words held in the int tensor,
    /// the row zero-padded to a multiple of 16 bytes: `[out, ceil(in / 16) * 4]`.
    pub weight: Tensor<B, 2, Int>,
    /// Row absmax of the weight (`SCB`), `[out]`.
    pub scb: Tensor<B, 1>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Shape and threshold.
    #[module(skip)]
    pub meta: Linear8bitMeta,
}

impl<B: Backend> Linear8bitLt<B> {
    /// Builds from a row-wise int8 weight and an optional bias.
    pub fn from_quantized(
        weight: &Int8Rowwise,
        bias: Option<Tensor<B, 1>>,
        threshold: f64,
        device: &B::Device,
    ) -> Result<Self> {
        check_threshold(threshold)?;
        check_bias(&bias, weight.rows())?;
        let (rows, cols) = (weight.rows(), weight.cols());
        let row_words = row_words(cols);
        let mut data = Vec::with_capacity(rows * row_words);
        let bytes: Vec<u8> = weight.data().iter().map(|&v| v as u8).collect();
        for r in 0..rows {
            let mut words = pack_words(&bytes[r * cols..(r + 1) * cols], 4);
            words.resize(row_words, 0);
            data.extend(words);
        }
        Ok(Linear8bitLt {
            weight: words_tensor(data, [rows, row_words], device),
            scb: Tensor::from_data(
                TensorData::new(weight.scales().to_vec(), [weight.rows()]),
                device,
            ),
            bias: bias.map(Param::from_tensor),
            meta: Linear8bitMeta {
                threshold,
                in_features: weight.cols(),
                out_features: weight.rows(),
            },
        })
    }

    /// The layers' outputs side by side as one layer (Q/K/V, gate/up). Exact: the weight is
    /// quantized per row and the outlier columns are chosen from the shared input. The parts
    /// must share the input size and threshold and all have a bias or none.
    pub fn concat_rows(parts: &[Self]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(QuantError::InvalidConfig("no layers to concatenate".into()));
        };
        let m = first.meta.clone();
        for (i, p) in parts.iter().enumerate() {
            let pm = &p.meta;
            if pm.in_features != m.in_features
                || pm.threshold != m.threshold
                || p.bias.is_some() != first.bias.is_some()
            {
                return Err(QuantError::InvalidConfig(format!(
                    "cannot concatenate int8 layer {i} ([{}, {}], threshold {}): input size, \
                     threshold or bias differ from the first layer's",
                    pm.out_features, pm.in_features, pm.threshold
                )));
            }
        }
        let bias = super::concat_bias(parts.iter().map(|p| p.bias.as_ref()));
        Ok(Linear8bitLt {
            weight: Tensor::cat(parts.iter().map(|p| p.weight.clone()).collect(), 0),
            scb: Tensor::cat(parts.iter().map(|p| p.scb.clone()).collect(), 0),
            bias,
            meta: Linear8bitMeta {
                out_features: parts.iter().map(|p| p.meta.out_features).sum(),
                ..m
            },
        })
    }

    /// Quantizes a `[out, in]` weight held in a tensor as bnb's `Int8Params` does (cast to f16,
    /// row-wise int8). On burn's CUDA and wgpu backends the weight never leaves the device (the
    /// bytes are bit-identical to the CPU codec's); elsewhere it is read back and quantized on
    /// the host.
    pub fn quantize(
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        threshold: f64,
    ) -> Result<Self> {
        check_threshold(threshold)?;
        let [out_features, in_features] = weight.dims();
        check_bias(&bias, out_features)?;
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if let Some(done) = crate::gpu::burn_glue::linear8bit_quantize(&weight, &bias, threshold) {
            return done;
        }
        let device = weight.device();
        let rows = weight
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| QuantError::Device(format!("reading the weight back: {e:?}")))?;
        let q = Int8Rowwise::quantize_weight(&rows, out_features, in_features)?;
        Self::from_quantized(&q, bias, threshold, &device)
    }

    /// From a packed weight already on the device (`[out, row_words(in)]` words) and its
    /// `SCB`.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub(crate) fn from_device_parts(
        weight: Tensor<B, 2, Int>,
        scb: Tensor<B, 1>,
        bias: Option<Tensor<B, 1>>,
        threshold: f64,
        in_features: usize,
    ) -> Result<Self> {
        let out_features = scb.dims()[0];
        Ok(Linear8bitLt {
            weight,
            scb,
            bias: bias.map(Param::from_tensor),
            meta: Linear8bitMeta {
                threshold,
                in_features,
                out_features,
            },
        })
    }

    /// Quantizes a burn `Linear` (weight `[in, out]`), as bnb's `Int8Params` does (via f16).
    pub fn from_linear(linear: &burn::nn::Linear<B>, threshold: f64) -> Result<Self> {
        let (rows, out_f, in_f) = linear_weight_to_rows(&linear.weight.val())?;
        let q = Int8Rowwise::quantize_weight(&rows, out_f, in_f)?;
        let device = linear.weight.val().device();
        Self::from_quantized(
            &q,
            linear.bias.as_ref().map(|b| b.val()),
            threshold,
            &device,
        )
    }

    /// Loads the Linear at `module` from a bitsandbytes 8-bit checkpoint (bias included when
    /// present); the threshold defaults to the checkpoint's `llm_int8_threshold`.
    pub fn from_checkpoint(
        checkpoint: &mut Checkpoint,
        module: &str,
        threshold: Option<f64>,
        device: &B::Device,
    ) -> Result<Self> {
        let threshold = threshold
            .or(checkpoint.quant_config().map(|c| c.int8_threshold))
            .unwrap_or(crate::codec::DEFAULT_INT8_THRESHOLD);
        let LinearWeight::Int8(q) = checkpoint.linear_weight(module)? else {
            return Err(QuantError::bad_tensor(
                format!("{module}.weight"),
                "not an int8 weight",
            ));
        };
        let bias = super::read_bias::<B>(checkpoint, module, device)?;
        Self::from_quantized(&q, bias, threshold, device)
    }

    /// The int8 weight `[out, in]` (values -127..=127).
    pub fn weight_int8(&self) -> Tensor<B, 2, Int> {
        let [rows, words] = self.weight.dims();
        let bytes = unpack_fields(
            self.weight.clone().reshape([rows * words]),
            &[0, 8, 16, 24],
            0xFF,
            rows * words * 4,
        );
        // Two's complement: bytes from 128 up are negative.
        let signed = bytes.clone() - bytes.div_scalar(128).mul_scalar(256);
        signed
            .reshape([rows, words * 4])
            .narrow(1, 0, self.meta.in_features)
    }

    /// The dequantized `[out, in]` weight: `CB * SCB / 127`.
    pub fn weight_f32(&self) -> Tensor<B, 2> {
        (self.weight_int8().float() * self.scb.clone().unsqueeze_dim(1)).mul_scalar(INV_127)
    }

    /// LLM.int8 forward: `x` is `[..., in]`, the result `[..., out]`.
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
        crate::gpu::burn_glue::linear8bit_forward(self, x)
    }

    /// The reference forward on burn ops (any backend).
    pub fn forward_reference<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let m = &self.meta;
        let tokens = dims[..D - 1].iter().product::<usize>();
        let x2: Tensor<B, 2> = x.reshape([tokens, m.in_features]);
        let use_thr = m.threshold > 0.0;

        // bitsandbytes quantizes `A.to(torch.float16)`: codes, row scales and the outlier test
        // all see f16 values.
        let x16 = round_to_f16(x2.clone());
        let (x_in, outlier_cols) = if use_thr {
            let mask = x16.clone().abs().greater_equal_elem(m.threshold);
            let cols = mask.clone().any_dim(0);
            (x16.mask_fill(mask, 0.0), Some(cols))
        } else {
            (x16, None)
        };
        let rowmax = x_in.clone().abs().max_dim(1);
        let zero_rows = rowmax.clone().equal_elem(0.0);
        let scale = rowmax
            .clone()
            .mask_fill(zero_rows, 1.0)
            .recip()
            .mul_scalar(127.0);
        let mut ca = (x_in * scale).round();
        if let Some(cols) = &outlier_cols
            && tokens > 1
        {
            ca = ca.mask_fill(cols.clone().expand([tokens, m.in_features]), 0.0);
        }
        let c = ca.matmul(self.weight_int8().float().transpose());
        let mut out = c * (rowmax * self.scb.clone().unsqueeze_dim(0)).mul_scalar(INV_127_SQ);
        if let Some(cols) = outlier_cols {
            let x_out = x2 * cols.float();
            out = out + x_out.matmul(self.weight_f32().transpose());
        }
        if let Some(b) = &self.bias {
            out = out + b.val().unsqueeze_dim(0);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = m.out_features;
        out.reshape(out_dims)
    }
}

/// 32-bit words of a packed int8 row of `cols` values (padded to 16 bytes).
pub(crate) fn row_words(cols: usize) -> usize {
    cols.div_ceil(16) * 4
}

/// Rounds to the nearest f16 (ties to even), carried in the input's float type. Uses the
/// backend's f16 where it has one; elsewhere Veltkamp's splitting keeps 11 significant bits
/// (`c = 8193 x; c - (c - x)`) and f16 subnormals (|x| < 2^-14) round on their fixed 2^-24
/// grid. Values beyond the f16 range are left as they are.
fn round_to_f16<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let device = x.device();
    if B::supports_dtype(&device, DType::F16) {
        let dtype = x.dtype();
        return x.cast(FloatDType::F16).cast(FloatDType::from(dtype));
    }
    const SPLIT: f32 = 8193.0; // 2^(24 - 11) + 1
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const SUBNORMAL_STEP: f32 = 16_777_216.0; // 2^24
    let c = x.clone().mul_scalar(SPLIT);
    let normal = c.clone() - (c - x.clone());
    let tiny = x.clone().abs().lower_elem(MIN_NORMAL);
    let subnormal = x
        .mul_scalar(SUBNORMAL_STEP)
        .round()
        .div_scalar(SUBNORMAL_STEP);
    normal.mask_where(tiny, subnormal)
}

fn check_threshold(threshold: f64) -> Result<()> {
    if threshold >= 0.0 && threshold.is_finite() {
        Ok(())
    } else {
        Err(QuantError::InvalidConfig(format!(
            "int8 threshold must be >= 0, got {threshold}"
        )))
    }
}
