//! Dense GEMV / skinny GEMM for decode: `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])` with
//! the weight in f32, f16 or bf16 as Hugging Face stores it (`[out, in]`, row-major), for 1 to
//! [`MAX_GEMV_ROWS`] rows of x. Accumulates in f32 and rounds once.
//!
//! The time goes into reading the weight once: each plane of 32 units streams whole rows in
//! 16-byte vectors, coalesced along `in`, and the few rows of x come from the caches.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::device::{MAX_GEMV_ROWS, check_capacity, check_shared, split_for};
use super::gemv4::{plane_totals, split_total};
use super::{check_dtype, cube_count, planes_of_32, vector_width, with_float};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// `acc[r * m + mi] += x[mi] . w[r]` over the `vw` elements of one vector of each of `rows`
/// weight rows (already widened to f32) and of each of the `m` rows of x, at vector `c`.
#[cube]
fn accumulate<F: Float, NV: Size>(
    acc: &mut Array<f32>,
    wf: &Array<Vector<f32, NV>>,
    x: &Array<Vector<F, NV>>,
    c: usize,
    kv: usize,
    #[comptime] m: usize,
    #[comptime] rows: usize,
) {
    let vw = x.vector_size();
    #[unroll]
    for mi in 0..m {
        let xv = Vector::<f32, NV>::cast_from(x[mi * kv + c]);
        #[unroll]
        for r in 0..rows {
            let wv = wf[r];
            let mut s = acc[r * m + mi];
            #[unroll]
            for e in 0..vw {
                s = fma(xv[e], wv[e], s);
            }
            acc[r * m + mi] = s;
        }
    }
}

/// The kernel. A cube is `32 x planes` units; each plane owns `rows` consecutive weight rows
/// (`split` consecutive planes share theirs and take turns over blocks of `32 * depth`
/// vectors of each row). A unit issues the loads of `depth` vectors of every row before using
/// any, then multiplies them with the matching vectors of the `m` rows of x. Cubes stride over
/// the row groups.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_gemv_kernel<F: Float, NV: Size>(
    w: &Array<Vector<F, NV>>,
    x: &Array<Vector<F, NV>>,
    bias: &Array<F>,
    y: &mut Array<F>,
    n_rows: u32,
    k_vectors: u32,
    row_vectors: u32,
    #[comptime] m: usize,
    #[comptime] rows: usize,
    #[comptime] planes: usize,
    #[comptime] depth: usize,
    #[comptime] has_bias: bool,
    #[comptime] use_plane: bool,
    #[comptime] split: usize,
) {
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let mut totals = SharedMemory::<f32>::new(comptime!(planes * rows * m));
    let mut partial = SharedMemory::<f32>::new(if use_plane {
        1usize
    } else {
        comptime!(planes * rows * m * 32)
    });

    let n = n_rows as usize;
    let kv = k_vectors as usize;
    let ld = row_vectors as usize;
    let set = warp / split;
    let kpart = warp % split;
    let group_rows = comptime!(planes / split * rows);
    let groups = n.div_ceil(group_rows);

    let mut g = CUBE_POS;
    while g < groups {
        let row0 = g * group_rows + set * rows;
        // Rows past the end re-read the last row; their results are never written.
        let mut row_base = Array::<usize>::new(rows);
        #[unroll]
        for r in 0..rows {
            row_base[r] = min(row0 + r, n - 1) * ld;
        }
        let mut acc = Array::<f32>::new(comptime!(rows * m));
        #[unroll]
        for i in 0..comptime!(rows * m) {
            acc[i] = 0.0;
        }
        let mut wf = Array::<Vector<f32, NV>>::new(rows);

        // Whole blocks of `depth` vectors per unit: every load valid, all issued up front.
        let mut c = lane + kpart * comptime!(32 * depth);
        while c + comptime!((depth - 1) * 32) < kv {
            let mut wr = Array::<Vector<F, NV>>::new(comptime!(depth * rows));
            #[unroll]
            for d in 0..depth {
                #[unroll]
                for r in 0..rows {
                    wr[d * rows + r] = w[row_base[r] + c + d * 32];
                }
            }
            #[unroll]
            for d in 0..depth {
                #[unroll]
                for r in 0..rows {
                    wf[r] = Vector::<f32, NV>::cast_from(wr[d * rows + r]);
                }
                accumulate::<F, NV>(&mut acc, &wf, x, c + d * 32, kv, m, rows);
            }
            c += comptime!(32 * depth * split);
        }
        // The row's last, partial block (its later blocks belong to no one: they are past the
        // end), one vector at a time.
        while c < kv {
            #[unroll]
            for r in 0..rows {
                wf[r] = Vector::<f32, NV>::cast_from(w[row_base[r] + c]);
            }
            accumulate::<F, NV>(&mut acc, &wf, x, c, kv, m, rows);
            c += 32;
        }

        plane_totals(
            &acc,
            &mut totals,
            &mut partial,
            comptime!(rows * m),
            use_plane,
        );
        if kpart == 0 {
            let mut i = lane;
            while i < comptime!(rows * m) {
                let r = i / m;
                let mi = i % m;
                let row = row0 + r;
                if row < n {
                    let mut v = split_total(&totals, warp, i, comptime!(rows * m), split);
                    if comptime!(has_bias) {
                        v += f32::cast_from(bias[row]);
                    }
                    y[mi * n + row] = F::cast_from(v);
                }
                i += 32;
            }
        }
        sync_cube();
        g += CUBE_COUNT;
    }
}

