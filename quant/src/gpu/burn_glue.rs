//! The bridge from the burn modules to the kernels: when the backend's tensors are CubeCL
//! tensors of the CUDA or wgpu runtime, the module's own tensors are handed to the kernels
//! without copies; any other backend keeps the reference path.

use std::any::{Any, TypeId};

use burn::prelude::Backend;
use burn::tensor::{DType, Int, Shape, Tensor, TensorPrimitive};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::ComputeClient;
use cubecl::server::Handle;

use super::{DeviceAbsmax, DeviceDense, DeviceInt8, DeviceQuant4, MAX_GEMV_ROWS, check_dtype};
use crate::element::FloatDtype;
use crate::nn::{Linear4bit, Linear8bitLt, compute_float_dtype};

/// Moves `v` into a `U` when `T` is `U`.
fn same_type<T: 'static, U: 'static>(v: T) -> Result<U, T> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(v);
    }
    let boxed: Box<dyn Any> = Box::new(v);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(_) => unreachable!("the type ids are equal"),
    }
}

/// Whether `B`'s float tensors are CubeCL tensors of runtime `R`.
fn is_cube<B: Backend, R: CubeRuntime>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
        && TypeId::of::<B::IntTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
}

fn float_cube<B: Backend, R: CubeRuntime, const D: usize>(
    t: Tensor<B, D>,
) -> Option<CubeTensor<R>> {
    same_type::<_, CubeTensor<R>>(t.into_primitive().tensor())
        .ok()
        .map(into_contiguous)
}

fn int_cube<B: Backend, R: CubeRuntime, const D: usize>(
    t: Tensor<B, D, Int>,
) -> Option<CubeTensor<R>> {
    let c = same_type::<_, CubeTensor<R>>(t.into_primitive()).ok()?;
    // The kernels read the words as 32-bit integers.
    matches!(c.dtype, DType::I32 | DType::U32).then(|| into_contiguous(c))
}

fn f32_cube<B: Backend, R: CubeRuntime, const D: usize>(t: Tensor<B, D>) -> Option<CubeTensor<R>> {
    float_cube::<B, R, D>(t).filter(|c| c.dtype == DType::F32)
}

fn to_tensor<B: Backend, R: CubeRuntime, const D: usize>(c: CubeTensor<R>) -> Option<Tensor<B, D>> {
    let p = same_type::<_, B::FloatTensorPrimitive>(c).ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(p)))
}

fn kiln_dtype(dtype: DType) -> Option<FloatDtype> {
    match dtype {
        DType::F32 => Some(FloatDtype::F32),
        DType::F16 => Some(FloatDtype::F16),
        DType::BF16 => Some(FloatDtype::BF16),
        _ => None,
    }
}

fn burn_dtype(dtype: FloatDtype) -> DType {
    compute_float_dtype(dtype).into()
}

/// `Linear4bit::forward` on the device; `Err(x)` hands the input back for the reference path.
pub(crate) fn linear4bit_forward<B: Backend, const D: usize>(
    layer: &Linear4bit<B>,
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return linear4bit_on::<B, cubecl::cuda::CudaRuntime, D>(layer, x.clone()).ok_or(x);
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return linear4bit_on::<B, cubecl::wgpu::WgpuRuntime, D>(layer, x.clone()).ok_or(x);
    }
    Err(x)
}

/// The layer's device buffers as a [`DeviceQuant4`], with their client and device.
fn device_quant4<B: Backend, R: CubeRuntime>(
    layer: &Linear4bit<B>,
) -> Option<(DeviceQuant4, ComputeClient<R>, R::Device)> {
    let meta = &layer.meta;
    let packed = int_cube::<B, R, 1>(layer.packed.clone())?;
    let client = packed.client.clone();
    let device = packed.device.clone();
    let absmax = match (
        &layer.absmax_codes,
        &layer.nested_absmax,
        &layer.nested_code,
    ) {
        (Some(codes), Some(nested), Some(code)) => DeviceAbsmax::Nested {
            codes: int_cube::<B, R, 1>(codes.clone())?.handle,
            absmax: f32_cube::<B, R, 1>(nested.clone())?.handle,
            code: f32_cube::<B, R, 1>(code.clone())?.handle,
            offset: meta.nested_offset,
        },
        _ => DeviceAbsmax::Plain(f32_cube::<B, R, 1>(layer.absmax.clone())?.handle),
    };
    let weight = DeviceQuant4 {
        packed: packed.handle,
        absmax,
        code: f32_cube::<B, R, 1>(layer.code.clone())?.handle,
        quant_type: meta.quant_type,
        blocksize: meta.blocksize,
        shape: vec![meta.out_features, meta.in_features],
    };
    Some((weight, client, device))
}

