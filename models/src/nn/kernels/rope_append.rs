//! A decode step's attention inputs in one launch: RoPE of the queries into a new tensor, RoPE
//! of the keys and the values written into the KV cache buffers at their positions (in place).
//! Without it that is four launches (two RoPEs, two slice assignments).

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::glue::{array, cube_count, empty_like, fits_u32, is_float, offset, vector_width};
use super::rope::rounded;

/// Units per cube.
const UNITS: usize = 256;

/// Strides of a `[batch, heads, seq, head_dim]` view, in vectors.
#[derive(CubeLaunch, CubeType, Clone, Copy)]
pub(super) struct Strides3 {
    /// Batch.
    pub b: u32,
    /// Head.
    pub h: u32,
    /// Position.
    pub s: u32,
}

/// Unit `id = ((b * seq + s) * (heads + 2 kv_heads) + head) * half_vecs + i` handles vector
/// `i` of the first half of one head row and the matching one of the second half: for
/// `head < heads` the query row, rotated into `q_out` (contiguous `[batch, heads, seq, dim]`);
/// then the key rows, rotated into `k_cache` at position `start + s`; then the value rows,
/// copied into `v_cache` there. Rotation as [`super::rope::rope_kernel`] computes it (every
/// product and sum rounded to `F`). The caches are `[batch, kv_heads, capacity, dim]` with
/// strides `cache` (the same for both); the tables' batch stride is 0 when one row serves
/// the whole batch.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rope_append_kernel<F: Float, N: Size>(
    q: &Array<Vector<F, N>>,
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    cos: &Array<Vector<F, N>>,
    sin: &Array<Vector<F, N>>,
    q_out: &mut Array<Vector<F, N>>,
    k_cache: &mut Array<Vector<F, N>>,
    v_cache: &mut Array<Vector<F, N>>,
    q_strides: Strides3,
    k_strides: Strides3,
    v_strides: Strides3,
    cache: Strides3,
    units: u32,
    heads: u32,
    kv_heads: u32,
    seq: u32,
    half_vecs: u32,
    start: u32,
    t_stride_b: u32,
    t_stride_s: u32,
    #[define(F)] _dtype: StorageType,
) {
    let id = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if id >= units as usize {
        terminate!();
    }
    let hv = half_vecs as usize;
    let (h, kvh) = (heads as usize, kv_heads as usize);
    let i = id % hv;
    let row = id / hv;
    let head = row % (h + 2 * kvh);
    let bs = row / (h + 2 * kvh);
    let s = bs % (seq as usize);
    let b = bs / (seq as usize);
    // The row's position in either cache, less its head's offset.
    let cpos = b * (cache.b as usize) + (start as usize + s) * (cache.s as usize) + i;
    if head >= h + kvh {
        let vh = head - h - kvh;
        let vo = b * (v_strides.b as usize)
            + vh * (v_strides.h as usize)
            + s * (v_strides.s as usize)
            + i;
        let o = cpos + vh * (cache.h as usize);
        v_cache[o] = v[vo];
        v_cache[o + hv] = v[vo + hv];
    } else {
        let to = b * (t_stride_b as usize) + s * (t_stride_s as usize) + i;
        let c1 = Vector::<f32, N>::cast_from(cos[to]);
        let c2 = Vector::<f32, N>::cast_from(cos[to + hv]);
        let s1 = Vector::<f32, N>::cast_from(sin[to]);
        let s2 = Vector::<f32, N>::cast_from(sin[to + hv]);
        if head < h {
            let xo = b * (q_strides.b as usize)
                + head * (q_strides.h as usize)
                + s * (q_strides.s as usize)
                + i;
            let x1 = Vector::<f32, N>::cast_from(q[xo]);
            let x2 = Vector::<f32, N>::cast_from(q[xo + hv]);
            let lo = rounded::<F, N>(x1 * c1) - rounded::<F, N>(x2 * s1);
            let hi = rounded::<F, N>(x2 * c2) + rounded::<F, N>(x1 * s2);
            let o = ((b * h + head) * (seq as usize) + s) * 2 * hv + i;
            q_out[o] = Vector::<F, N>::cast_from(lo);
            q_out[o + hv] = Vector::<F, N>::cast_from(hi);
        } else {
            let kh = head - h;
            let xo = b * (k_strides.b as usize)
                + kh * (k_strides.h as usize)
                + s * (k_strides.s as usize)
                + i;
            let x1 = Vector::<f32, N>::cast_from(k[xo]);
            let x2 = Vector::<f32, N>::cast_from(k[xo + hv]);
            let lo = rounded::<F, N>(x1 * c1) - rounded::<F, N>(x2 * s1);
            let hi = rounded::<F, N>(x2 * c2) + rounded::<F, N>(x1 * s2);
            let o = cpos + kh * (cache.h as usize);
            k_cache[o] = Vector::<F, N>::cast_from(lo);
            k_cache[o + hv] = Vector::<F, N>::cast_from(hi);
        }
    }
}

