//! From burn tensors to CubeCL tensors and back (no copies: the same device buffers), and the
//! layout helpers the launches share.

use std::any::{Any, TypeId};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use crate::nn::Activation;

/// Moves `v` into a `U` when `T` is `U`.
pub(super) fn same_type<T: 'static, U: 'static>(v: T) -> Option<U> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return None;
    }
    let boxed: Box<dyn Any> = Box::new(v);
    boxed.downcast::<U>().ok().map(|u| *u)
}

/// Whether `B`'s float tensors are CubeCL tensors of runtime `R`.
pub(super) fn is_cube<B: Backend, R: CubeRuntime>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
}

/// See [`super::device_memory()`].
pub(super) fn memory_usage<B: Backend, R: CubeRuntime>(device: &B::Device) -> Option<(u64, u64)> {
    let device: R::Device = same_type(device.clone())?;
    let usage = R::client(&device).memory_usage().ok()?;
    Some((usage.bytes_in_use, usage.bytes_reserved))
}

/// See [`super::release_unused_memory()`].
pub(super) fn memory_cleanup<B: Backend, R: CubeRuntime>(device: &B::Device) {
    if let Some(device) = same_type::<_, R::Device>(device.clone()) {
        R::client(&device).memory_cleanup();
    }
}

fn cube<B: Backend, R: CubeRuntime, const D: usize>(t: &Tensor<B, D>) -> Option<CubeTensor<R>> {
    same_type(t.clone().into_primitive().tensor())
}

fn burn<B: Backend, R: CubeRuntime, const D: usize>(c: CubeTensor<R>) -> Option<Tensor<B, D>> {
    let p = same_type::<_, B::FloatTensorPrimitive>(c)?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(p)))
}

/// See [`super::rms_norm()`] and [`super::add_rms_norm()`]: `(normed, sum)`.
#[allow(clippy::type_complexity)]
pub(super) fn rms_norm<B: Backend, R: CubeRuntime, const D: usize>(
    x: &Tensor<B, D>,
    residual: Option<&Tensor<B, D>>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<(Tensor<B, D>, Option<Tensor<B, D>>)> {
    let residual = match residual {
        Some(r) => Some(cube::<B, R, D>(r)?),
        None => None,
    };
    let (normed, sum) = super::norm::rms_norm(
        cube::<B, R, D>(x)?,
        residual,
        cube::<B, R, 1>(weight)?,
        eps as f32,
    )?;
    let sum = match sum {
        Some(s) => Some(burn::<B, R, D>(s)?),
        None => None,
    };
    Some((burn::<B, R, D>(normed)?, sum))
}

/// See [`super::rope()`]. Tables in another dtype than `x` are cast first, as the burn-op path
/// does.
pub(super) fn rope<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Option<Tensor<B, 4>> {
    let dtype = x.dtype();
    let cast = |t: &Tensor<B, 4>| {
        if t.dtype() == dtype {
            t.clone()
        } else {
            t.clone().cast(dtype)
        }
    };
    let out = super::rope::rope(
        cube::<B, R, 4>(x)?,
        cube::<B, R, 4>(&cast(cos))?,
        cube::<B, R, 4>(&cast(sin))?,
    )?;
    burn::<B, R, 4>(out)
}

/// Moves `v` into a `U` when `T` is `U`, else hands it back.
fn try_same<T: 'static, U: 'static>(v: T) -> Result<U, T> {
    let mut slot = Some(v);
    let any: &mut dyn Any = &mut slot;
    if let Some(u) = any.downcast_mut::<Option<U>>().and_then(Option::take) {
        return Ok(u);
    }
    match slot {
        Some(v) => Err(v),
        None => unreachable!("the slot is emptied only when it holds a U"),
    }
}

/// See [`super::rope_append()`]. The caches move in (their handles must be unshared to be
/// written in place) and come back either way.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(super) fn rope_append<B: Backend, R: CubeRuntime>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    k_cache: Tensor<B, 4>,
    v_cache: Tensor<B, 4>,
    start: usize,
) -> super::RopeAppend<B> {
    let dtype = q.dtype();
    let cast = |t: &Tensor<B, 4>| {
        if t.dtype() == dtype {
            t.clone()
        } else {
            t.clone().cast(dtype)
        }
    };
    let (cos, sin) = (cast(cos), cast(sin));
    let caches = (
        try_same::<_, CubeTensor<R>>(k_cache.into_primitive().tensor()),
        try_same::<_, CubeTensor<R>>(v_cache.into_primitive().tensor()),
    );
    let back = |c: Result<CubeTensor<R>, B::FloatTensorPrimitive>| match c {
        Ok(c) => burn::<B, R, 4>(c),
        Err(p) => Some(Tensor::from_primitive(TensorPrimitive::Float(p))),
    };
    let (kc, vc) = match caches {
        (Ok(kc), Ok(vc)) => (kc, vc),
        (kc, vc) => {
            return match (back(kc), back(vc)) {
                (Some(kc), Some(vc)) => Err((q, k, v, kc, vc)),
                _ => unreachable!("a primitive that was not a cube tensor comes back as it was"),
            };
        }
    };
    let out = match (
        cube::<B, R, 4>(&q),
        cube::<B, R, 4>(&k),
        cube::<B, R, 4>(&v),
    ) {
        (Some(qc), Some(kt), Some(vt)) => match (cube::<B, R, 4>(&cos), cube::<B, R, 4>(&sin)) {
            (Some(c), Some(s)) => {
                super::rope_append::rope_append(&qc, &kt, &vt, &c, &s, &kc, &vc, start)
            }
            _ => None,
        },
        _ => None,
    };
    match (
        out.and_then(burn::<B, R, 4>),
        burn::<B, R, 4>(kc),
        burn::<B, R, 4>(vc),
    ) {
        (Some(q), Some(kc), Some(vc)) => Ok((q, kc, vc)),
        (None, Some(kc), Some(vc)) => Err((q, k, v, kc, vc)),
        _ => unreachable!("cube tensors of runtime R are B's float primitives"),
    }
}

