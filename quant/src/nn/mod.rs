//! Burn modules: [`Linear4bit`] and [`Linear8bitLt`], generic over the backend.
//!
//! Both hold the quantized weight as bitsandbytes stores it and compute on plain burn tensor
//! ops, so they run on every backend; fused low-bit kernels plug in behind the same modules.

mod linear4bit;
mod linear8bit;

use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

pub use linear4bit::{Linear4bit, Linear4bitMeta};
pub use linear8bit::{Linear8bitLt, Linear8bitMeta};

use crate::checkpoint::Checkpoint;
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// burn's float dtype for a kiln dtype.
pub fn compute_float_dtype(dtype: FloatDtype) -> FloatDType {
    match dtype {
        FloatDtype::F32 => FloatDType::F32,
        FloatDtype::F16 => FloatDType::F16,
        FloatDtype::BF16 => FloatDType::BF16,
    }
}

/// `dtype` (a narrow int type for stored codes) where the backend supports it, else the
/// device's default int type.
fn compact_int<B: Backend>(device: &B::Device, dtype: DType) -> DType {
    if B::supports_dtype(device, dtype) {
        dtype
    } else {
        burn::tensor::get_device_settings::<B>(device)
            .int_dtype
            .into()
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
