//! Dense GEMV / skinny GEMM for decode: `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])` with
//! the weight in f32, f16 or bf16 as Hugging Face stores it (`[out, in]`, row-major), for 1 to
//! [`MAX_GEMV_ROWS`] rows of x. Accumulates in f32 and rounds once.
//!
//! The time goes into reading the weight once: each plane of 32 units streams whole rows in
//! 16-byte vectors, coalesced along `in`, and the few rows of x come from the caches.

use cubecl::cmma::MmaDefinition;
use cubecl::ir::features::MmaConfig;
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

/// Two elements of an `mma` operand register (one 32-bit register of f16/bf16).
type Pair<F> = Vector<F, Const<2>>;
/// Two f32 accumulator elements.
type Acc = Vector<f32, Const<2>>;

/// Elements `e` and `e + 1` of `v`.
#[cube]
fn pair<F: Float, NV: Size>(v: Vector<F, NV>, #[comptime] e: usize) -> Pair<F> {
    let mut p = Pair::<F>::empty();
    p[0] = v[e];
    p[1] = v[e + 1];
    p
}

/// The tensor-core kernel for 2 to 16 rows of x (f16/bf16, `k` a multiple of 64, 16-byte
/// vectors): `mma.m16n8k16` with the weight as the A operand (16 rows), x as B (8 tokens per
/// tile; `tiles` tiles) and f32 accumulators.
///
/// A plane owns 16 weight rows and walks `in` in blocks of 64: unit `(g, t)` (`g = lane / 4`,
/// `t = lane % 4`) loads elements `16t..16t + 16` of the block from rows `g` and `g + 8` and of
/// token `g` of each tile, as two 16-byte vectors each: whole 128-byte lines per row, no
/// shuffles. The sum over `in` does not depend on its order, so the four `mma` steps of a block
/// take their k columns in a permuted order that is the same for A and B: step `s` gives unit
/// `t` the logical columns `2t, 2t + 1` = block elements `16t + 4s + {0, 1}` and `2t + 8, 2t + 9`
/// = `16t + 4s + {2, 3}`; over the four steps every element of the block is used once.
///
/// Rows past `n` re-read row `n - 1` and tokens past `m` token `m - 1`; their results are never
/// written. `split` planes share a row tile and take turns over the blocks (split-K); their
/// accumulators meet in shared memory.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_mma_kernel<F: Float, NV: Size>(
    w: &Array<Vector<F, NV>>,
    x: &Array<Vector<F, NV>>,
    bias: &Array<F>,
    y: &mut Array<F>,
    n_rows: u32,
    k_vectors: u32,
    row_vectors: u32,
    m_rows: u32,
    #[comptime] tiles: usize,
    #[comptime] planes: usize,
    #[comptime] depth: usize,
    #[comptime] split: usize,
    #[comptime] has_bias: bool,
) {
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let g = lane / 4;
    let t = lane % 4;
    let n = n_rows as usize;
    let kv = k_vectors as usize;
    let ld = row_vectors as usize;
    let m = m_rows as usize;
    let blocks = kv / 8;
    let sets = comptime!(planes / split);
    let set = warp / split;
    let kpart = warp % split;
    let accs = comptime!(tiles * 2);
    let mut shared = SharedMemory::<f32>::new(if split > 1 {
        comptime!(planes * 32 * tiles * 4)
    } else {
        1usize
    });
    let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);

    let groups = n.div_ceil(comptime!(16 * sets));
    let mut gi = CUBE_POS;
    while gi < groups {
        let row0 = (gi * sets + set) * 16;
        let ra = min(row0 + g, n - 1) * ld + 2 * t;
        let rb = min(row0 + g + 8, n - 1) * ld + 2 * t;
        let mut xbase = Array::<usize>::new(tiles);
        #[unroll]
        for j in 0..tiles {
            xbase[j] = min(j * 8 + g, m - 1) * kv + 2 * t;
        }
        let mut acc = Array::<Acc>::new(accs);
        #[unroll]
        for i in 0..accs {
            acc[i] = Acc::new(0.0);
        }

        let mut blk = kpart * depth;
        while blk < blocks {
            // All loads of `depth` blocks first (blocks past the end re-read the last one and
            // are skipped below), then the products.
            let mut wr = Array::<Vector<F, NV>>::new(comptime!(depth * 4));
            let mut xr = Array::<Vector<F, NV>>::new(comptime!(depth * tiles * 2));
            #[unroll]
            for d in 0..depth {
                let c = min(blk + d, blocks - 1) * 8;
                wr[d * 4] = w[ra + c];
                wr[d * 4 + 1] = w[ra + c + 1];
                wr[d * 4 + 2] = w[rb + c];
                wr[d * 4 + 3] = w[rb + c + 1];
                #[unroll]
                for j in 0..tiles {
                    xr[(d * tiles + j) * 2] = x[xbase[j] + c];
                    xr[(d * tiles + j) * 2 + 1] = x[xbase[j] + c + 1];
                }
            }
            #[unroll]
            for d in 0..depth {
                if blk + d < blocks {
                    #[unroll]
                    for s in 0..4usize {
                        let v = comptime!(s / 2);
                        let e = comptime!(4 * (s % 2));
                        let mut a = Array::<Pair<F>>::new(4usize);
                        a[0] = pair::<F, NV>(wr[d * 4 + v], e);
                        a[1] = pair::<F, NV>(wr[d * 4 + 2 + v], e);
                        a[2] = pair::<F, NV>(wr[d * 4 + v], comptime!(e + 2));
                        a[3] = pair::<F, NV>(wr[d * 4 + 2 + v], comptime!(e + 2));
                        #[unroll]
                        for j in 0..tiles {
                            let xv = xr[(d * tiles + j) * 2 + v];
                            let mut b = Array::<Pair<F>>::new(2usize);
                            b[0] = pair::<F, NV>(xv, e);
                            b[1] = pair::<F, NV>(xv, comptime!(e + 2));
                            let mut c = Array::<Acc>::new(2usize);
                            c[0] = acc[2 * j];
                            c[1] = acc[2 * j + 1];
                            def.execute_inplace(&a, &b, &mut c);
                            acc[2 * j] = c[0];
                            acc[2 * j + 1] = c[1];
                        }
                    }
                }
            }
            blk += comptime!(depth * split);
        }

        if comptime!(split > 1) {
            let base = (warp * 32 + lane) * comptime!(tiles * 4);
            #[unroll]
            for i in 0..accs {
                let a = acc[i];
                shared[base + 2 * i] = a[0];
                shared[base + 2 * i + 1] = a[1];
            }
            sync_cube();
        }
        if kpart == 0 {
            // acc[2j + h][e]: weight row `g + 8h` of the tile, token `8j + 2t + e`.
            #[unroll]
            for j in 0..tiles {
                #[unroll]
                for h in 0..2usize {
                    #[unroll]
                    for e in 0..2usize {
                        let i = 2 * j + h;
                        let mut v = acc[i][e];
                        if comptime!(split > 1) {
                            #[unroll]
                            for p in 1..split {
                                let other = ((set * split + p) * 32 + lane) * comptime!(tiles * 4);
                                v += shared[other + 2 * i + e];
                            }
                        }
                        let row = row0 + g + 8 * h;
                        let token = j * 8 + 2 * t + e;
                        if row < n && token < m {
                            if comptime!(has_bias) {
                                v += f32::cast_from(bias[row]);
                            }
                            y[token * n + row] = F::cast_from(v);
                        }
                    }
                }
            }
        }
        if comptime!(split > 1) {
            sync_cube();
        }
        gi += CUBE_COUNT;
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
    /// Run the tensor-core kernel with these parameters where it applies (f16/bf16, `in` a
    /// multiple of 64, 16-byte aligned rows, `mma.m16n8k16` on the device); the fields above
    /// then apply where it does not.
    pub tensor_cores: Option<MmaLaunch>,
}

