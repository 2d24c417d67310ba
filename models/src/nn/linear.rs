//! A linear layer with HF's `[out, in]` weight convention at load time: a dense weight, or a
//! bitsandbytes-exact 4-bit / 8-bit one (kiln-quant's [`Linear4bit`] / [`Linear8bitLt`]).
//!
//! What a layer becomes is decided as it is read, from the source's [`WeightOptions`]:
//! a weight stored quantized (a bitsandbytes checkpoint) stays quantized; a float weight is
//! quantized when the options ask for it and the layer is one transformers would quantize
//! (every Linear but `lm_head`, embeddings and `skip_modules`); otherwise it is dense, in the
//! options' dtype. Quantization starts from the host f32 weight rounded to that dtype, as
//! bitsandbytes quantizes the weight in the dtype transformers loaded it in.
//!
//! On the CPU backend (ndarray), where the host is the device, a quantized layer keeps
//! kiln-quant's codec form and multiplies with its CPU kernels (the 4-bit weight dequantized
//! per call, bit-identical to `Linear4bit::weight`; LLM.int8 as bitsandbytes' CPU path
//! computes it): burn-ndarray's integer gathers and casts would make the generic modules
//! seconds per token. Other backends use the burn modules.

use burn::tensor::backend::Backend;
use std::sync::Arc;

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use half::{bf16, f16};
use kiln_quant::checkpoint::{LinearWeight, is_quantizable};
use kiln_quant::codec::{Element, FourBitType, Int8Rowwise, Quantized4bit, int8_linear};
use kiln_quant::nn::{Linear4bit, Linear8bitLt};
use kiln_quant::{QuantBits, QuantConfig, QuantError};

use crate::ModelError;
use crate::weights::{FloatDtype, RawFloat, WeightSource, burn_dtype, check_dtype, float_tensor};

/// How a [`Linear`] holds its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearFormat {
    /// A float weight of this dtype.
    Dense(FloatDtype),
    /// bitsandbytes 4-bit.
    FourBit {
        /// NF4 or FP4.
        quant_type: FourBitType,
        /// Whether the absmax is double-quantized.
        double_quant: bool,
        /// The dtype the 4-bit matmul computes in (`bnb_4bit_compute_dtype`).
        compute_dtype: FloatDtype,
    },
    /// bitsandbytes LLM.int8.
    Int8,
}

#[derive(Debug, Clone)]
enum Weight<B: Backend> {
    /// `[in, out]`: stored transposed so the forward pass is one matmul.
    Dense {
        weight_t: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    },
    /// `[out, in]` as stored (GPU backends): few-token inputs go through a GEMV kernel that
    /// reads the rows, more through the matmul of the transposed view.
    Rows {
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    },
    FourBit(Linear4bit<B>),
    Int8(Linear8bitLt<B>),
    /// The CPU backend: the codec's form, dequantized per call.
    HostFourBit {
        q: Arc<Quantized4bit>,
        bias: Option<Vec<f32>>,
        device: B::Device,
    },
    /// The CPU backend: LLM.int8 by kiln-quant's CPU kernel.
    HostInt8 {
        q: Arc<Int8Rowwise>,
        bias: Option<Vec<f32>>,
        threshold: f64,
        device: B::Device,
    },
}

