//! LLM.int8 on the device for few rows: activations quantized per row with the outlier
//! columns held out, an int8 x int8 -> int32 GEMV straight from the packed weight, and the
//! outlier columns multiplied in float against the dequantized weight columns.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::device::{MAX_GEMV_ROWS, check_capacity, check_shared, split_for};
use super::gemv4::{plane_totals, split_total};
use super::{check_dtype, cube_count, planes_of_32, upload_f32, upload_padded, with_float};
use crate::codec::Int8Rowwise;
use crate::codec::int8::{INV_127, INV_127_SQ};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// Bytes of a weight row per chunk a unit reads at once.
const CHUNK: usize = 16;
/// Units per cube of the activation kernels.
const THREADS: usize = 256;

/// The value bitsandbytes quantizes: the activation rounded to f16.
#[cube]
fn as_f16<F: Float>(v: F) -> f32 {
    // Through f32: the device may have no direct bf16 -> f16 conversion.
    f32::cast_from(half::f16::cast_from(f32::cast_from(v)))
}

/// Whether column `c` is an outlier column: any of the `m` rows holds |x| >= threshold there
/// (x rounded to f16). Computed where it is needed: the rows are few.
#[cube]
fn outlier_column<F: Float>(x: &Array<F>, c: usize, m: usize, k: usize, threshold: f32) -> u32 {
    let mut any = 0u32;
    for i in 0..m {
        if as_f16::<F>(x[i * k + c]).abs() >= threshold {
            any = 1;
        }
    }
    any
}

/// Cubes `0..m`: row `i` of the activations to int8 (`round(v * 127 / rowmax)`, outliers left
/// out of the max and quantized to 0, outlier columns zeroed when `m > 1`), zero-padded to
/// `k_padded` columns, and its row max. Cube `m`: the outlier columns, ascending.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn int8_rows_kernel<F: Float>(
    x: &Array<F>,
    ca: &mut Array<i32>,
    rowmax: &mut Array<f32>,
    outliers: &mut Array<u32>,
    n_outliers: &mut Array<u32>,
    m: u32,
    k: u32,
    k_padded: u32,
    threshold: f32,
    #[comptime] use_threshold: bool,
) {
    let mut red = SharedMemory::<f32>::new(THREADS);
    let mut counts = SharedMemory::<u32>::new(THREADS);
    let t = UNIT_POS as usize;
    let kk = k as usize;
    let row = CUBE_POS;
    let rows = m as usize;
    if row < rows {
        let mut mx = 0.0f32;
        let mut c = t;
        while c < kk {
            let a = as_f16::<F>(x[row * kk + c]).abs();
            if !use_threshold || a < threshold {
                mx = max(mx, a);
            }
            c += THREADS;
        }
        red[t] = mx;
        sync_cube();
        #[unroll]
        for step in 0..8u32 {
            let s = comptime!(128usize >> step);
            if t < s {
                let other = red[t + s];
                red[t] = max(red[t], other);
            }
            sync_cube();
        }
        let rm = red[0];
        let scale = (1.0f32 / rm) * 127.0f32;
        let kp = k_padded as usize;
        let mut c2 = t;
        while c2 < kp {
            let mut q = 0i32;
            if c2 < kk && rm != 0.0 {
                let mut v = as_f16::<F>(x[row * kk + c2]);
                if use_threshold && v.abs() >= threshold {
                    v = 0.0;
                }
                q = i32::cast_from((v * scale).round());
                if use_threshold && rows > 1 && outlier_column::<F>(x, c2, rows, kk, threshold) != 0
                {
                    q = 0;
                }
            }
            ca[row * kp + c2] = q;
            c2 += THREADS;
        }
        if t == 0 {
            rowmax[row] = rm;
        }
    } else if row == rows {
        // Compaction of the outlier columns: each unit counts a contiguous segment, unit 0 scans.
        let seg = kk.div_ceil(THREADS);
        let lo = min(t * seg, kk);
        let hi = min(lo + seg, kk);
        let mut count = 0u32;
        if use_threshold {
            for c in lo..hi {
                count += outlier_column::<F>(x, c, rows, kk, threshold);
            }
        }
        counts[t] = count;
        sync_cube();
        if t == 0 {
            let mut acc = 0u32;
            for i in 0..THREADS {
                let v = counts[i];
                counts[i] = acc;
                acc += v;
            }
            n_outliers[0] = acc;
        }
        sync_cube();
        if use_threshold {
            let mut at = counts[t] as usize;
            for c in lo..hi {
                if outlier_column::<F>(x, c, rows, kk, threshold) != 0 {
                    outliers[at] = c as u32;
                    at += 1;
                }
            }
        }
    }
}