/// Launch parameters of the dense GEMV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DenseConfig {
    /// Weight rows per plane of 32 units.
    pub rows_per_plane: usize,
    /// Planes per cube.
    pub planes: usize,
    /// Reduce with plane operations (needs planes of 32) rather than shared memory.
    pub use_plane: bool,
    /// 16-byte vectors of each row a unit loads before using any (1 to 8).
    pub depth: usize,
    /// Most cubes launched (they stride over the row groups); 0 for one cube per group.
    pub max_cubes: usize,
    /// Planes that share their rows and split each row between them (split-K; it divides
    /// `planes`): more planes in flight when there are few rows.
    pub split_k: usize,
}

impl DenseConfig {
    /// The default for `m` rows of x and `out_features` weight rows on this device.
    pub fn default_for<R: Runtime>(
        client: &ComputeClient<R>,
        m: usize,
        out_features: usize,
    ) -> Self {
        let use_plane = planes_of_32(client);
        let sms = client
            .properties()
            .hardware
            .num_streaming_multiprocessors
            .unwrap_or(0) as usize;
        if !use_plane {
            // The reduction goes through shared memory: small cubes, one row per plane.
            return DenseConfig {
                rows_per_plane: 1,
                planes: 2,
                use_plane,
                depth: 2,
                max_cubes: 0,
                split_k: 1,
            };
        }
        // Each vector of x read from the caches serves `rows` weight rows: more rows as m
        // grows, so that the cache traffic for x stays below the weight's. Measured on the
        // H200 at 4096x4096 f16 (us, torch F.linear 21.8 / 21.8 / 22.2 at m = 1 / 4 / 16):
        // m = 1 best with 1 row, 2 vectors in flight and split-K (12.2, against 13.9 with 4
        // vectors); m = 4 with 4 rows, 1 vector, 4 planes (15.7 against 17.5 with 2 rows);
        // m = 16 with 4 rows, 2 vectors, 4 planes unsplit (36.4; split-K 8: 66.9).
        let (rows_per_plane, depth, planes) = match m {
            1 => (1, 2, 8),
            2..=4 => (4, 1, 4),
            _ => (4, 2, 4),
        };
        let split_k = if m <= 4 {
            split_for(sms, out_features, rows_per_plane, planes)
        } else {
            1
        };
        DenseConfig {
            rows_per_plane,
            planes,
            use_plane,
            depth,
            max_cubes: 0,
            split_k,
        }
    }
}

/// A dense Linear weight on the device: `rows` x `cols` values of `dtype`, row-major
/// (`[out, in]`, as Hugging Face stores it), starting at the handle's offset, each row
/// `row_stride` elements after the previous one (`cols`, or more for a padded ("pitched")
/// layout, as burn's CUDA backend allocates some tensors).
#[derive(Debug, Clone)]
pub struct DeviceDense {
    /// The weight values.
    pub weight: Handle,
    /// Output features (rows of the weight).
    pub rows: usize,
    /// Input features (columns of the weight).
    pub cols: usize,
    /// Elements from the start of one row to the start of the next (at least `cols`).
    pub row_stride: usize,
    /// The element type of the weight, of x, of the bias and of the result.
    pub dtype: FloatDtype,
}