/// [`Linear4bit::absmax_f32`] by one kernel that computes nested ones as the GEMV does; `None`
/// on other backends, `Some(Err)` when the kernel cannot run.
pub(crate) fn linear4bit_absmax<B: Backend>(
    layer: &Linear4bit<B>,
) -> Option<crate::Result<Tensor<B, 1>>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return linear4bit_absmax_on::<B, cubecl::cuda::CudaRuntime>(layer);
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return linear4bit_absmax_on::<B, cubecl::wgpu::WgpuRuntime>(layer);
    }
    let _ = layer;
    None
}

fn linear4bit_absmax_on<B: Backend, R: CubeRuntime>(
    layer: &Linear4bit<B>,
) -> Option<crate::Result<Tensor<B, 1>>> {
    let (weight, client, device) = device_quant4::<B, R>(layer)?;
    let blocks = weight.numel().div_ceil(weight.blocksize.max(1));
    let handle = match weight.absmax_f32(&client) {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    let t = CubeTensor::new_contiguous(client, device, Shape::new([blocks]), handle, DType::F32);
    to_tensor::<B, R, 1>(t).map(Ok)
}

fn linear4bit_on<B: Backend, R: CubeRuntime, const D: usize>(
    layer: &Linear4bit<B>,
    x: Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let meta = &layer.meta;
    let dims = x.dims();
    let tokens: usize = dims[..D - 1].iter().product();
    let (n, k) = (meta.out_features, meta.in_features);
    if tokens == 0 || n == 0 || k == 0 || dims[D - 1] != k {
        return None;
    }
    let in_dtype = x.dtype();
    let compute = meta.compute_dtype;

    let (weight, client, device) = device_quant4::<B, R>(layer)?;
    check_dtype(&client, compute).ok()?;

    let x2 = crate::nn::linear4bit_cast(x.reshape([tokens, k]), compute);
    let bias = layer
        .bias
        .as_ref()
        .map(|b| crate::nn::linear4bit_cast(b.val(), compute));
    let y: Tensor<B, 2> = if tokens <= MAX_GEMV_ROWS && weight.gemv_supported() {
        let xc = float_cube::<B, R, 2>(x2)?;
        let bias = match bias {
            Some(b) => Some(float_cube::<B, R, 1>(b)?.handle),
            None => None,
        };
        let out = weight
            .gemv(&client, &xc.handle, tokens, compute, bias.as_ref())
            .ok()?;
        to_tensor::<B, R, 2>(CubeTensor::new_contiguous(
            client,
            device,
            Shape::new([tokens, n]),
            out,
            burn_dtype(compute),
        ))?
    } else {
        // Prefill: dequantize on the device (to the weight's own dtype first, as bitsandbytes
        // does), then burn's matmul. An f32 weight goes straight to the compute dtype: the
        // kernel rounds its f32 product once either way, so the values are the same.
        let wdtype = if meta.weight_dtype == FloatDtype::F32
            || meta.weight_dtype == compute
            || check_dtype(&client, meta.weight_dtype).is_err()
        {
            compute
        } else {
            meta.weight_dtype
        };
        let w = weight.dequantize(&client, wdtype).ok()?;
        let w = to_tensor::<B, R, 2>(CubeTensor::new_contiguous(
            client,
            device,
            Shape::new([n, k]),
            w,
            burn_dtype(wdtype),
        ))?;
        let w = crate::nn::linear4bit_cast(w, compute);
        match gemm_rows(x2.clone(), &w, bias.as_ref()) {
            Some(y) => y,
            None => burn::tensor::module::linear(x2, w.transpose(), bias),
        }
    };
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    let y = y.reshape(out_dims);
    Some(if y.dtype() == in_dtype {
        y
    } else {
        y.cast(in_dtype)
    })
}

/// `Linear8bitLt::forward` on the device for up to [`MAX_GEMV_ROWS`] rows; `Err(x)` hands the
/// input back for the reference path.
pub(crate) fn linear8bit_forward<B: Backend, const D: usize>(
    layer: &Linear8bitLt<B>,
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return linear8bit_on::<B, cubecl::cuda::CudaRuntime, D>(layer, x.clone()).ok_or(x);
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return linear8bit_on::<B, cubecl::wgpu::WgpuRuntime, D>(layer, x.clone()).ok_or(x);
    }
    Err(x)
}