/// Rotates `q` (`[batch, heads, seq, dim]`, any strides with contiguous rows) into a new
/// contiguous tensor, and writes the rotated `k` and the `v` (`[batch, kv_heads, seq, dim]`)
/// into `k_cache`/`v_cache` (`[batch, kv_heads, capacity, dim]`, contiguous, written in place:
/// the caller holds their only handles) at positions `start..start + seq`. Tables
/// `[batch or 1, 1, seq, dim]` of `q`'s dtype. `None` (nothing written) where the kernel does
/// not take these inputs.
#[allow(clippy::too_many_arguments)]
pub(super) fn rope_append<R: CubeRuntime>(
    q: &CubeTensor<R>,
    k: &CubeTensor<R>,
    v: &CubeTensor<R>,
    cos: &CubeTensor<R>,
    sin: &CubeTensor<R>,
    k_cache: &CubeTensor<R>,
    v_cache: &CubeTensor<R>,
    start: usize,
) -> Option<CubeTensor<R>> {
    let dtype = q.dtype;
    let [batch, heads, seq, dim]: [usize; 4] = q.meta.shape().to_vec().try_into().ok()?;
    let [kb, kv_heads, kseq, kdim]: [usize; 4] = k.meta.shape().to_vec().try_into().ok()?;
    let [cb, ch, cap, cd]: [usize; 4] = k_cache.meta.shape().to_vec().try_into().ok()?;
    let table = cos.meta.shape().to_vec();
    let rows = *table.first()?;
    let same = [k, v, cos, sin, k_cache, v_cache]
        .iter()
        .all(|t| t.dtype == dtype);
    if !is_float(dtype)
        || !same
        || [kb, kseq, kdim] != [batch, seq, dim]
        || v.meta.shape() != k.meta.shape()
        || [cb, ch, cd] != [batch, kv_heads, dim]
        || v_cache.meta.shape() != k_cache.meta.shape()
        || start + seq > cap
        || !k_cache.is_contiguous()
        || !v_cache.is_contiguous()
        || !k_cache.can_mut()
        || !v_cache.can_mut()
        || sin.meta.shape().to_vec() != table
        || table != [rows, 1, seq, dim]
        || (rows != 1 && rows != batch)
        || !dim.is_multiple_of(2)
        || heads == 0
        || kv_heads == 0
    {
        return None;
    }
    // Rows must be contiguous (the kernel reads vectors along the head dimension).
    let rows_ok = |t: &CubeTensor<R>| t.meta.strides()[3] == 1 || dim == 1;
    if ![q, k, v, cos, sin].iter().all(|t| rows_ok(t)) {
        return None;
    }
    let half = dim / 2;
    let units = batch * seq * (heads + 2 * kv_heads) * half;
    let q_out = empty_like(q);
    if units == 0
        || ![q, k, v, cos, sin, k_cache, v_cache, &q_out]
            .iter()
            .all(|t| fits_u32(t))
    {
        return None;
    }
    // Size-1 dimensions get stride 0 (their index is always 0; their stride must not narrow
    // the vectors).
    let stride = |t: &CubeTensor<R>, d: usize| {
        if t.meta.shape()[d] == 1 {
            0
        } else {
            t.meta.strides()[d]
        }
    };
    let three = |t: &CubeTensor<R>| [0, 1, 2].map(|d| stride(t, d));
    let (qs, ks, vs, cs) = (three(q), three(k), three(v), three(k_cache));
    if three(v_cache) != cs {
        return None;
    }
    let [t_b, t_s] = [0, 2].map(|d| stride(cos, d));
    if [0, 2].map(|d| stride(sin, d)) != [t_b, t_s] {
        return None;
    }
    let mut multiples = vec![half, t_b, t_s, start * cs[2]];
    multiples.extend(qs.iter().chain(&ks).chain(&vs).chain(&cs).copied());
    multiples.extend([q, k, v, cos, sin, k_cache, v_cache, &q_out].map(offset));
    let client = q.client.clone();
    let n = vector_width(&client, dtype, &multiples);
    let units = units / n;
    let s3 = |s: [usize; 3]| {
        Strides3Launch::new((s[0] / n) as u32, (s[1] / n) as u32, (s[2] / n) as u32)
    };
    // SAFETY: every index stays inside the tensors' views (the cache positions below their
    // capacity), which lie inside their buffers; vectors divide every length, stride and
    // offset. The caches are written in place: their handles are not shared (`can_mut`).
    unsafe {
        rope_append_kernel::launch_unchecked::<R>(
            &client,
            cube_count(&client, units.div_ceil(UNITS)),
            CubeDim::new_1d(UNITS as u32),
            n,
            array(q),
            array(k),
            array(v),
            array(cos),
            array(sin),
            array(&q_out),
            array(k_cache),
            array(v_cache),
            s3(qs),
            s3(ks),
            s3(vs),
            s3(cs),
            units as u32,
            heads as u32,
            kv_heads as u32,
            seq as u32,
            (half / n) as u32,
            start as u32,
            (t_b / n) as u32,
            (t_s / n) as u32,
            dtype.into(),
        );
    }
    Some(q_out)
}