/// Sign-extends byte `b` (0..4) of a u32 word.
#[cube]
fn signed_byte(word: u32, #[comptime] b: u32) -> i32 {
    if comptime!(b == 3) {
        i32::cast_from(word) >> 24
    } else {
        i32::cast_from(word << comptime!(24 - 8 * b)) >> 24
    }
}

/// The int8 GEMV with the LLM.int8 epilogue. Each plane of 32 owns `rows` weight rows, each
/// unit a 16-byte chunk of each per step.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn int8_gemv_kernel<F: Float>(
    weight: &Array<Vector<u32, Const<4>>>,
    scb: &Array<f32>,
    ca: &Array<Vector<i32, Const<4>>>,
    sca: &Array<f32>,
    x: &Array<F>,
    outliers: &Array<u32>,
    n_outliers: &Array<u32>,
    bias: &Array<F>,
    y: &mut Array<F>,
    n_rows: u32,
    k: u32,
    chunks: u32,
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
    let mut totals = SharedMemory::<i32>::new(comptime!(planes * rows * m));
    let mut partial = SharedMemory::<i32>::new(if use_plane {
        1usize
    } else {
        comptime!(planes * rows * m * 32)
    });

    let n = n_rows as usize;
    let kk = k as usize;
    let cpr = chunks as usize;
    let n_out = n_outliers[0] as usize;
    // `split` consecutive planes share their rows and split each row's chunks between them.
    let set = warp / split;
    let kpart = warp % split;
    let group_rows = comptime!(planes / split * rows);
    let groups = n.div_ceil(group_rows);

    let mut g = CUBE_POS;
    while g < groups {
        let row0 = g * group_rows + set * rows;
        let mut row_of = Array::<usize>::new(rows);
        #[unroll]
        for r in 0..rows {
            row_of[r] = min(row0 + r, n - 1);
        }
        let mut acc = Array::<i32>::new(comptime!(rows * m));
        #[unroll]
        for i in 0..comptime!(rows * m) {
            acc[i] = 0;
        }
        let mut c = lane + kpart * comptime!(32 * depth);
        while c < cpr {
            // The 16-byte loads of `depth` chunks of every row first; past the row's end the
            // unit re-reads its first chunk with the weights zeroed.
            let mut w = Array::<u32>::new(comptime!(depth * rows * 4));
            let mut cbase = Array::<usize>::new(depth);
            #[unroll]
            for d in 0..depth {
                let cd = c + d * 32;
                let valid = cd < cpr;
                let cc = select(valid, cd, c);
                cbase[d] = cc;
                #[unroll]
                for r in 0..rows {
                    let v = weight[row_of[r] * cpr + cc];
                    #[unroll]
                    for j in 0..4usize {
                        w[(d * rows + r) * 4 + j] = select(valid, v[j], 0u32);
                    }
                }
            }
            #[unroll]
            for d in 0..depth {
                let cc = cbase[d];
                #[unroll]
                for j in 0..4usize {
                    let mut q = Array::<i32>::new(comptime!(rows * 4));
                    #[unroll]
                    for r in 0..rows {
                        #[unroll]
                        for b in 0..4u32 {
                            q[r * 4 + b as usize] = signed_byte(w[(d * rows + r) * 4 + j], b);
                        }
                    }
                    #[unroll]
                    for mi in 0..m {
                        let a = ca[mi * cpr * 4 + cc * 4 + j];
                        #[unroll]
                        for r in 0..rows {
                            let mut s = acc[r * m + mi];
                            #[unroll]
                            for b in 0..4usize {
                                s += a[b] * q[r * 4 + b];
                            }
                            acc[r * m + mi] = s;
                        }
                    }
                }
            }
            c += comptime!(32 * depth * split);
        }

        plane_totals(
            &acc,
            &mut totals,
            &mut partial,
            comptime!(rows * m),
            use_plane,
        );
        // One unit per output finishes it: the int8 product rescaled, and the outlier columns
        // in float against the weight column dequantized and rounded to the input dtype.
        if kpart == 0 {
            let mut i = lane;
            while i < comptime!(rows * m) {
                let r = i / m;
                let mi = i % m;
                let row = row0 + r;
                if row < n {
                    let total = split_total(&totals, warp, i, comptime!(rows * m), split);
                    let sb = scb[row];
                    let mut v = (f32::cast_from(total) * (sca[mi] * sb)) * INV_127_SQ;
                    if comptime!(has_bias) {
                        v += f32::cast_from(bias[row]);
                    }
                    if n_out > 0 {
                        let mut sub = 0.0f32;
                        for o in 0..n_out {
                            let col = outliers[o] as usize;
                            let word = weight[row * cpr + col / 16][(col % 16) / 4];
                            let sh = ((3 - col % 4) * 8) as u32;
                            let qv = i32::cast_from(word << sh) >> 24;
                            let wv =
                                f32::cast_from(F::cast_from((f32::cast_from(qv) * sb) * INV_127));
                            sub += f32::cast_from(x[mi * kk + col]) * wv;
                        }
                        v = f32::cast_from(F::cast_from(v)) + sub;
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

/// An int8 Linear weight on the device: rows of `cols` int8 values packed four per u32 word
/// (little-endian), each row zero-padded to a multiple of 16 bytes, and the row scales (`SCB`).
#[derive(Debug, Clone)]
pub struct DeviceInt8 {
    /// The packed rows.
    pub weight: Handle,
    /// Row absmax (`SCB`), f32.
    pub scb: Handle,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

/// Launch parameters of the int8 GEMV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Int8Config {
    /// Weight rows per plane of 32 units.
    pub rows_per_plane: usize,
    /// Planes per cube.
    pub planes: usize,
    /// Reduce with plane operations (needs planes of 32).
    pub use_plane: bool,
    /// 16-byte chunks of each row a unit loads before using any (1 to 4).
    pub depth: usize,
    /// Most cubes launched; 0 for one cube per row group.
    pub max_cubes: usize,
    /// Planes that share their rows and split each row's chunks between them (split-K; it
    /// divides `planes`).
    pub split_k: usize,
}

impl Int8Config {
    /// The default for `m` rows on this device.
    pub fn default_for<R: Runtime>(
        client: &ComputeClient<R>,
        m: usize,
        out_features: usize,
    ) -> Self {
        let sms = client
            .properties()
            .hardware
            .num_streaming_multiprocessors
            .unwrap_or(0) as usize;
        let use_plane = planes_of_32(client);
        let rows_per_plane = match (use_plane, m <= 4) {
            (true, true) => 4,
            (true, false) => 2,
            (false, _) => 1,
        };
        let planes = match (use_plane, out_features >= 8192) {
            (true, true) => 8,
            (true, false) => 4,
            (false, _) => 2,
        };
        // Split-K at m = 1 on layers of few rows, where it measured faster on the H200
        // (4096x4096: 17.8 us against 22.7; 4096x14336: 36.4 against 53.2); at 14336 rows and
        // more, and for m > 1, it measured slower.
        let split_k = if use_plane && m == 1 && out_features < 8192 {
            split_for(sms, out_features, rows_per_plane, planes)
        } else {
            1
        };
        Int8Config {
            rows_per_plane,
            planes,
            use_plane,
            depth: if use_plane { 2 } else { 1 },
            max_cubes: if split_k > 1 { sms * 8 } else { sms * 4 },
            split_k,
        }
    }
}

impl DeviceInt8 {
    /// Bytes of a padded row.
    pub fn row_bytes(&self) -> usize {
        self.cols.div_ceil(CHUNK) * CHUNK
    }

    /// Uploads a row-wise int8 weight.
    pub fn upload<R: Runtime>(client: &ComputeClient<R>, w: &Int8Rowwise) -> Self {
        let (rows, cols) = (w.rows(), w.cols());
        let row_bytes = cols.div_ceil(CHUNK) * CHUNK;
        let mut bytes = vec![0u8; rows * row_bytes];
        if cols > 0 {
            for (dst, src) in bytes.chunks_mut(row_bytes).zip(w.data().chunks(cols)) {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = *s as u8;
                }
            }
        }
        DeviceInt8 {
            weight: upload_padded(client, &bytes, 16),
            scb: upload_f32(client, w.scales()),
            rows,
            cols,
        }
    }

    /// The LLM.int8 forward of [`crate::codec::int8_linear`] for `m` (1..=16) rows of `x`
    /// (`[m, cols]` in `dtype`): a new `[m, rows]` buffer in `dtype`.
    pub fn linear<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        dtype: FloatDtype,
        bias: Option<&Handle>,
        threshold: f64,
    ) -> Result<Handle> {
        let out = client.empty((m * self.rows * dtype.size()).max(4));
        let config = Int8Config::default_for(client, m, self.rows);
        self.linear_into(client, x, m, dtype, bias, threshold, &out, config)?;
        Ok(out)
    }

    /// [`linear`](Self::linear) into `out` with explicit launch parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_into<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        dtype: FloatDtype,
        bias: Option<&Handle>,
        threshold: f64,
        out: &Handle,
        config: Int8Config,
    ) -> Result<()> {
        check_dtype(client, dtype)?;
        // Activations are quantized from f16, as bitsandbytes does.
        check_dtype(client, FloatDtype::F16)?;
        let (n, k) = (self.rows, self.cols);
        if m == 0 || m > MAX_GEMV_ROWS {
            return Err(QuantError::Device(format!(
                "the int8 GEMV takes 1 to {MAX_GEMV_ROWS} rows, got {m}"
            )));
        }
        if n == 0 || k == 0 || k > 65536 {
            return Err(QuantError::Device(format!(
                "the int8 GEMV takes 1 to 65536 input features and at least one output, got [{n}, {k}]"
            )));
        }
        if !(threshold >= 0.0 && threshold.is_finite()) {
            return Err(QuantError::InvalidConfig(format!(
                "int8 threshold must be >= 0, got {threshold}"
            )));
        }
        if config.use_plane && !planes_of_32(client) {
            return Err(QuantError::Device(
                "plane reduction needs planes of 32 units".into(),
            ));
        }
        check_capacity(x, m * k * dtype.size(), "int8 GEMV input")?;
        check_capacity(out, m * n * dtype.size(), "int8 GEMV output")?;
        if let Some(b) = bias {
            check_capacity(b, n * dtype.size(), "int8 GEMV bias")?;
        }
        let kp = self.row_bytes();
        let use_threshold = threshold > 0.0;
        let thr = half::f16::from_f64(threshold).to_f32();
        let ca = client.empty(m * kp * 4);
        let rowmax = client.empty(m * 4);
        let outliers = client.empty(k * 4);
        let n_out = client.empty(4);
        let rows = config.rows_per_plane.max(1);
        let planes = config.planes.clamp(1, 32);
        let depth = config.depth.clamp(1, 4);
        let split = config.split_k.max(1);
        if !planes.is_multiple_of(split) {
            return Err(QuantError::Device(format!(
                "split_k {split} must divide the planes per cube ({planes})"
            )));
        }
        let groups = n.div_ceil(rows * planes / split);
        let cubes = if config.max_cubes > 0 {
            groups.min(config.max_cubes)
        } else {
            groups
        };
        let outputs = planes * rows * m;
        check_shared(
            client,
            4 * outputs * if config.use_plane { 1 } else { 33 },
            "int8 GEMV",
        )?;
        let has_bias = bias.is_some();
        let bias = bias.cloned().unwrap_or_else(|| out.clone());
        with_float!(dtype, F => unsafe {
            int8_rows_kernel::launch_unchecked::<F, R>(
                client,
                CubeCount::Static(m as u32 + 1, 1, 1),
                CubeDim::new_1d(THREADS as u32),
                ArrayArg::from_raw_parts(x.clone(), m * k),
                ArrayArg::from_raw_parts(ca.clone(), m * kp),
                ArrayArg::from_raw_parts(rowmax.clone(), m),
                ArrayArg::from_raw_parts(outliers.clone(), k),
                ArrayArg::from_raw_parts(n_out.clone(), 1),
                m as u32,
                k as u32,
                kp as u32,
                thr,
                use_threshold,
            );
            int8_gemv_kernel::launch_unchecked::<F, R>(
                client,
                cube_count(client, cubes),
                CubeDim::new_2d(32, planes as u32),
                ArrayArg::from_raw_parts(self.weight.clone(), n * kp / 16),
                ArrayArg::from_raw_parts(self.scb.clone(), n),
                ArrayArg::from_raw_parts(ca, m * kp / 4),
                ArrayArg::from_raw_parts(rowmax, m),
                ArrayArg::from_raw_parts(x.clone(), m * k),
                ArrayArg::from_raw_parts(outliers, k),
                ArrayArg::from_raw_parts(n_out, 1),
                ArrayArg::from_raw_parts(bias, n),
                ArrayArg::from_raw_parts(out.clone(), m * n),
                n as u32,
                k as u32,
                (kp / CHUNK) as u32,
                m,
                rows,
                planes,
                depth,
                has_bias,
                config.use_plane,
                split,
            );
        });
        Ok(())
    }
}