fn linear8bit_on<B: Backend, R: CubeRuntime, const D: usize>(
    layer: &Linear8bitLt<B>,
    x: Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let meta = &layer.meta;
    let dims = x.dims();
    let tokens: usize = dims[..D - 1].iter().product();
    let (n, k) = (meta.out_features, meta.in_features);
    if tokens == 0 || tokens > MAX_GEMV_ROWS || n == 0 || k == 0 || dims[D - 1] != k {
        return None;
    }
    let dtype = kiln_dtype(x.dtype())?;
    let w = int_cube::<B, R, 2>(layer.weight.clone())?;
    let client = w.client.clone();
    let device = w.device.clone();
    check_dtype(&client, dtype).ok()?;
    let weight = DeviceInt8 {
        weight: w.handle,
        scb: f32_cube::<B, R, 1>(layer.scb.clone())?.handle,
        rows: n,
        cols: k,
    };
    let xc = float_cube::<B, R, 2>(x.reshape([tokens, k]))?;
    let bias = match &layer.bias {
        Some(b) => {
            let b = b.val();
            let b = if b.dtype() == burn_dtype(dtype) {
                b
            } else {
                b.cast(compute_float_dtype(dtype))
            };
            Some(float_cube::<B, R, 1>(b)?.handle)
        }
        None => None,
    };
    let out = weight
        .linear(
            &client,
            &xc.handle,
            tokens,
            dtype,
            bias.as_ref(),
            meta.threshold,
        )
        .ok()?;
    let y = to_tensor::<B, R, 2>(CubeTensor::new_contiguous(
        client,
        device,
        Shape::new([tokens, n]),
        out,
        burn_dtype(dtype),
    ))?;
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    Some(y.reshape(out_dims))
}

/// [`crate::nn::dense_linear`] on the device; `Err(x)` hands the input back for the caller's
/// matmul.
pub(crate) fn dense_forward<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return dense_on::<B, cubecl::cuda::CudaRuntime, D>(x.clone(), weight, bias).ok_or(x);
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return dense_on::<B, cubecl::wgpu::WgpuRuntime, D>(x.clone(), weight, bias).ok_or(x);
    }
    Err(x)
}

/// The weight's own device tensor, as it lies in memory (never copied), and the elements from
/// one row to the next: `None` when it is not a plain float tensor of runtime `R` with rows of
/// consecutive elements, each after the last (row-major, possibly with padded rows).
fn dense_weight<B: Backend, R: CubeRuntime>(
    weight: &Tensor<B, 2>,
) -> Option<(CubeTensor<R>, usize)> {
    let TensorPrimitive::Float(p) = weight.clone().into_primitive() else {
        return None;
    };
    let c = same_type::<_, CubeTensor<R>>(p).ok()?;
    let (shape, strides) = (c.meta.shape(), c.meta.strides());
    let (&[n, k], &[row, col]) = (&shape[..], &strides[..]) else {
        return None;
    };
    let row_stride = if n == 1 { k } else { row };
    (k == 1 || col == 1)
        .then_some(row_stride)
        .filter(|ld| *ld >= k)
        .map(|ld| (c, ld))
}

fn dense_on<B: Backend, R: CubeRuntime, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, D>> {
    if D == 0 {
        return None;
    }
    let dims = x.dims();
    let [n, k] = weight.dims();
    let tokens: usize = dims[..D - 1].iter().product();
    if tokens == 0 || n == 0 || k == 0 || dims[D - 1] != k {
        return None;
    }
    let burn_dtype = x.dtype();
    let dtype = kiln_dtype(burn_dtype)?;
    if weight.dtype() != burn_dtype || x.device() != weight.device() {
        return None;
    }
    if let Some(b) = bias
        && (b.dims() != [n] || b.dtype() != burn_dtype || b.device() != weight.device())
    {
        return None;
    }
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    if tokens > MAX_GEMV_ROWS {
        let y = gemm_rows(x.reshape([tokens, k]), weight, bias)?;
        return Some(y.reshape(out_dims));
    }
    let (w, row_stride) = dense_weight::<B, R>(weight)?;
    let client = w.client.clone();
    let device = w.device.clone();
    check_dtype(&client, dtype).ok()?;
    let layer = DeviceDense {
        weight: w.handle,
        rows: n,
        cols: k,
        row_stride,
        dtype,
    };
    let xc = float_cube::<B, R, 2>(x.reshape([tokens, k]))?;
    let bias = match bias {
        Some(b) => Some(float_cube::<B, R, 1>(b.clone())?.handle),
        None => None,
    };
    let out = layer
        .gemv(&client, &xc.handle, tokens, bias.as_ref())
        .ok()?;
    let y = to_tensor::<B, R, 2>(CubeTensor::new_contiguous(
        client,
        device,
        Shape::new([tokens, n]),
        out,
        burn_dtype,
    ))?;
    Some(y.reshape(out_dims))
}

