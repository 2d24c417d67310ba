//! One-launch CubeCL kernels for the elementwise work of a decoder layer: RMSNorm (optionally
//! after the residual add), RoPE, and the gated MLP's `act(gate) * up`.
//!
//! Without fusion, burn's CubeCL backends launch one kernel per tensor op: an RMSNorm is up to
//! nine launches, a RoPE six, a SiLU-gated product up to ten. With the `cuda` or `wgpu` feature, and
//! when the backend's tensors are CubeCL tensors of that runtime, each of these runs as one
//! kernel here. Every entry point hands its inputs back (`Err`) when the backend is another one
//! or the inputs are in a form the kernels do not take (dtype other than f32/f16/bf16, mixed
//! dtypes, odd head size, more than 2^32 elements); the caller then runs its burn-op path,
//! which stays the reference and the only path on every other backend.
//!
//! Numerics, against the burn-op path:
//! - RMSNorm: the input widened to f32, the mean of squares summed in f32 (in another order),
//!   `1 / sqrt(mean + eps)`, the product rounded to the input dtype and then multiplied by the
//!   weight in that dtype (transformers' `weight * hidden.to(input_dtype)`). The residual sum
//!   is rounded to the dtype before it is normalized, as the unfused add writes it.
//! - RoPE: `x * cos` and `rotate_half(x) * sin` each rounded to the activations' dtype, then
//!   their sum rounded, as the burn-op path and transformers compute in that dtype. The kernel
//!   computes in f32 and rounds after every operation; f32 has more than twice the precision
//!   of f16 and bf16 plus two bits, so each result is the one native half arithmetic gives.
//! - Gated activation: `act(gate)` in f32, rounded once to the dtype (as torch's half `silu`
//!   and `gelu` kernels do; burn's op chain rounds after each of its steps), then multiplied
//!   by `up` and rounded. GELU-tanh as `x * sigmoid(2u)`, which equals
//!   `0.5 x (1 + tanh(u))` and does not cancel for negative `x`.

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod argmax;
#[cfg(all(test, feature = "cuda"))]
mod cuda_source;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod gated;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod glue;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod norm;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod rope;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod rope_append;
#[cfg(all(test, any(feature = "cuda", feature = "wgpu")))]
mod tests;
#[cfg(feature = "cuda")]
mod upload;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::nn::Activation;

/// Evaluates `$body` with the type `$R` set to the CubeCL runtime behind `$B`'s float tensors
/// and returns its value from the enclosing function; does nothing when there is none.
macro_rules! on_cube_runtime {
    ($B:ty, $R:ident => $body:expr) => {
        #[cfg(feature = "cuda")]
        if glue::is_cube::<$B, cubecl::cuda::CudaRuntime>() {
            type $R = cubecl::cuda::CudaRuntime;
            return $body;
        }
        #[cfg(feature = "wgpu")]
        if glue::is_cube::<$B, cubecl::wgpu::WgpuRuntime>() {
            type $R = cubecl::wgpu::WgpuRuntime;
            return $body;
        }
    };
}

/// What the CubeCL allocator of `device` holds now: `(bytes in use, bytes reserved)`; `None`
/// on backends that are not CubeCL ones (ndarray).
pub fn device_memory<B: Backend>(device: &B::Device) -> Option<(u64, u64)> {
    on_cube_runtime!(B, R => glue::memory_usage::<B, R>(device));
    let _ = device;
    None
}

/// Hands the memory that the CubeCL allocator of `device` holds but no tensor uses back to
/// the driver; nothing on other backends. A quantizing load calls it after each layer: the
/// float weight a layer was quantized from is free then, and the allocator's pools would
/// otherwise keep every such buffer they grew to hold.
pub(crate) fn release_unused_memory<B: Backend>(device: &B::Device) {
    on_cube_runtime!(B, R => glue::memory_cleanup::<B, R>(device));
    let _ = device;
}

/// Writes the bytes from an offset on into a chunk (see [`upload`]).
pub(crate) type Fill<'a> = dyn FnMut(usize, &mut [u8]) -> Result<(), crate::ModelError> + 'a;

/// A 1-D tensor of `len` bytes of `dtype` on `device`, its bytes written by `fill(offset,
/// chunk)` chunk after chunk straight into page-locked staging buffers and copied from there
/// (CUDA; see `upload.rs`); `None` on other backends, where the caller uploads through burn.
pub(crate) fn upload<B: Backend>(
    len: usize,
    dtype: burn::tensor::DType,
    device: &B::Device,
    fill: &mut Fill<'_>,
) -> Option<Result<Tensor<B, 1>, crate::ModelError>> {
    #[cfg(feature = "cuda")]
    {
        upload::upload::<B>(len, dtype, device, fill)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (len, dtype, device, fill);
        None
    }
}