/// `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight: Weight<B>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{prefix}.weight` (`[out, in]`) and, when `bias`, `{prefix}.bias`, in the form the
    /// source's [`WeightOptions`](crate::weights::WeightOptions) ask for (see the module docs).
    pub fn load(
        source: &mut dyn WeightSource,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let name = format!("{prefix}.weight");
        let shape_error =
            |found: Vec<usize>, source: &dyn WeightSource| ModelError::ShapeMismatch {
                file: source.origin().to_path_buf(),
                tensor: name.clone(),
                expected: vec![out_features, in_features],
                found,
            };
        let bias_host = if bias {
            let bias_name = format!("{prefix}.bias");
            let b = source.host_tensor(&bias_name)?;
            if b.shape != [out_features] {
                return Err(ModelError::ShapeMismatch {
                    file: source.origin().to_path_buf(),
                    tensor: bias_name,
                    expected: vec![out_features],
                    found: b.shape,
                });
            }
            Some(b.data)
        } else {
            None
        };
        let dtype = source.options().dtype;
        let quant_error = |e: QuantError, source: &dyn WeightSource| ModelError::Format {
            file: source.origin().to_path_buf(),
            reason: format!("quantizing `{name}`: {e}"),
        };

        if let Some(stored) = source.stored_linear(prefix)? {
            let shape = stored.shape();
            if shape != [out_features, in_features] {
                return Err(shape_error(shape, source));
            }
            let requested = source.options().quantization.as_ref();
            let weight = match stored {
                LinearWeight::FourBit(q) => {
                    let compute = stored_compute_dtype::<B>(
                        requested,
                        source.stored_quantization(),
                        dtype,
                        device,
                    )?;
                    four_bit::<B>(q, bias_host, dtype, compute, device)
                        .map_err(|e| quant_error(e, source))?
                }
                LinearWeight::Int8(q) => {
                    let threshold = requested
                        .or(source.stored_quantization())
                        .map_or(kiln_quant::codec::DEFAULT_INT8_THRESHOLD, |c| {
                            c.int8_threshold
                        });
                    int8::<B>(q, bias_host, threshold, device)
                        .map_err(|e| quant_error(e, source))?
                }
                LinearWeight::Float(_) => {
                    return Err(ModelError::Format {
                        file: source.origin().to_path_buf(),
                        reason: format!("`{name}` is listed as quantized but stored as floats"),
                    });
                }
            };
            return Ok(Self { weight });
        }

        let config = source
            .options()
            .quantization
            .clone()
            .filter(|c| quantizes(&name, [out_features, in_features], c));
        // On a GPU backend the stored bytes go to the device as they are: a dense layer stays
        // there as rows, a quantized one is quantized there (from the load dtype, as
        // bitsandbytes quantizes the weight transformers loaded), so no float weight passes
        // the host.
        if !host_kernels::<B>(device)
            && let Some(raw) = source.raw_float(&name)?
        {
            if raw.shape != [out_features, in_features] {
                return Err(shape_error(raw.shape, source));
            }
            if let Some(c) = config.as_ref().filter(|c| c.bits == QuantBits::Four) {
                check_dtype::<B>(c.compute_dtype, device)?;
            }
            let weight = raw.to_device([out_features, in_features], dtype, device)?;
            let weight = match &config {
                None => Weight::Rows {
                    weight,
                    bias: bias_tensor(bias_host, dtype, device)?,
                },
                Some(c) => match c.bits {
                    QuantBits::Four => Weight::FourBit(
                        Linear4bit::quantize(
                            weight,
                            bias_tensor(bias_host, dtype, device)?,
                            c.quant_type,
                            c.blocksize,
                            c.double_quant,
                            c.compute_dtype,
                        )
                        .map_err(|e| quant_error(e, source))?,
                    ),
                    QuantBits::Eight => Weight::Int8(
                        Linear8bitLt::quantize(
                            weight,
                            int8_bias(bias_host, device),
                            c.int8_threshold,
                        )
                        .map_err(|e| quant_error(e, source))?,
                    ),
                },
            };
            if config.is_some() {
                // The float weight this layer was quantized from is free now.
                super::kernels::release_unused_memory::<B>(device);
            }
            return Ok(Self { weight });
        }
        let weight = source.host_tensor(&name)?;
        if weight.shape != [out_features, in_features] {
            return Err(shape_error(weight.shape, source));
        }
        let Some(config) = config else {
            return Ok(Self {
                weight: dense::<B>(
                    weight.data,
                    out_features,
                    in_features,
                    bias_host,
                    dtype,
                    device,
                )?,
            });
        };
        let shape = [out_features, in_features];
        let weight = match config.bits {
            QuantBits::Four => {
                check_dtype::<B>(config.compute_dtype, device)?;
                let q = quantize_4bit(weight.data, &shape, dtype, &config)
                    .map_err(|e| quant_error(e, source))?;
                four_bit::<B>(q, bias_host, dtype, config.compute_dtype, device)
                    .map_err(|e| quant_error(e, source))?
            }
            QuantBits::Eight => {
                let q = quantize_int8(weight.data, &shape, dtype)
                    .map_err(|e| quant_error(e, source))?;
                int8::<B>(q, bias_host, config.int8_threshold, device)
                    .map_err(|e| quant_error(e, source))?
            }
        };
        Ok(Self { weight })
    }

    /// The Linears `{prefix}` of `prefixes` (one input size, `outs[i]` outputs each), loaded as
    /// [`load`](Self::load) would: as one Linear whose output holds theirs side by side (Q/K/V,
    /// gate/up; one launch where there were several) on GPU backends when they are all dense,
    /// all 4-bit or all int8 and can be joined (see `Linear4bit::concat_rows` and
    /// `Linear8bitLt::concat_rows`), else one Linear each, in order. Each output keeps its own
    /// weight row (and 4-bit blocks, int8 row scale), so its values are the same.
    pub fn load_fused(
        source: &mut dyn WeightSource,
        prefixes: &[String],
        in_features: usize,
        outs: &[usize],
        bias: bool,
        device: &B::Device,
    ) -> Result<Vec<Self>, ModelError> {
        if host_kernels::<B>(device) {
            return Self::load_each(source, prefixes, in_features, outs, bias, device);
        }
        let quantized = source.stored_quantization().is_some()
            || source.options().quantization.as_ref().is_some_and(|c| {
                prefixes
                    .iter()
                    .zip(outs)
                    .any(|(p, &o)| quantizes(&format!("{p}.weight"), [o, in_features], c))
            });
        if quantized {
            let parts = Self::load_each(source, prefixes, in_features, outs, bias, device)?;
            return Ok(match Self::join_quantized(&parts) {
                Some(joined) => {
                    drop(parts);
                    super::kernels::release_unused_memory::<B>(device);
                    vec![joined]
                }
                None => parts,
            });
        }
        match Self::load_dense_concat(source, prefixes, in_features, outs, bias, device)? {
            Some(joined) => Ok(vec![joined]),
            None => Self::load_each(source, prefixes, in_features, outs, bias, device),
        }
    }

    fn load_each(
        source: &mut dyn WeightSource,
        prefixes: &[String],
        in_features: usize,
        outs: &[usize],
        bias: bool,
        device: &B::Device,
    ) -> Result<Vec<Self>, ModelError> {
        prefixes
            .iter()
            .zip(outs)
            .map(|(p, &o)| Self::load(source, p, in_features, o, bias, device))
            .collect()
    }

    /// Quantized layers of one kind as one, where they can be joined.
    fn join_quantized(parts: &[Self]) -> Option<Self> {
        /// Every part's layer when each is of the kind `pick` takes.
        fn all<B: Backend, L: Clone>(
            parts: &[Linear<B>],
            pick: impl Fn(&Weight<B>) -> Option<&L>,
        ) -> Option<Vec<L>> {
            parts.iter().map(|p| pick(&p.weight).cloned()).collect()
        }
        let weight = match parts.first().map(|p| &p.weight) {
            Some(Weight::FourBit(_)) => {
                let layers = all(parts, |w| match w {
                    Weight::FourBit(l) => Some(l),
                    _ => None,
                })?;
                Weight::FourBit(Linear4bit::concat_rows(&layers).ok()?)
            }
            Some(Weight::Int8(_)) => {
                let layers = all(parts, |w| match w {
                    Weight::Int8(l) => Some(l),
                    _ => None,
                })?;
                Weight::Int8(Linear8bitLt::concat_rows(&layers).ok()?)
            }
            _ => return None,
        };
        Some(Self { weight })
    }

    /// Dense float weights in the file, stacked and uploaded once as one tensor; `Ok(None)`
    /// when one is not stored as floats or their dtypes differ.
    fn load_dense_concat(
        source: &mut dyn WeightSource,
        prefixes: &[String],
        in_features: usize,
        outs: &[usize],
        bias: bool,
        device: &B::Device,
    ) -> Result<Option<Self>, ModelError> {
        let dtype = source.options().dtype;
        let mut parts = Vec::with_capacity(prefixes.len());
        for (p, &o) in prefixes.iter().zip(outs) {
            let name = format!("{p}.weight");
            let Some(raw) = source.raw_float(&name)? else {
                return Ok(None);
            };
            if raw.shape != [o, in_features] {
                return Err(ModelError::ShapeMismatch {
                    file: source.origin().to_path_buf(),
                    tensor: name,
                    expected: vec![o, in_features],
                    found: raw.shape,
                });
            }
            parts.push(raw);
        }
        let stored = parts[0].dtype;
        if parts.iter().any(|r| r.dtype != stored) {
            return Ok(None);
        }
        let rows: usize = outs.iter().sum();
        let raw = RawFloat::concat(parts, vec![rows, in_features]);
        let weight = raw.to_device([rows, in_features], dtype, device)?;
        let bias = if bias {
            let mut all = Vec::with_capacity(rows);
            for (p, &o) in prefixes.iter().zip(outs) {
                let name = format!("{p}.bias");
                let b = source.host_tensor(&name)?;
                if b.shape != [o] {
                    return Err(ModelError::ShapeMismatch {
                        file: source.origin().to_path_buf(),
                        tensor: name,
                        expected: vec![o],
                        found: b.shape,
                    });
                }
                all.extend(b.data);
            }
            bias_tensor(Some(all), dtype, device)?
        } else {
            None
        };
        Ok(Some(Self {
            weight: Weight::Rows { weight, bias },
        }))
    }

    /// From a weight already in memory (`[out, in]`), e.g. tied embeddings.
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        let device = weight.device();
        if !host_kernels::<B>(&device) {
            return Self {
                weight: Weight::Rows { weight, bias: None },
            };
        }
        // Materialized once (a transposed view would be re-laid out by some backends per call).
        let dtype = weight.dtype();
        let weight_t = Tensor::from_data(weight.transpose().into_data(), (&device, dtype));
        Self {
            weight: Weight::Dense {
                weight_t,
                bias: None,
            },
        }
    }

    /// How the weight is held.
    pub fn format(&self) -> LinearFormat {
        match &self.weight {
            Weight::Dense { weight_t: w, .. } | Weight::Rows { weight: w, .. } => {
                LinearFormat::Dense(match w.dtype() {
                    DType::F16 => FloatDtype::F16,
                    DType::BF16 => FloatDtype::BF16,
                    _ => FloatDtype::F32,
                })
            }
            Weight::FourBit(l) => LinearFormat::FourBit {
                quant_type: l.meta.quant_type,
                double_quant: l.absmax_codes.is_some(),
                compute_dtype: l.meta.compute_dtype,
            },
            Weight::HostFourBit { q, .. } => LinearFormat::FourBit {
                quant_type: q.quant_type(),
                double_quant: q.is_nested(),
                compute_dtype: FloatDtype::F32,
            },
            Weight::Int8(_) | Weight::HostInt8 { .. } => LinearFormat::Int8,
        }
    }

    /// The weight `[out, in]` as the forward pass uses it (quantized ones dequantized exactly as
    /// bitsandbytes dequantizes them).
    pub fn weight(&self) -> Tensor<B, 2> {
        match &self.weight {
            Weight::Dense { weight_t, .. } => weight_t.clone().transpose(),
            Weight::Rows { weight, .. } => weight.clone(),
            Weight::FourBit(l) => l.weight(),
            Weight::Int8(l) => l.weight_f32(),
            Weight::HostFourBit { q, device, .. } => {
                host_matrix(dequantize_4bit(q), q.shape(), device)
            }
            Weight::HostInt8 { q, device, .. } => {
                host_matrix(q.dequantize(), &[q.rows(), q.cols()], device)
            }
        }
    }

    /// `[batch, seq, in]` -> `[batch, seq, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.weight {
            Weight::Dense { weight_t, bias } => {
                let [b, s, i] = x.dims();
                let y = x.reshape([b * s, i]).matmul(weight_t.clone());
                let y = match bias {
                    Some(bias) => y + bias.clone().unsqueeze::<2>(),
                    None => y,
                };
                let out = y.dims()[1];
                y.reshape([b, s, out])
            }
            Weight::Rows { weight, bias } => {
                let x = match kiln_quant::nn::dense_linear(x, weight, bias.as_ref()) {
                    Ok(y) => return y,
                    Err(x) => x,
                };
                let [b, s, i] = x.dims();
                let y = x.reshape([b * s, i]).matmul(weight.clone().transpose());
                let y = match bias {
                    Some(bias) => y + bias.clone().unsqueeze::<2>(),
                    None => y,
                };
                let out = y.dims()[1];
                y.reshape([b, s, out])
            }
            Weight::FourBit(l) => l.forward(x),
            Weight::HostFourBit { q, bias, device } => {
                let [b, s, _] = x.dims();
                let (tokens, out) = (b * s, q.shape()[0]);
                let y = q
                    .linear(&host_values(x), tokens, bias.as_deref())
                    .unwrap_or_else(|_| vec![f32::NAN; tokens * out]);
                Tensor::<B, 2>::from_data(TensorData::new(y, [tokens, out]), device)
                    .reshape([b, s, out])
            }
            Weight::HostInt8 {
                q,
                bias,
                threshold,
                device,
            } => {
                let [b, s, _] = x.dims();
                let tokens = b * s;
                // Only non-finite activations fail (shapes are fixed at load): they give NaN.
                let y = int8_linear(&host_values(x), tokens, q, bias.as_deref(), *threshold)
                    .unwrap_or_else(|_| vec![f32::NAN; tokens * q.rows()]);
                Tensor::<B, 2>::from_data(TensorData::new(y, [tokens, q.rows()]), device).reshape([
                    b,
                    s,
                    q.rows(),
                ])
            }
            Weight::Int8(l) => {
                // LLM.int8 runs on f32 activations here; the result comes back in x's dtype.
                let dtype = x.dtype();
                if dtype == DType::F32 {
                    l.forward(x)
                } else {
                    l.forward(x.cast(FloatDType::F32)).cast(dtype)
                }
            }
        }
    }
}