/// `x · weightᵀ (+ bias)` for many rows (prefill) through cuBLAS when the backend is burn's
/// CUDA one and cuBLAS is there (see [`super::cuda`]); `None` otherwise, for the caller's
/// matmul. `x` and `weight` share a float dtype.
fn gemm_rows<B: Backend>(
    x: Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        use cubecl::cuda::CudaRuntime;
        let [tokens, k] = x.dims();
        let dtype = kiln_dtype(x.dtype())?;
        let (w, ldw) = dense_weight::<B, CudaRuntime>(weight)?;
        let [n, wk] = weight.dims();
        if wk != k || w.dtype != x.dtype() || !super::cuda::cublas_available(w.device.index) {
            return None;
        }
        let xc = float_cube::<B, CudaRuntime, 2>(x)?;
        let out = super::cuda::gemm_nt(
            &w.client,
            w.device.index,
            &xc.handle,
            &w.handle,
            tokens,
            n,
            k,
            ldw,
            dtype,
        )?;
        let y = to_tensor::<B, CudaRuntime, 2>(CubeTensor::new_contiguous(
            w.client.clone(),
            w.device.clone(),
            Shape::new([tokens, n]),
            out,
            xc.dtype,
        ))?;
        return Some(match bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        });
    }
    let _ = (x, weight, bias);
    None
}

fn int_tensor_of<B: Backend, R: CubeRuntime>(c: CubeTensor<R>) -> Option<Tensor<B, 1, Int>> {
    let p = same_type::<_, B::IntTensorPrimitive>(c).ok()?;
    Some(Tensor::from_primitive(p))
}

/// [`Linear4bit::quantize`] on the device: `None` when the backend or the weight's dtype does
/// not allow the kernels (the caller quantizes on the host).
pub(crate) fn linear4bit_quantize<B: Backend>(
    weight: &Tensor<B, 2>,
    bias: &Option<Tensor<B, 1>>,
    quant_type: crate::codec::FourBitType,
    blocksize: usize,
    double_quant: bool,
    compute_dtype: FloatDtype,
) -> Option<crate::Result<Linear4bit<B>>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return linear4bit_quantize_on::<B, cubecl::cuda::CudaRuntime>(
            weight,
            bias,
            quant_type,
            blocksize,
            double_quant,
            compute_dtype,
        );
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return linear4bit_quantize_on::<B, cubecl::wgpu::WgpuRuntime>(
            weight,
            bias,
            quant_type,
            blocksize,
            double_quant,
            compute_dtype,
        );
    }
    let _ = (
        weight,
        bias,
        quant_type,
        blocksize,
        double_quant,
        compute_dtype,
    );
    None
}