/// Launch parameters of the tensor-core kernel (16 weight rows per plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmaLaunch {
    /// Planes per cube.
    pub planes: usize,
    /// Blocks of 64 elements of each row a unit loads before using any (1 to 4).
    pub depth: usize,
    /// Planes that share a row tile and split `in` between them (divides `planes`).
    pub split_k: usize,
}

impl MmaLaunch {
    /// The default for `out_features` weight rows on a device with `sms` multiprocessors:
    /// split-K until there are about 16 planes per multiprocessor.
    pub fn default_for(sms: usize, out_features: usize) -> Self {
        let planes = 4;
        let tiles = out_features.div_ceil(16);
        let mut split_k = 1;
        while split_k * 2 <= planes && tiles * split_k < sms.max(1) * 16 {
            split_k *= 2;
        }
        MmaLaunch {
            planes,
            depth: 2,
            split_k,
        }
    }
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
                tensor_cores: None,
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
            tensor_cores: (m >= 2 && has_mma(client))
                .then(|| MmaLaunch::default_for(sms, out_features)),
        }
    }
}

/// `mma.m16n8k16` with f32 accumulation for f16 and bf16, on planes of 32.
fn has_mma<R: Runtime>(client: &ComputeClient<R>) -> bool {
    planes_of_32(client)
        && [FloatDtype::F16, FloatDtype::BF16]
            .into_iter()
            .all(|d| mma_for(client, d))
}