impl DeviceDense {
    /// Uploads `[rows, cols]` f32 values, rounded to `dtype`.
    pub fn upload<R: Runtime>(
        client: &ComputeClient<R>,
        values: &[f32],
        rows: usize,
        cols: usize,
        dtype: FloatDtype,
    ) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(QuantError::BadShape {
                what: "dense weight".into(),
                shape: vec![rows, cols],
                reason: format!("{} values given", values.len()),
            });
        }
        Ok(DeviceDense {
            weight: super::upload_as(client, values, dtype),
            rows,
            cols,
            row_stride: cols,
            dtype,
        })
    }

    /// `y = x W^T (+ bias)` for `m` (1 to [`MAX_GEMV_ROWS`]) rows of `x` (`[m, cols]`, contiguous,
    /// in the weight's dtype): a new `[m, rows]` buffer in that dtype. `bias` is `[rows]`.
    pub fn gemv<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        bias: Option<&Handle>,
    ) -> Result<Handle> {
        let out = client.empty((m * self.rows * self.dtype.size()).max(4));
        let config = DenseConfig::default_for(client, m, self.rows);
        self.gemv_into(client, x, m, bias, &out, config)?;
        Ok(out)
    }

    /// The vector width (elements) of the loads: at most 16 bytes, dividing `cols` and the row
    /// stride, and matching the alignment of both the weight and `x`.
    fn vector_width<R: Runtime>(&self, client: &ComputeClient<R>, x: &Handle) -> usize {
        let size = self.dtype.size();
        let mut w = vector_width(client, size, self.cols);
        let offsets = [
            self.weight.offset_start.unwrap_or(0) as usize,
            x.offset_start.unwrap_or(0) as usize,
            self.row_stride * size,
        ];
        while w > 1 && offsets.iter().any(|o| !o.is_multiple_of(w * size)) {
            w /= 2;
        }
        w
    }

    /// [`gemv`](Self::gemv) into `out` (`[m, rows]` in the weight's dtype) with explicit launch
    /// parameters.
    pub fn gemv_into<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        bias: Option<&Handle>,
        out: &Handle,
        config: DenseConfig,
    ) -> Result<()> {
        let dtype = self.dtype;
        check_dtype(client, dtype)?;
        let (n, k, ld) = (self.rows, self.cols, self.row_stride);
        if m == 0 || m > MAX_GEMV_ROWS {
            return Err(QuantError::Device(format!(
                "the dense GEMV takes 1 to {MAX_GEMV_ROWS} rows, got {m}"
            )));
        }
        if n == 0 || k == 0 || ld < k {
            return Err(QuantError::Device(format!(
                "the dense GEMV takes a non-empty weight with rows at least `cols` apart, got \
                 [{n}, {k}] with rows {ld} apart"
            )));
        }
        let span = (n - 1) * ld + k;
        if span > u32::MAX as usize || m * n > u32::MAX as usize || m * k > u32::MAX as usize {
            return Err(QuantError::Device(format!(
                "the dense GEMV indexes in 32 bits: weight [{n}, {k}] (rows {ld} apart), {m} rows"
            )));
        }
        if config.use_plane && !planes_of_32(client) {
            return Err(QuantError::Device(
                "plane reduction needs planes of 32 units".into(),
            ));
        }
        let rows = config.rows_per_plane.clamp(1, 16);
        let planes = config.planes.clamp(1, 32);
        let depth = config.depth.clamp(1, 8);
        let split = config.split_k.max(1);
        if !planes.is_multiple_of(split) {
            return Err(QuantError::Device(format!(
                "split_k {split} must divide the planes per cube ({planes})"
            )));
        }
        let outputs = planes * rows * m;
        check_shared(
            client,
            4 * outputs * if config.use_plane { 1 } else { 33 },
            "dense GEMV",
        )?;
        check_capacity(&self.weight, span * dtype.size(), "dense GEMV weight")?;
        check_capacity(x, m * k * dtype.size(), "dense GEMV input")?;
        check_capacity(out, m * n * dtype.size(), "dense GEMV output")?;
        if let Some(b) = bias {
            check_capacity(b, n * dtype.size(), "dense GEMV bias")?;
        }
        let vw = self.vector_width(client, x);
        let groups = n.div_ceil(rows * planes / split);
        let cubes = if config.max_cubes > 0 {
            groups.min(config.max_cubes)
        } else {
            groups
        };
        let has_bias = bias.is_some();
        let bias = bias.cloned().unwrap_or_else(|| out.clone());
        with_float!(dtype, F => unsafe {
            dense_gemv_kernel::launch_unchecked::<F, R>(
                client,
                cube_count(client, cubes),
                CubeDim::new_2d(32, planes as u32),
                vw,
                ArrayArg::from_raw_parts(self.weight.clone(), span / vw),
                ArrayArg::from_raw_parts(x.clone(), m * k / vw),
                ArrayArg::from_raw_parts(bias, n),
                ArrayArg::from_raw_parts(out.clone(), m * n),
                n as u32,
                (k / vw) as u32,
                (ld / vw) as u32,
                m,
                rows,
                planes,
                depth,
                has_bias,
                config.use_plane,
                split,
            )
        });
        Ok(())
    }
}