fn linear4bit_quantize_on<B: Backend, R: CubeRuntime>(
    weight: &Tensor<B, 2>,
    bias: &Option<Tensor<B, 1>>,
    quant_type: crate::codec::FourBitType,
    blocksize: usize,
    double_quant: bool,
    compute_dtype: FloatDtype,
) -> Option<crate::Result<Linear4bit<B>>> {
    let [n, k] = weight.dims();
    let c = float_cube::<B, R, 2>(weight.clone())?;
    let wdtype = kiln_dtype(c.dtype)?;
    let (client, device) = (c.client.clone(), c.device.clone());
    check_dtype(&client, wdtype).ok()?;
    let q = match super::quantize_4bit_device(
        &client,
        &c.handle,
        wdtype,
        &[n, k],
        quant_type,
        blocksize,
        double_quant,
    ) {
        Ok(q) => q,
        Err(e) => return Some(Err(e)),
    };
    let floats = |h: Handle, len: usize| {
        to_tensor::<B, R, 1>(CubeTensor::new_contiguous(
            client.clone(),
            device.clone(),
            Shape::new([len]),
            h,
            DType::F32,
        ))
    };
    // Lengths from the shapes: a buffer may be larger than asked for (the allocator rounds).
    let words = |h: Handle, len: usize| {
        int_tensor_of::<B, R>(CubeTensor::new_contiguous(
            client.clone(),
            device.clone(),
            Shape::new([len]),
            h,
            DType::I32,
        ))
    };
    let blocks = (n * k).div_ceil(blocksize);
    let (absmax, absmax_codes, nested_absmax, nested_code, nested_offset) = match q.absmax {
        DeviceAbsmax::Plain(a) => (floats(a, blocks)?, None, None, None, 0.0),
        DeviceAbsmax::Nested {
            codes,
            absmax,
            code,
            offset,
        } => {
            let groups = blocks.div_ceil(crate::codec::NESTED_BLOCKSIZE);
            (
                Tensor::<B, 1>::from_data(
                    burn::tensor::TensorData::new(Vec::<f32>::new(), [0]),
                    &weight.device(),
                ),
                Some(words(codes, blocks.div_ceil(4))?),
                Some(floats(absmax, groups)?),
                Some(floats(code, 256)?),
                offset,
            )
        }
    };
    Some(Ok(Linear4bit {
        packed: words(q.packed, (n * k).div_ceil(32).max(1) * 4)?,
        absmax,
        absmax_codes,
        nested_absmax,
        nested_code,
        code: floats(q.code, 16)?,
        bias: bias.clone().map(burn::module::Param::from_tensor),
        meta: crate::nn::Linear4bitMeta {
            quant_type,
            blocksize,
            weight_dtype: wdtype,
            compute_dtype,
            in_features: k,
            out_features: n,
            nested_offset,
        },
    }))
}

/// [`Linear8bitLt::quantize`] on the device: `None` when the backend does not run the kernels
/// (the caller quantizes on the host).
pub(crate) fn linear8bit_quantize<B: Backend>(
    weight: &Tensor<B, 2>,
    bias: &Option<Tensor<B, 1>>,
    threshold: f64,
) -> Option<crate::Result<Linear8bitLt<B>>> {
    #[cfg(feature = "cuda")]
    if is_cube::<B, cubecl::cuda::CudaRuntime>() {
        return linear8bit_quantize_on::<B, cubecl::cuda::CudaRuntime>(weight, bias, threshold);
    }
    #[cfg(feature = "wgpu")]
    if is_cube::<B, cubecl::wgpu::WgpuRuntime>() {
        return linear8bit_quantize_on::<B, cubecl::wgpu::WgpuRuntime>(weight, bias, threshold);
    }
    let _ = (weight, bias, threshold);
    None
}

fn linear8bit_quantize_on<B: Backend, R: CubeRuntime>(
    weight: &Tensor<B, 2>,
    bias: &Option<Tensor<B, 1>>,
    threshold: f64,
) -> Option<crate::Result<Linear8bitLt<B>>> {
    let [n, k] = weight.dims();
    // `Int8Params` casts the weight to f16 first; the cast rounds once, as torch's does.
    let f16_weight = if weight.dtype() == DType::F16 {
        weight.clone()
    } else {
        weight.clone().cast(burn::tensor::FloatDType::F16)
    };
    let c = float_cube::<B, R, 2>(f16_weight)?;
    let (client, device) = (c.client.clone(), c.device.clone());
    check_dtype(&client, FloatDtype::F16).ok()?;
    let q = match super::quantize_int8_device(&client, &c.handle, FloatDtype::F16, n, k) {
        Ok(q) => q,
        Err(e) => return Some(Err(e)),
    };
    let row_words = crate::nn::row_words(k);
    let words = same_type::<_, B::IntTensorPrimitive>(CubeTensor::new_contiguous(
        client.clone(),
        device.clone(),
        Shape::new([n, row_words]),
        q.weight,
        DType::I32,
    ))
    .ok()?;
    let scb = to_tensor::<B, R, 1>(CubeTensor::new_contiguous(
        client,
        device,
        Shape::new([n]),
        q.scb,
        DType::F32,
    ))?;
    Some(Linear8bitLt::from_device_parts(
        Tensor::from_primitive(words),
        scb,
        bias.clone(),
        threshold,
        k,
    ))
}
