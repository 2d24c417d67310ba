//! RoPE in HF's `rotate_half` layout in one launch: one unit per vector of the first half of a
//! head, writing the matching vector of both halves.

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::glue::{
    array, cube_count, empty_like, fits_u32, is_float, last_dim_contiguous, offset, vector_width,
};

/// Units per cube.
const UNITS: usize = 256;

/// `v` rounded to `F` and widened back: the value an operation computed in `F` gives.
#[cube]
pub(super) fn rounded<F: Float, N: Size>(v: Vector<f32, N>) -> Vector<f32, N> {
    Vector::<f32, N>::cast_from(Vector::<F, N>::cast_from(v))
}

/// `out[b, h, s, i] = x[i] * cos[i] - x[i + half] * sin[i]` and
/// `out[b, h, s, i + half] = x[i + half] * cos[i + half] + x[i] * sin[i + half]` for the
/// vector `i` of unit `id = ((b * heads + h) * seq + s) * half_vecs + i`, every product and
/// sum rounded to `F`. Strides are in vectors; the tables' batch stride is 0 when one table
/// row serves the whole batch. `out` is contiguous.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rope_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    cos: &Array<Vector<F, N>>,
    sin: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    units: u32,
    heads: u32,
    seq: u32,
    half_vecs: u32,
    x_stride_b: u32,
    x_stride_h: u32,
    x_stride_s: u32,
    t_stride_b: u32,
    t_stride_s: u32,
    #[define(F)] _dtype: StorageType,
) {
    let id = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if id >= units as usize {
        terminate!();
    }
    let hv = half_vecs as usize;
    let i = id % hv;
    let row = id / hv;
    let s = row % (seq as usize);
    let bh = row / (seq as usize);
    let h = bh % (heads as usize);
    let b = bh / (heads as usize);
    let xo = b * (x_stride_b as usize) + h * (x_stride_h as usize) + s * (x_stride_s as usize) + i;
    let to = b * (t_stride_b as usize) + s * (t_stride_s as usize) + i;
    let oo = row * 2 * hv + i;

    let x1 = Vector::<f32, N>::cast_from(x[xo]);
    let x2 = Vector::<f32, N>::cast_from(x[xo + hv]);
    let c1 = Vector::<f32, N>::cast_from(cos[to]);
    let c2 = Vector::<f32, N>::cast_from(cos[to + hv]);
    let s1 = Vector::<f32, N>::cast_from(sin[to]);
    let s2 = Vector::<f32, N>::cast_from(sin[to + hv]);
    let lo = rounded::<F, N>(x1 * c1) - rounded::<F, N>(x2 * s1);
    let hi = rounded::<F, N>(x2 * c2) + rounded::<F, N>(x1 * s2);
    out[oo] = Vector::<F, N>::cast_from(lo);
    out[oo + hv] = Vector::<F, N>::cast_from(hi);
}

/// RoPE of `x` (`[batch, heads, seq, head_dim]`) with tables `[batch or 1, 1, seq, head_dim]`
/// of `x`'s dtype into a new contiguous tensor. `None` where the kernel does not take these
/// inputs.
pub(super) fn rope<R: CubeRuntime>(
    x: CubeTensor<R>,
    cos: CubeTensor<R>,
    sin: CubeTensor<R>,
) -> Option<CubeTensor<R>> {
    let out = empty_like(&x);
    launch(x, cos, sin, &out)?;
    Some(out)
}

/// Runs [`rope_kernel()`] into `out`, a contiguous tensor shaped as `x`.
pub(super) fn launch<R: CubeRuntime>(
    x: CubeTensor<R>,
    cos: CubeTensor<R>,
    sin: CubeTensor<R>,
    out: &CubeTensor<R>,
) -> Option<()> {
    let dtype = x.dtype;
    let [batch, heads, seq, dim]: [usize; 4] = x.meta.shape().to_vec().try_into().ok()?;
    let table = cos.meta.shape().to_vec();
    let rows = *table.first()?;
    if !is_float(dtype)
        || cos.dtype != dtype
        || sin.dtype != dtype
        || out.dtype != dtype
        || out.meta.shape().to_vec() != [batch, heads, seq, dim]
        || !out.is_contiguous()
        || sin.meta.shape().to_vec() != table
        || table != [rows, 1, seq, dim]
        || (rows != 1 && rows != batch)
        || !dim.is_multiple_of(2)
    {
        return None;
    }
    let half = dim / 2;
    let units = batch * heads * seq * half;
    if units == 0 {
        return None;
    }
    let x = last_dim_contiguous(x);
    let cos = last_dim_contiguous(cos);
    let sin = last_dim_contiguous(sin);
    if ![&x, &cos, &sin, out].iter().all(|t| fits_u32(t)) {
        return None;
    }
    // Dimensions of size 1 get stride 0: their index is always 0, and whatever stride they
    // carry must not narrow the vectors. Both tables are indexed with the same strides.
    let stride = |t: &CubeTensor<R>, d: usize| {
        if t.meta.shape()[d] == 1 {
            0
        } else {
            t.meta.strides()[d]
        }
    };
    let [x_b, x_h, x_s] = [0, 1, 2].map(|d| stride(&x, d));
    let [t_b, t_s] = [0, 2].map(|d| stride(&cos, d));
    if [0, 2].map(|d| stride(&sin, d)) != [t_b, t_s] {
        return None;
    }
    let mut multiples = vec![half, x_b, x_h, x_s, t_b, t_s];
    multiples.extend([&x, &cos, &sin, out].map(offset));
    let client = x.client.clone();
    let n = vector_width(&client, dtype, &multiples);
    let units = units / n;
    // SAFETY: every index stays inside the tensors' views, which lie inside their buffers;
    // vectors divide every length, stride and offset.
    unsafe {
        rope_kernel::launch_unchecked::<R>(
            &client,
            cube_count(&client, units.div_ceil(UNITS)),
            CubeDim::new_1d(UNITS as u32),
            n,
            array(&x),
            array(&cos),
            array(&sin),
            array(out),
            units as u32,
            heads as u32,
            seq as u32,
            (half / n) as u32,
            (x_b / n) as u32,
            (x_h / n) as u32,
            (x_s / n) as u32,
            (t_b / n) as u32,
            (t_s / n) as u32,
            dtype.into(),
        );
    }
    Some(())
}
