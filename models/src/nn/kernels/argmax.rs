//! Greedy decoding's choice on the device: each row's first largest logit and whether the row
//! holds a NaN, in one launch and one read (burn's `argmax`, `is_nan().any()`, their casts and
//! the `cat` that brought them back together took about ten).

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::glue::{array, cube_count, fits_u32, is_float, offset, rows, vector_width};

/// "No index yet" (rows are shorter than 2^32 - 1 elements).
const NONE: u32 = u32::MAX;

/// Row `CUBE_POS` of `logits` (`row_vecs` vectors, rows `stride` vectors apart): writes the
/// index of its first largest value to `out[row]` (as `torch.argmax`; values compared in f32,
/// which holds every f16/bf16 value exactly) and 1 to `out[rows + row]` when the row holds a
/// NaN, else 0. Each unit scans the vectors `UNIT_POS`, `UNIT_POS + units`, ... in order, keeping
/// the first of equal values, then the cube reduces the units' (value, index) pairs by value,
/// ties to the lower index.
#[cube(launch_unchecked)]
pub(super) fn argmax_kernel<F: Float, N: Size>(
    logits: &Array<Vector<F, N>>,
    out: &mut Array<u32>,
    rows: u32,
    row_vecs: u32,
    stride: u32,
    #[comptime] units: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let t = UNIT_POS as usize;
    let base = row * (stride as usize);
    let mut best = 0.0f32;
    // A literal, not `NONE`: a variable set from a constant would be a compile-time one.
    let mut index = 0xFFFF_FFFFu32;
    let mut nan = 0u32;
    let mut i = t;
    while i < row_vecs as usize {
        let v = logits[base + i];
        #[unroll]
        for e in 0..v.vector_size() {
            let x = f32::cast_from(v[e]);
            if x.is_nan() {
                nan = 1u32;
            } else if index == NONE || x > best {
                best = x;
                index = (i * v.vector_size() + e) as u32;
            }
        }
        i += units;
    }
    let mut values = SharedMemory::<f32>::new(units);
    let mut indices = SharedMemory::<u32>::new(units);
    let mut nans = SharedMemory::<u32>::new(units);
    values[t] = best;
    indices[t] = index;
    nans[t] = nan;
    sync_cube();
    #[unroll]
    for step in 0..comptime!(units.trailing_zeros()) {
        let half = comptime!(units >> (step + 1));
        if t < half {
            let ov = values[t + half];
            let oi = indices[t + half];
            let mv = values[t];
            let mi = indices[t];
            if oi != NONE && (mi == NONE || ov > mv || (ov == mv && oi < mi)) {
                values[t] = ov;
                indices[t] = oi;
            }
            nans[t] = nans[t] | nans[t + half];
        }
        sync_cube();
    }
    if t == 0 {
        out[row] = indices[0];
        out[(rows as usize) + row] = nans[0];
    }
}

/// For each row of `logits` (its last dimension; any float dtype and layout): the index of the
/// first largest value and whether the row holds a NaN. `None` where the kernel does not take
/// the tensor; `Some(Err)` when the device could not be read.
pub(super) fn argmax_rows<R: CubeRuntime>(
    logits: CubeTensor<R>,
) -> Option<Result<Vec<(u32, bool)>, String>> {
    let dtype = logits.dtype;
    if !is_float(dtype) {
        return None;
    }
    let r = rows(logits);
    if r.rows == 0 || r.cols == 0 || r.cols >= NONE as usize || !fits_u32(&r.tensor) {
        return None;
    }
    let client = r.tensor.client.clone();
    let n = vector_width(&client, dtype, &[r.cols, r.stride, offset(&r.tensor)]);
    // As many units as a cube holds (up to 1024): a 128k vocabulary is ~16 vectors per unit.
    let max = client
        .properties()
        .hardware
        .max_units_per_cube
        .clamp(1, 1024) as usize;
    let units = 1usize << max.ilog2();
    let out = client.empty(2 * r.rows * size_of::<u32>());
    // SAFETY: row `i` reads vectors `i * stride .. i * stride + row_vecs` of the view, inside
    // its buffer; `out` holds the `2 * rows` words written.
    unsafe {
        argmax_kernel::launch_unchecked::<R>(
            &client,
            cube_count(&client, r.rows),
            CubeDim::new_1d(units as u32),
            n,
            array(&r.tensor),
            ArrayArg::from_raw_parts(out.clone(), 2 * r.rows),
            r.rows as u32,
            (r.cols / n) as u32,
            (r.stride / n) as u32,
            units,
            dtype.into(),
        );
    }
    let bytes = match client.read_one(out) {
        Ok(b) => b,
        Err(e) => return Some(Err(format!("{e:?}"))),
    };
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    if words.len() != 2 * r.rows {
        return Some(Err(format!(
            "read {} words for {} rows",
            words.len(),
            r.rows
        )));
    }
    let (ids, nans) = words.split_at(r.rows);
    Some(Ok(ids
        .iter()
        .zip(nans)
        .map(|(&id, &nan)| (id, nan != 0))
        .collect()))
}