/// See [`super::gated()`].
pub(super) fn gated<B: Backend, R: CubeRuntime, const D: usize>(
    activation: Activation,
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let out = super::gated::gated(activation, cube::<B, R, D>(gate)?, cube::<B, R, D>(up)?)?;
    burn::<B, R, D>(out)
}

/// See [`super::argmax_rows()`].
pub(super) fn argmax_rows<B: Backend, R: CubeRuntime, const D: usize>(
    logits: &Tensor<B, D>,
) -> Option<Result<Vec<(u32, bool)>, String>> {
    super::argmax::argmax_rows(cube::<B, R, D>(logits)?)
}

/// The dtypes the kernels compute in.
pub(super) fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// Whether every index the kernels compute stays below 2^32 (their scalars are `u32`).
pub(super) fn fits_u32<R: CubeRuntime>(t: &CubeTensor<R>) -> bool {
    (t.handle.size() as usize / t.dtype.size()) < u32::MAX as usize
}

/// A tensor viewed as `rows` rows of `cols` contiguous elements, `stride` elements apart.
pub(super) struct Rows<R: CubeRuntime> {
    /// The tensor (a contiguous copy where its layout is not such a view).
    pub tensor: CubeTensor<R>,
    /// Number of rows: the product of the leading dimensions.
    pub rows: usize,
    /// Elements per row: the last dimension.
    pub cols: usize,
    /// Elements from one row to the next.
    pub stride: usize,
}

/// `t` as [`Rows`]: as it is when its last dimension is contiguous and its leading dimensions
/// collapse into one stride (a slice of the last dimension, for one), else copied.
pub(super) fn rows<R: CubeRuntime>(t: CubeTensor<R>) -> Rows<R> {
    let shape = t.meta.shape().to_vec();
    let strides = t.meta.strides().to_vec();
    let (cols, lead) = match shape.split_last() {
        Some((&c, lead)) => (c, lead),
        None => (1, &[][..]),
    };
    let rows = lead.iter().product();
    let dims: Vec<(usize, usize)> = lead
        .iter()
        .zip(&strides)
        .filter(|(size, _)| **size > 1)
        .map(|(&size, &stride)| (size, stride))
        .collect();
    let last_ok = cols <= 1 || strides.last() == Some(&1);
    let collapses = dims.windows(2).all(|w| w[0].1 == w[1].1 * w[1].0);
    if last_ok && collapses {
        let stride = dims.last().map_or(cols, |d| d.1);
        return Rows {
            tensor: t,
            rows,
            cols,
            stride,
        };
    }
    Rows {
        tensor: into_contiguous(t),
        rows,
        cols,
        stride: cols,
    }
}

/// `t` with its last dimension contiguous (copied otherwise).
pub(super) fn last_dim_contiguous<R: CubeRuntime>(t: CubeTensor<R>) -> CubeTensor<R> {
    let strides = t.meta.strides();
    if strides.last().is_none_or(|&s| s == 1) || t.meta.shape().last() == Some(&1) {
        t
    } else {
        into_contiguous(t)
    }
}

/// A new contiguous tensor shaped and typed as `like`.
pub(super) fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>) -> CubeTensor<R> {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        like.meta.shape().clone(),
        like.dtype,
    )
}

/// Offset of `t`'s first element in its buffer, in elements.
pub(super) fn offset<R: CubeRuntime>(t: &CubeTensor<R>) -> usize {
    t.handle.offset_start.unwrap_or(0) as usize / t.dtype.size()
}

/// The widest vector (at most 16 bytes, a power of two) that divides every length, stride and
/// offset given in elements.
pub(super) fn vector_width<R: CubeRuntime>(
    client: &ComputeClient<R>,
    dtype: DType,
    multiples: &[usize],
) -> usize {
    let max = client.properties().hardware.max_vector_size;
    let mut n = (16 / dtype.size()).min(max).max(1);
    while n > 1 && multiples.iter().any(|m| !m.is_multiple_of(n)) {
        n /= 2;
    }
    n
}

/// `t`'s buffer as a kernel array (its length in elements, from its offset on).
pub(super) fn array<R: CubeRuntime>(t: &CubeTensor<R>) -> ArrayArg<R> {
    let len = t.handle.size_in_used() as usize / t.dtype.size();
    // SAFETY: the length is the buffer's, from the tensor's offset to the buffer's end.
    unsafe { ArrayArg::from_raw_parts(t.handle.clone(), len) }
}

/// A cube count for `cubes` cubes within the per-dimension limit; kernels index cubes by
/// `CUBE_POS` and skip the surplus of the rounded-up grid.
pub(super) fn cube_count<R: CubeRuntime>(client: &ComputeClient<R>, cubes: usize) -> CubeCount {
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
