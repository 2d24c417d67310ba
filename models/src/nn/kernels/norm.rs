//! RMSNorm in one launch, optionally after the residual add: one cube per row.

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::features::Plane;
use cubecl::prelude::*;

use super::glue::{
    array, cube_count, empty_like, fits_u32, is_float, last_dim_contiguous, offset, rows,
    vector_width,
};

/// Compile-time choices of [`rms_norm_kernel()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct NormConfig {
    /// Units per cube, a power of two.
    pub units: usize,
    /// Plane size when the cube sums through plane operations (a power of two dividing
    /// `units`); 0 to sum through shared memory alone.
    pub plane: usize,
    /// Normalize `residual + x` and write the sum.
    pub residual: bool,
}

/// The sum of every unit's `value`, returned to every unit of the cube.
#[cube]
fn cube_sum(value: f32, #[comptime] units: usize, #[comptime] plane: usize) -> f32 {
    let t = UNIT_POS as usize;
    let mut total = 0.0f32;
    if comptime!(plane > 0) {
        let mut partial = SharedMemory::<f32>::new(comptime!(units / plane));
        let p = plane_sum(value);
        if UNIT_POS_PLANE == 0 {
            partial[t / plane] = p;
        }
        sync_cube();
        #[unroll]
        for k in 0..comptime!(units / plane) {
            total += partial[k];
        }
    } else {
        let mut partial = SharedMemory::<f32>::new(units);
        partial[t] = value;
        sync_cube();
        #[unroll]
        for step in 0..comptime!(units.trailing_zeros()) {
            let half = comptime!(units >> (step + 1));
            if t < half {
                let other = partial[t + half];
                partial[t] += other;
            }
            sync_cube();
        }
        total = partial[0];
    }
    total
}

/// Row `CUBE_POS`: `out = F(F(v * rsqrt(mean(v^2) + eps)) * weight)` with `v = x` widened to
/// f32, or (`cfg.residual`) `v = F(residual + x)`, which is also written to `sum`. Each unit
/// owns the vectors `UNIT_POS`, `UNIT_POS + units`, ... of the row in both passes, so the
/// second pass reads back the sum it wrote itself.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rms_norm_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    residual: &Array<Vector<F, N>>,
    weight: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    sum: &mut Array<Vector<F, N>>,
    rows: u32,
    row_vecs: u32,
    x_stride: u32,
    r_stride: u32,
    dim: f32,
    eps: f32,
    #[comptime] cfg: NormConfig,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let t = UNIT_POS as usize;
    let n = row_vecs as usize;
    let xb = row * (x_stride as usize);
    let rb = row * (r_stride as usize);
    let ob = row * n;

    let mut acc = Vector::<f32, N>::new(0.0f32);
    let mut i = t;
    while i < n {
        let mut v = x[xb + i];
        if comptime!(cfg.residual) {
            v = Vector::<F, N>::cast_from(
                Vector::<f32, N>::cast_from(residual[rb + i]) + Vector::<f32, N>::cast_from(v),
            );
            sum[ob + i] = v;
        }
        let f = Vector::<f32, N>::cast_from(v);
        acc += f * f;
        i += cfg.units;
    }
    let mut part = 0.0f32;
    #[unroll]
    for e in 0..acc.vector_size() {
        part += acc[e];
    }
    let total = cube_sum(part, cfg.units, cfg.plane);
    let inv = Vector::<f32, N>::new(1.0f32 / (total / dim + eps).sqrt());

    let mut j = t;
    while j < n {
        let v = if comptime!(cfg.residual) {
            sum[ob + j]
        } else {
            x[xb + j]
        };
        let normed = Vector::<F, N>::cast_from(Vector::<f32, N>::cast_from(v) * inv);
        out[ob + j] = Vector::<F, N>::cast_from(
            Vector::<f32, N>::cast_from(normed) * Vector::<f32, N>::cast_from(weight[j]),
        );
        j += cfg.units;
    }
}

/// How the cube sums its units' partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reduction {
    /// Plane operations where the device's planes have one fixed size, else shared memory.
    Auto,
    /// Shared memory only.
    #[cfg_attr(not(test), allow(dead_code))]
    Shared,
}

