//! CubeCL kernels for the codecs and the quantized Linear layers (features `cuda` / `wgpu`).
//!
//! Everything here runs on any CubeCL [`Runtime`]: the CUDA runtime on NVIDIA GPUs and the wgpu
//! runtime elsewhere (Vulkan, Metal, and Mesa's lavapipe on a CPU, where the tests run).
//!
//! - [`DeviceQuant4`]: a 4-bit weight on the device, laid out byte for byte as bitsandbytes
//!   stores it; [`DeviceQuant4::dequantize`] and the fused [`DeviceQuant4::gemv`] (1 to
//!   [`MAX_GEMV_ROWS`] rows) read the packed codes and the (double-quantized) absmax directly.
//! - [`quantize_4bit`]: NF4/FP4 quantization on the device, bit-identical to the CPU codec.
//! - [`DeviceInt8`] and [`DeviceInt8::linear`]: LLM.int8 for few rows, with the outlier columns
//!   in float.
//! - [`DeviceDense`] and [`DeviceDense::gemv`]: the plain f32/f16/bf16 GEMV for decode (1 to
//!   [`MAX_GEMV_ROWS`] rows), reading the weight as stored (`[out, in]`).
//! - [`cuda`] (CUDA only): a driver stream of kiln's own beside CubeCL's and the cuBLAS GEMM
//!   that larger products (prefill) take, on CubeCL's buffers.
//!
//! The burn modules ([`crate::nn::Linear4bit`], [`crate::nn::Linear8bitLt`]) call these
//! kernels when their backend is burn's CubeCL backend on CUDA or wgpu, and so does
//! [`crate::nn::dense_linear`] for plain weights.

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(all(test, feature = "cuda"))]
mod cuda_source;
mod dense;
mod dequant;
mod device;
mod gemv4;
mod int8;
mod quantize;

pub use dense::{DenseConfig, DeviceDense, MmaLaunch};
pub use device::{DeviceAbsmax, DeviceQuant4, GemvConfig, LutMode, MAX_GEMV_ROWS};
pub use int8::{DeviceInt8, Int8Config};
pub use quantize::{quantize_4bit, quantize_4bit_device, quantize_int8_device};

#[cfg(feature = "burn")]
pub(crate) mod burn_glue;

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// Runs `$body` with the type alias `$F` bound to the Rust type of a [`FloatDtype`].
macro_rules! with_float {
    ($dtype:expr, $F:ident => $body:expr) => {
        match $dtype {
            $crate::element::FloatDtype::F32 => {
                type $F = f32;
                $body
            }
            $crate::element::FloatDtype::F16 => {
                type $F = half::f16;
                $body
            }
            $crate::element::FloatDtype::BF16 => {
                type $F = half::bf16;
                $body
            }
        }
    };
}
pub(crate) use with_float;

/// Fails unless the device computes in `dtype` (wgpu has no bf16, and f16 only on some GPUs).
pub fn check_dtype<R: Runtime>(client: &ComputeClient<R>, dtype: FloatDtype) -> Result<()> {
    use cubecl::features::TypeUsage;
    let uses = with_float!(dtype, F => F::supported_uses(client));
    if uses.contains(TypeUsage::Arithmetic) && uses.contains(TypeUsage::Buffer) {
        Ok(())
    } else {
        Err(QuantError::Device(format!(
            "this {} device does not compute in {dtype}",
            R::name(client)
        )))
    }
}

/// Whether the fast paths may use plane (warp) operations: planes of exactly 32 units.
pub fn planes_of_32<R: Runtime>(client: &ComputeClient<R>) -> bool {
    use cubecl::ir::features::Plane;
    let props = client.properties();
    props.features.plane.contains(Plane::Ops)
        && props.hardware.plane_size_min == 32
        && props.hardware.plane_size_max == 32
}