/// Whether the quantized layers use kiln-quant's CPU kernels (the backend computes on the host).
fn host_kernels<B: Backend>(device: &B::Device) -> bool {
    B::name(device) == "ndarray"
}

fn four_bit<B: Backend>(
    q: Quantized4bit,
    bias: Option<Vec<f32>>,
    dtype: FloatDtype,
    compute_dtype: FloatDtype,
    device: &B::Device,
) -> Result<Weight<B>, QuantError> {
    // The CPU backend computes in f32 only (the load checked the dtypes).
    if host_kernels::<B>(device) && compute_dtype == FloatDtype::F32 && dtype == FloatDtype::F32 {
        return Ok(Weight::HostFourBit {
            q: Arc::new(q),
            bias,
            device: device.clone(),
        });
    }
    let bias = bias.map(|b| {
        let n = b.len();
        Tensor::from_data(TensorData::new(b, [n]), (device, burn_dtype(dtype)))
    });
    Ok(Weight::FourBit(Linear4bit::from_quantized(
        &q,
        bias,
        compute_dtype,
        device,
    )?))
}

fn int8<B: Backend>(
    q: Int8Rowwise,
    bias: Option<Vec<f32>>,
    threshold: f64,
    device: &B::Device,
) -> Result<Weight<B>, QuantError> {
    if host_kernels::<B>(device) {
        if !(threshold >= 0.0 && threshold.is_finite()) {
            return Err(QuantError::InvalidConfig(format!(
                "int8 threshold must be >= 0, got {threshold}"
            )));
        }
        return Ok(Weight::HostInt8 {
            q: Arc::new(q),
            bias,
            threshold,
            device: device.clone(),
        });
    }
    Ok(Weight::Int8(Linear8bitLt::from_quantized(
        &q,
        int8_bias(bias, device),
        threshold,
        device,
    )?))
}