/// RMSNorm of `x` (or of `residual + x`) into new tensors: `(normed, sum)`. `None` where the
/// kernel does not take these inputs.
pub(super) fn rms_norm<R: CubeRuntime>(
    x: CubeTensor<R>,
    residual: Option<CubeTensor<R>>,
    weight: CubeTensor<R>,
    eps: f32,
) -> Option<(CubeTensor<R>, Option<CubeTensor<R>>)> {
    let out = empty_like(&x);
    let sum = residual.as_ref().map(|_| empty_like(&x));
    launch(
        x,
        residual,
        weight,
        &out,
        sum.as_ref(),
        eps,
        Reduction::Auto,
    )?;
    Some((out, sum))
}

/// Runs [`rms_norm_kernel()`] into `out` (and `sum`), contiguous tensors shaped as `x`.
pub(super) fn launch<R: CubeRuntime>(
    x: CubeTensor<R>,
    residual: Option<CubeTensor<R>>,
    weight: CubeTensor<R>,
    out: &CubeTensor<R>,
    sum: Option<&CubeTensor<R>>,
    eps: f32,
    reduction: Reduction,
) -> Option<()> {
    let dtype = x.dtype;
    let shape = x.meta.shape().to_vec();
    let cols = *shape.last()?;
    let like_x = |t: &CubeTensor<R>| t.dtype == dtype && t.meta.shape().to_vec() == shape;
    if !is_float(dtype)
        || weight.dtype != dtype
        || weight.meta.shape().to_vec() != [cols]
        || !like_x(out)
        || !out.is_contiguous()
        || residual.is_some() != sum.is_some()
        || residual.as_ref().is_some_and(|r| !like_x(r))
        || sum.is_some_and(|s| !like_x(s) || !s.is_contiguous())
    {
        return None;
    }
    let x = rows(x);
    let residual = residual.map(rows);
    let weight = last_dim_contiguous(weight);
    if x.rows == 0 || cols == 0 {
        return None;
    }
    let mut tensors = vec![&x.tensor, &weight, out];
    tensors.extend(residual.as_ref().map(|r| &r.tensor));
    tensors.extend(sum);
    if !tensors.iter().all(|t| fits_u32(t)) {
        return None;
    }
    let mut multiples: Vec<usize> = tensors.iter().map(|t| offset(t)).collect();
    multiples.extend([cols, x.stride]);
    multiples.extend(residual.as_ref().map(|r| r.stride));

    let client = x.tensor.client.clone();
    let n = vector_width(&client, dtype, &multiples);
    let row_vecs = cols / n;
    let hardware = &client.properties().hardware;
    let plane_size = hardware.plane_size_max as usize;
    let planes = reduction == Reduction::Auto
        && client.properties().features.plane.contains(Plane::Ops)
        && hardware.plane_size_min as usize == plane_size
        && plane_size.is_power_of_two()
        && plane_size <= 256;
    let plane = if planes { plane_size } else { 0 };
    let units = row_vecs.next_power_of_two().clamp(32, 256).max(plane);
    let cfg = NormConfig {
        units,
        plane,
        residual: residual.is_some(),
    };
    let scratch = client.empty(16);
    let scratch_len = 16 / dtype.size();
    let residual_arg = residual
        .as_ref()
        .map_or_else(|| array(&x.tensor), |r| array(&r.tensor));
    let sum_arg = match sum {
        Some(s) => array(s),
        // SAFETY: never accessed (`cfg.residual` is false); the length is the buffer's.
        None => unsafe { ArrayArg::from_raw_parts(scratch, scratch_len) },
    };
    // SAFETY: every row index stays below `rows * stride + cols` of its tensor, checked above
    // to be inside the buffers; vectors divide every length, stride and offset.
    unsafe {
        rms_norm_kernel::launch_unchecked::<R>(
            &client,
            cube_count(&client, x.rows),
            CubeDim::new_1d(units as u32),
            n,
            array(&x.tensor),
            residual_arg,
            array(&weight),
            array(out),
            sum_arg,
            x.rows as u32,
            row_vecs as u32,
            (x.stride / n) as u32,
            residual.as_ref().map_or(0, |r| r.stride / n) as u32,
            cols as f32,
            eps,
            cfg,
            dtype.into(),
        );
    }
    Some(())
}