/// A cube count for `cubes` cubes that respects the per-dimension limit; kernels index cubes by
/// `CUBE_POS` and skip the surplus of the rounded-up grid.
pub(crate) fn cube_count<R: Runtime>(client: &ComputeClient<R>, cubes: usize) -> CubeCount {
    let max_x = client.properties().hardware.max_cube_count.0.max(1) as usize;
    let cubes = cubes.max(1);
    if cubes <= max_x {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        let y = cubes.div_ceil(max_x);
        let x = cubes.div_ceil(y);
        CubeCount::Static(x as u32, y as u32, 1)
    }
}

/// Uploads bytes, padded with zeros to a multiple of `align` bytes (and at least `align`).
pub(crate) fn upload_padded<R: Runtime>(
    client: &ComputeClient<R>,
    bytes: &[u8],
    align: usize,
) -> Handle {
    let len = bytes.len().div_ceil(align).max(1) * align;
    if len == bytes.len() {
        client.create_from_slice(bytes)
    } else {
        let mut padded = Vec::with_capacity(len);
        padded.extend_from_slice(bytes);
        padded.resize(len, 0);
        client.create_from_slice(&padded)
    }
}

/// Uploads f32 values (at least one element, so that the buffer is never empty).
pub(crate) fn upload_f32<R: Runtime>(client: &ComputeClient<R>, values: &[f32]) -> Handle {
    upload_padded(client, bytemuck::cast_slice(values), 4)
}

/// Reads a device buffer back as `T` values (the first `len`).
pub fn read_back<R: Runtime, T: bytemuck::Pod>(
    client: &ComputeClient<R>,
    handle: Handle,
    len: usize,
) -> Result<Vec<T>> {
    let bytes = client
        .read_one(handle)
        .map_err(|e| QuantError::Device(format!("reading back a device buffer: {e:?}")))?;
    let size = std::mem::size_of::<T>();
    if bytes.len() < len * size {
        return Err(QuantError::Device(format!(
            "device buffer holds {} bytes, expected at least {}",
            bytes.len(),
            len * size
        )));
    }
    Ok(bytes[..len * size]
        .chunks_exact(size)
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

/// Reads back `len` elements of a float dtype, widened to f32.
pub fn read_back_f32<R: Runtime>(
    client: &ComputeClient<R>,
    handle: Handle,
    len: usize,
    dtype: FloatDtype,
) -> Result<Vec<f32>> {
    Ok(match dtype {
        FloatDtype::F32 => read_back::<R, f32>(client, handle, len)?,
        FloatDtype::F16 => read_back::<R, u16>(client, handle, len)?
            .into_iter()
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect(),
        FloatDtype::BF16 => read_back::<R, u16>(client, handle, len)?
            .into_iter()
            .map(|b| half::bf16::from_bits(b).to_f32())
            .collect(),
    })
}

/// Uploads f32 values converted to `dtype` (rounding to nearest even).
pub fn upload_as<R: Runtime>(
    client: &ComputeClient<R>,
    values: &[f32],
    dtype: FloatDtype,
) -> Handle {
    match dtype {
        FloatDtype::F32 => upload_f32(client, values),
        FloatDtype::F16 => {
            let bits: Vec<u16> = values
                .iter()
                .map(|v| half::f16::from_f32(*v).to_bits())
                .collect();
            upload_padded(client, bytemuck::cast_slice(&bits), 4)
        }
        FloatDtype::BF16 => {
            let bits: Vec<u16> = values
                .iter()
                .map(|v| half::bf16::from_f32(*v).to_bits())
                .collect();
            upload_padded(client, bytemuck::cast_slice(&bits), 4)
        }
    }
}

/// The largest vector width (elements) for `elem_bytes`-byte elements that divides `len` and
/// fits both a 16-byte load and the runtime's widest vector.
pub(crate) fn vector_width<R: Runtime>(
    client: &ComputeClient<R>,
    elem_bytes: usize,
    len: usize,
) -> usize {
    let max = client.properties().hardware.max_vector_size.max(1);
    let mut w = (16 / elem_bytes).min(max).max(1);
    while w > 1 && !len.is_multiple_of(w) {
        w /= 2;
    }
    w
}