/// An int8 layer's bias, in the backend's default float dtype.
fn int8_bias<B: Backend>(bias: Option<Vec<f32>>, device: &B::Device) -> Option<Tensor<B, 1>> {
    bias.map(|b| {
        let n = b.len();
        Tensor::from_data(TensorData::new(b, [n]), device)
    })
}

/// bitsandbytes' dequantization: to the dtype the weight was quantized from, then widened.
fn dequantize_4bit(q: &Quantized4bit) -> Vec<f32> {
    match q.dtype() {
        FloatDtype::F32 => q.dequantize::<f32>(),
        FloatDtype::F16 => q.dequantize::<f16>().into_iter().map(f16::to_f32).collect(),
        FloatDtype::BF16 => q
            .dequantize::<bf16>()
            .into_iter()
            .map(bf16::to_f32)
            .collect(),
    }
}

/// The values of a `[.., in]` activation as f32 on the host (the CPU backend's own memory).
fn host_values<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.cast(FloatDType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap_or_default()
}

fn host_matrix<B: Backend>(data: Vec<f32>, shape: &[usize], device: &B::Device) -> Tensor<B, 2> {
    let (rows, cols) = (shape[0], shape.get(1).copied().unwrap_or(1));
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Whether transformers' bitsandbytes integration would quantize the Linear `weight_name`.
fn quantizes(weight_name: &str, shape: [usize; 2], config: &QuantConfig) -> bool {
    is_quantizable(weight_name, &shape, safetensors::Dtype::F32, config)
}

/// The compute dtype of a stored 4-bit layer: the one asked for, else the checkpoint's; a
/// checkpoint's choice the backend cannot compute in falls back to the model dtype (an explicit
/// request is an error instead).
fn stored_compute_dtype<B: Backend>(
    requested: Option<&QuantConfig>,
    stored: Option<&QuantConfig>,
    dtype: FloatDtype,
    device: &B::Device,
) -> Result<FloatDtype, ModelError> {
    if let Some(config) = requested {
        check_dtype::<B>(config.compute_dtype, device)?;
        return Ok(config.compute_dtype);
    }
    let compute = stored.map_or(FloatDtype::F32, |c| c.compute_dtype);
    if B::supports_dtype(device, burn_dtype(compute)) {
        Ok(compute)
    } else {
        Ok(dtype)
    }
}

fn dense<B: Backend>(
    data: Vec<f32>,
    out_features: usize,
    in_features: usize,
    bias: Option<Vec<f32>>,
    dtype: FloatDtype,
    device: &B::Device,
) -> Result<Weight<B>, ModelError> {
    // Transposed on the host, so the device holds a contiguous `[in, out]` matrix.
    let mut t = vec![0.0f32; data.len()];
    for (o, row) in data.chunks_exact(in_features.max(1)).enumerate() {
        for (i, &w) in row.iter().enumerate() {
            t[i * out_features + o] = w;
        }
    }
    drop(data);
    Ok(Weight::Dense {
        weight_t: float_tensor(t, [in_features, out_features], dtype, device)?,
        bias: bias_tensor(bias, dtype, device)?,
    })
}

fn bias_tensor<B: Backend>(
    bias: Option<Vec<f32>>,
    dtype: FloatDtype,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1>>, ModelError> {
    bias.map(|b| {
        let n = b.len();
        float_tensor(b, [n], dtype, device)
    })
    .transpose()
}

/// The weight in the load dtype, as transformers holds it before bitsandbytes quantizes it.
fn narrowed<T: Element>(data: Vec<f32>) -> Vec<T> {
    data.into_iter().map(T::from_f32).collect()
}

fn quantize_4bit(
    data: Vec<f32>,
    shape: &[usize],
    dtype: FloatDtype,
    c: &QuantConfig,
) -> Result<Quantized4bit, QuantError> {
    let (qt, bs, dq) = (c.quant_type, c.blocksize, c.double_quant);
    match dtype {
        FloatDtype::F32 => Quantized4bit::quantize(&data, shape, qt, bs, dq),
        FloatDtype::F16 => Quantized4bit::quantize(&narrowed::<f16>(data), shape, qt, bs, dq),
        FloatDtype::BF16 => Quantized4bit::quantize(&narrowed::<bf16>(data), shape, qt, bs, dq),
    }
}

fn quantize_int8(
    data: Vec<f32>,
    shape: &[usize; 2],
    dtype: FloatDtype,
) -> Result<Int8Rowwise, QuantError> {
    let [out, inp] = *shape;
    match dtype {
        FloatDtype::F32 => Int8Rowwise::quantize_weight(&data, out, inp),
        FloatDtype::F16 => Int8Rowwise::quantize_weight(&narrowed::<f16>(data), out, inp),
        FloatDtype::BF16 => Int8Rowwise::quantize_weight(&narrowed::<bf16>(data), out, inp),
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::*;

    type B = NdArray;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap_or_default()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
    }

    /// The CPU kernels and the generic burn modules are the same layer.
    #[test]
    fn host_kernels_equal_the_burn_modules() {
        let device = Default::default();
        let (out, inp) = (48, 128);
        let w = noise(out * inp, 1);
        let bias = noise(out, 2);
        let mut x = noise(2 * 3 * inp, 3);
        x[5] = 9.0; // an LLM.int8 outlier column
        let xt = || Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [2, 3, inp]), &device);
        let bias_t = Tensor::<B, 1>::from_data(TensorData::new(bias.clone(), [out]), &device);

        let q4 =
            Quantized4bit::quantize(&w, &[out, inp], FourBitType::Nf4, 64, true).expect("quantize");
        let host = Linear {
            weight: four_bit::<B>(
                q4.clone(),
                Some(bias.clone()),
                FloatDtype::F32,
                FloatDtype::F32,
                &device,
            )
            .expect("host"),
        };
        assert!(matches!(host.weight, Weight::HostFourBit { .. }));
        let generic = Linear {
            weight: Weight::FourBit(
                Linear4bit::from_quantized(&q4, Some(bias_t.clone()), FloatDtype::F32, &device)
                    .expect("module"),
            ),
        };
        assert_eq!(values(host.weight()), values(generic.weight()));
        assert!(close(
            &values(host.forward(xt())),
            &values(generic.forward(xt()))
        ));

        let q8 = Int8Rowwise::quantize_weight(&w, out, inp).expect("quantize");
        let host = Linear {
            weight: int8::<B>(q8.clone(), Some(bias), 6.0, &device).expect("host"),
        };
        assert!(matches!(host.weight, Weight::HostInt8 { .. }));
        let generic = Linear {
            weight: Weight::Int8(
                Linear8bitLt::from_quantized(&q8, Some(bias_t), 6.0, &device).expect("module"),
            ),
        };
        assert_eq!(host.format(), generic.format());
        assert_eq!(values(host.weight()), values(generic.weight()));
        assert!(close(
            &values(host.forward(xt())),
            &values(generic.forward(xt()))
        ));
    }
}
