//! Burn modules: [`Linear4bit`] and [`Linear8bitLt`], generic over the backend.
//!
//! Both hold the quantized weight as bitsandbytes stores it and compute on plain burn tensor
//! ops, so they run on every backend; fused low-bit kernels plug in behind the same modules.
//! [`dense_linear`] is the same kind of fast path for a plain float weight.

mod linear4bit;
mod linear8bit;

use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor};

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) use linear4bit::cast as linear4bit_cast;
pub use linear4bit::{Linear4bit, Linear4bitMeta};
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) use linear8bit::row_words;
pub use linear8bit::{Linear8bitLt, Linear8bitMeta};

use crate::checkpoint::Checkpoint;
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// Packs bytes into little-endian 32-bit words (stored as i32 bit patterns), zero-padded to a
/// multiple of `align_words` words: the layout the device kernels read directly.
pub(crate) fn pack_words(bytes: &[u8], align_words: usize) -> Vec<i32> {
    let words = bytes.len().div_ceil(4).div_ceil(align_words).max(1) * align_words;
    let mut out = vec![0i32; words];
    for (w, chunk) in out.iter_mut().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = i32::from_le_bytes(b);
    }
    out
}

/// Packed 32-bit words as an int tensor on `device`: stored as `i32` where the backend has it
/// (4 bytes a word; the default int type of burn's CPU backend is 8 bytes wide).
pub(crate) fn words_tensor<B: Backend, const D: usize>(
    words: Vec<i32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    let dtype = if B::supports_dtype(device, DType::I32) {
        DType::I32
    } else {
        burn::tensor::get_device_settings::<B>(device)
            .int_dtype
            .into()
    };
    Tensor::from_data(burn::tensor::TensorData::new(words, shape), (device, dtype))
}

/// Unpacks the fields of `width` bits (8 or 4) of little-endian words, in the order given by
/// `shifts` within each word, into a flat tensor of `len` unsigned values in the backend's
/// default int type (usable as indices).
pub(crate) fn unpack_fields<B: Backend>(
    words: Tensor<B, 1, Int>,
    shifts: &[i64],
    mask: i64,
    len: usize,
) -> Tensor<B, 1, Int> {
    use burn::tensor::ElementConversion;
    let n = words.dims()[0];
    let index_dtype = burn::tensor::get_device_settings::<B>(&words.device()).int_dtype;
    let words = words.cast(index_dtype);
    let fields: Vec<Tensor<B, 1, Int>> = shifts
        .iter()
        .map(|&s| {
            words
                .clone()
                .bitwise_right_shift_scalar(s.elem())
                .bitwise_and_scalar(mask.elem())
        })
        .collect();
    Tensor::stack::<2>(fields, 1)
        .reshape([n * shifts.len()])
        .narrow(0, 0, len)
}

/// `y = x W^T + bias` on the device: the dense GEMV kernel for decode and, on burn's CUDA
/// backend, cuBLAS for more rows (prefill; when the library is found, see `gpu::cuda`), or
/// `Err(x)` (the input handed back untouched) when neither applies, for the caller to take its
/// own path, e.g.
/// `burn::tensor::module::linear(x, weight.transpose(), bias)`.
///
/// `weight` is `[out, in]` (as Hugging Face stores it, not burn's `[in, out]`), `x` is
/// `[..., in]`, `bias` is `[out]`; the result is `[..., out]` in x's dtype, accumulated in f32
/// and rounded once. The kernel applies when the backend is burn's CubeCL backend on CUDA or
/// wgpu (features `cuda` / `wgpu`), x has 1 to 16 rows (`gpu::MAX_GEMV_ROWS`; the product of
/// its leading dimensions; more go to cuBLAS), x, weight and bias share one dtype of f32, f16 and bf16 that the
/// device computes in, and the weight is a row-major float tensor (rows may be padded, as
/// burn's CUDA backend pads some; a transposed view is not row-major): it is read where it
/// lies, never copied (x is made contiguous when it is not).
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::{Tensor, module::linear};
///
/// let device = Default::default();
/// let weight = Tensor::<NdArray, 2>::ones([3, 4], &device);
/// let x = Tensor::<NdArray, 3>::ones([1, 1, 4], &device);
/// // No kernel on the CPU backend: the input comes back for the reference path.
/// let y = kiln_quant::nn::dense_linear(x, &weight, None)
///     .unwrap_or_else(|x| linear(x, weight.clone().transpose(), None));
/// assert_eq!(y.dims(), [1, 1, 3]);
/// ```
pub fn dense_linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> std::result::Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        crate::gpu::burn_glue::dense_forward(x, weight, bias)
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        let _ = (weight, bias);
        Err(x)
    }
}

/// burn's float dtype for a kiln dtype.
pub fn compute_float_dtype(dtype: FloatDtype) -> FloatDType {
    match dtype {
        FloatDtype::F32 => FloatDType::F32,
        FloatDtype::F16 => FloatDType::F16,
        FloatDtype::BF16 => FloatDType::BF16,
    }
}

/// A burn Linear weight `[in, out]` as row-major `[out, in]` f32 values, with `(out, in)`.
fn linear_weight_to_rows<B: Backend>(weight: &Tensor<B, 2>) -> Result<(Vec<f32>, usize, usize)> {
    let [d_in, d_out] = weight.dims();
    let data = weight.clone().transpose().into_data();
    let rows: Vec<f32> = match data.dtype {
        DType::F32 => data.to_vec::<f32>(),
        _ => data.convert::<f32>().to_vec::<f32>(),
    }
    .map_err(|e| QuantError::bad_tensor("Linear weight", format!("{e:?}")))?;
    Ok((rows, d_out, d_in))
}

/// The biases of layers joined side by side, one after the other (`None` when the first has
/// none; the callers check that all have one or none).
fn concat_bias<'a, B: Backend>(
    mut biases: impl Iterator<Item = Option<&'a burn::module::Param<Tensor<B, 1>>>>,
) -> Option<burn::module::Param<Tensor<B, 1>>> {
    let first = biases.next()??.val();
    let rest = biases.flatten().map(|b| b.val());
    Some(burn::module::Param::from_tensor(Tensor::cat(
        std::iter::once(first).chain(rest).collect(),
        0,
    )))
}

/// Reads `module.bias` from a checkpoint, if present, as an f32 tensor.
fn read_bias<B: Backend>(
    checkpoint: &mut Checkpoint,
    module: &str,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1>>> {
    let name = format!("{module}.bias");
    if !checkpoint.files().contains(&name) {
        return Ok(None);
    }
    let values = checkpoint.tensor(&name)?.to_f32_vec(&name)?;
    let n = values.len();
    Ok(Some(Tensor::from_data(
        burn::tensor::TensorData::new(values, [n]),
        device,
    )))
}