/// RMSNorm of `x` over its last dimension with `weight` (`[dim]`, `x`'s dtype), in one launch;
/// `Err(x)` where the kernel does not run.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    on_cube_runtime!(B, R => glue::rms_norm::<B, R, D>(&x, None, weight, eps)
        .map(|(normed, _)| normed)
        .ok_or(x));
    let _ = (weight, eps);
    Err(x)
}

/// `residual + x` and its RMSNorm, in one launch: `(sum, normed)`; `Err((residual, x))` where
/// the kernel does not run.
#[allow(clippy::type_complexity)]
pub(crate) fn add_rms_norm<B: Backend, const D: usize>(
    residual: Tensor<B, D>,
    x: Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Result<(Tensor<B, D>, Tensor<B, D>), (Tensor<B, D>, Tensor<B, D>)> {
    on_cube_runtime!(B, R => match glue::rms_norm::<B, R, D>(&x, Some(&residual), weight, eps) {
        Some((normed, Some(sum))) => Ok((sum, normed)),
        _ => Err((residual, x)),
    });
    let _ = (weight, eps);
    Err((residual, x))
}

/// RoPE in HF's `rotate_half` layout of `x` (`[batch, heads, seq, head_dim]`, any strides)
/// with `cos`/`sin` tables `[batch or 1, 1, seq, head_dim]`, in one launch; `Err(x)` where
/// the kernel does not run.
pub(crate) fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    on_cube_runtime!(B, R => glue::rope::<B, R>(&x, cos, sin).ok_or(x));
    let _ = (cos, sin);
    Err(x)
}

/// What [`rope_append()`] gives: `(q, k_cache, v_cache)`, or its five inputs back.
pub(crate) type RopeAppend<B> = Result<
    (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>),
    (
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4>,
        Tensor<B, 4>,
    ),
>;

/// RoPE of `q` into a new tensor, and of `k` plus `v` into the KV cache buffers at `start`
/// (in place), in one launch: `(q, k_cache, v_cache)`; everything back (`Err`) where the
/// kernel does not run. See [`RopeTables::apply_and_append`](crate::nn::RopeTables).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(crate) fn rope_append<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    k_cache: Tensor<B, 4>,
    v_cache: Tensor<B, 4>,
    start: usize,
) -> RopeAppend<B> {
    on_cube_runtime!(B, R => glue::rope_append::<B, R>(q, k, v, cos, sin, k_cache, v_cache, start));
    let _ = (cos, sin, start);
    Err((q, k, v, k_cache, v_cache))
}

/// `act(gate) * up` for tensors of one shape and dtype, in one launch; `Err((gate, up))`
/// where the kernel does not run.
#[allow(clippy::type_complexity)]
pub(crate) fn gated<B: Backend, const D: usize>(
    activation: Activation,
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    on_cube_runtime!(B, R => glue::gated::<B, R, D>(activation, &gate, &up).ok_or((gate, up)));
    let _ = activation;
    Err((gate, up))
}

/// Each row's (last dimension's) index of its first largest value, as `argmax`, and whether
/// the row holds a NaN, in one launch and one read of `2 * rows` words: greedy decoding's
/// choice. `None` where the kernel does not run; `Some(Err)` when the device could not be read.
pub(crate) fn argmax_rows<B: Backend, const D: usize>(
    logits: &Tensor<B, D>,
) -> Option<Result<Vec<(u32, bool)>, String>> {
    on_cube_runtime!(B, R => glue::argmax_rows::<B, R, D>(logits));
    let _ = logits;
    None
}

#[cfg(test)]
mod cpu_tests {
    use burn::backend::NdArray;
    use burn::tensor::Tensor;

    use crate::nn::Activation;

    #[test]
    fn other_backends_get_their_inputs_back() {
        let device = Default::default();
        let x = Tensor::<NdArray, 2>::ones([2, 8], &device);
        let w = Tensor::<NdArray, 1>::ones([8], &device);
        assert!(super::rms_norm(x.clone(), &w, 1e-6).is_err());
        assert!(super::add_rms_norm(x.clone(), x.clone(), &w, 1e-6).is_err());
        assert!(super::gated(Activation::Silu, x.clone(), x).is_err());
        let q = Tensor::<NdArray, 4>::ones([1, 2, 3, 8], &device);
        let table = Tensor::<NdArray, 4>::ones([1, 1, 3, 8], &device);
        assert!(super::rope(q, &table, &table).is_err());
        assert!(super::argmax_rows(&table).is_none());
    }
}