fn mma_for<R: Runtime>(client: &ComputeClient<R>, dtype: FloatDtype) -> bool {
    let storage = with_float!(dtype, F => F::as_type_native_unchecked().storage_type());
    let config = MmaConfig {
        a_type: storage,
        b_type: storage,
        cd_type: f32::as_type_native_unchecked().storage_type(),
        m: 16,
        n: 8,
        k: 16,
    };
    client.features().matmul.mma.contains(&config)
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
        check_capacity(&self.weight, span * dtype.size(), "dense GEMV weight")?;
        check_capacity(x, m * k * dtype.size(), "dense GEMV input")?;
        check_capacity(out, m * n * dtype.size(), "dense GEMV output")?;
        if let Some(b) = bias {
            check_capacity(b, n * dtype.size(), "dense GEMV bias")?;
        }
        let vw = self.vector_width(client, x);
        if let Some(tc) = config.tensor_cores
            && dtype != FloatDtype::F32
            && vw * dtype.size() == 16
            && k.is_multiple_of(64)
            && planes_of_32(client)
            && mma_for(client, dtype)
        {
            return self.mma_into(client, x, m, bias, out, tc, vw);
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

    /// The tensor-core kernel (checked by the caller: f16/bf16, 16-byte vectors `vw`, `in` a
    /// multiple of 64, capacities).
    #[allow(clippy::too_many_arguments)]
    fn mma_into<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        bias: Option<&Handle>,
        out: &Handle,
        launch: MmaLaunch,
        vw: usize,
    ) -> Result<()> {
        let (n, k, ld) = (self.rows, self.cols, self.row_stride);
        let planes = launch.planes.clamp(1, 32);
        let depth = launch.depth.clamp(1, 4);
        let split = launch.split_k.max(1);
        if !planes.is_multiple_of(split) {
            return Err(QuantError::Device(format!(
                "split_k {split} must divide the planes per cube ({planes})"
            )));
        }
        let tiles = m.div_ceil(8);
        if split > 1 {
            check_shared(
                client,
                4 * planes * 32 * tiles * 4,
                "dense tensor-core GEMV",
            )?;
        }
        let span = (n - 1) * ld + k;
        let cubes = n.div_ceil(16 * (planes / split));
        let has_bias = bias.is_some();
        let bias = bias.cloned().unwrap_or_else(|| out.clone());
        macro_rules! launch {
            ($F:ty) => {
                unsafe {
                    dense_mma_kernel::launch_unchecked::<$F, R>(
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
                        m as u32,
                        tiles,
                        planes,
                        depth,
                        split,
                        has_bias,
                    )
                }
            };
        }
        match self.dtype {
            FloatDtype::F16 => launch!(half::f16),
            FloatDtype::BF16 => launch!(half::bf16),
            FloatDtype::F32 => {
                return Err(QuantError::Device(
                    "the tensor-core GEMV computes in f16 or bf16".into(),
                ));
            }
        }
        Ok(())
    }
}
