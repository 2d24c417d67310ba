//! 4-bit weights on the device: upload, dequantize, fused GEMV.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::dequant::{WORDS_PER_UNIT, absmax_kernel, dequant4_kernel};
use super::gemv4::{CHUNK, gemv4_kernel};
use super::{
    check_dtype, cube_count, planes_of_32, upload_f32, upload_padded, vector_width, with_float,
};
use crate::codec::{Absmax, FourBitType, Quantized4bit, check_blocksize};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// The most rows of `x` the fused GEMV takes in one launch (more go through
/// [`DeviceQuant4::dequantize`] and a matmul).
pub const MAX_GEMV_ROWS: usize = 16;

/// The absmax of a [`DeviceQuant4`].
#[derive(Debug, Clone)]
pub enum DeviceAbsmax {
    /// One f32 per block.
    Plain(Handle),
    /// Double-quantized: 8-bit codes (little-endian u32 words, four per word), one f32 per
    /// 256 codes, the 256-entry code and the offset.
    Nested {
        /// The per-block codes, four per u32 word.
        codes: Handle,
        /// One f32 absmax per 256 codes.
        absmax: Handle,
        /// The 256-entry f32 code.
        code: Handle,
        /// The mean added back after dequantizing.
        offset: f32,
    },
}

/// A 4-bit tensor on the device, exactly in bitsandbytes' layout: the packed bytes (first
/// element in the high nibble) as little-endian u32 words, zero-padded to a multiple of 16
/// bytes, and the per-block absmax over the flattened tensor.
#[derive(Debug, Clone)]
pub struct DeviceQuant4 {
    /// Packed codes as u32 words (length a multiple of 4 words).
    pub packed: Handle,
    /// The per-block absmax.
    pub absmax: DeviceAbsmax,
    /// The 16-entry f32 code table.
    pub code: Handle,
    /// NF4 or FP4.
    pub quant_type: FourBitType,
    /// Elements per block.
    pub blocksize: usize,
    /// `[out, in]` for a Linear weight; any shape for dequantization.
    pub shape: Vec<usize>,
}

/// How the GEMV kernel turns codes into values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LutMode {
    /// A 16-entry table in shared memory, one lookup per code (never bank-conflicted).
    Single,
    /// A 256-entry table of code pairs, one lookup per byte, replicated `copies` times
    /// (1, 2, 4, 8 or 16) to spread the lookups of a plane over the banks.
    Pairs(usize),
}

/// Launch parameters of the fused GEMV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemvConfig {
    /// Weight rows per plane of 32 units.
    pub rows_per_plane: usize,
    /// Planes per cube.
    pub planes: usize,
    /// Code lookup.
    pub lut: LutMode,
    /// Reduce with plane operations (needs planes of 32) rather than shared memory.
    pub use_plane: bool,
    /// 16-byte chunks of each row a unit loads before decoding any (1 to 4): more bytes in
    /// flight per unit.
    pub depth: usize,
    /// Most cubes launched (they stride over the row groups); 0 for one cube per group.
    pub max_cubes: usize,
    /// Planes that share their rows and split each row's chunks between them (split-K; it
    /// divides `planes`): more planes in flight when there are few rows.
    pub split_k: usize,
}

/// The split-K factor for `out_features` rows in sets of `rows` (one plane per set
/// unsplit): doubled while it divides `planes` and the device would otherwise hold fewer than
/// 32 planes per multiprocessor.
pub(crate) fn split_for(sms: usize, out_features: usize, rows: usize, planes: usize) -> usize {
    let unsplit = out_features.div_ceil(rows.max(1));
    let mut split = 1;
    while split * 2 <= planes && unsplit * split < sms * 32 {
        split *= 2;
    }
    split
}

impl GemvConfig {
    /// The default for `m` rows of x on this device.
    pub fn default_for<R: Runtime>(
        client: &ComputeClient<R>,
        m: usize,
        out_features: usize,
    ) -> Self {
        let use_plane = planes_of_32(client);
        let max_shared = client.properties().hardware.max_shared_memory_size;
        // Without planes the reduction goes through shared memory: keep the cubes small.
        let rows_per_plane = match (use_plane, m <= 4) {
            (true, true) => 4,
            (true, false) => 2,
            (false, _) => 1,
        };
        // Keep enough cubes for every SM: small layers get smaller cubes, except at m = 1,
        // where 8 planes split-K (below) measured fastest on the H200 (4096x4096: 11.5 us
        // against 12.9 us unsplit and 16.8 us with 4 planes split by 4).
        let planes = match (use_plane, out_features >= 8192 || m == 1) {
            (true, true) => 8,
            (true, false) => 4,
            (false, _) => 2,
        };
        let copies = if max_shared >= 64 * 1024 { 16 } else { 1 };
        let sms = client
            .properties()
            .hardware
            .num_streaming_multiprocessors
            .unwrap_or(0) as usize;
        // Split-K only at m = 1: at m = 16 it measured slower (x is re-read per plane).
        let split_k = if use_plane && m == 1 {
            split_for(sms, out_features, rows_per_plane, planes)
        } else {
            1
        };
        GemvConfig {
            rows_per_plane,
            planes,
            lut: LutMode::Pairs(copies),
            use_plane,
            depth: if use_plane { 2 } else { 1 },
            max_cubes: if split_k > 1 { sms * 8 } else { sms * 4 },
            split_k,
        }
    }
}

impl DeviceQuant4 {
    /// Uploads a quantized tensor.
    pub fn upload<R: Runtime>(client: &ComputeClient<R>, q: &Quantized4bit) -> Self {
        let packed = upload_padded(client, q.packed(), 16);
        let absmax = match q.absmax() {
            Absmax::Plain(a) => DeviceAbsmax::Plain(upload_f32(client, a)),
            Absmax::Nested(n) => DeviceAbsmax::Nested {
                codes: upload_padded(client, n.codes(), 4),
                absmax: upload_f32(client, n.absmax()),
                code: upload_f32(client, n.code()),
                offset: n.offset(),
            },
        };
        DeviceQuant4 {
            packed,
            absmax,
            code: upload_f32(client, q.quant_type().code()),
            quant_type: q.quant_type(),
            blocksize: q.blocksize(),
            shape: q.shape().to_vec(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn is_nested(&self) -> bool {
        matches!(self.absmax, DeviceAbsmax::Nested { .. })
    }

    /// The absmax-related kernel arguments: (absmax, nested codes, nested absmax, nested code,
    /// offset); the unused ones are the packed buffer, never read.
    fn absmax_args(&self) -> (Handle, Handle, Handle, Handle, f32) {
        match &self.absmax {
            DeviceAbsmax::Plain(a) => (
                a.clone(),
                self.packed.clone(),
                a.clone(),
                self.code.clone(),
                0.0,
            ),
            DeviceAbsmax::Nested {
                codes,
                absmax,
                code,
                offset,
            } => (
                absmax.clone(),
                codes.clone(),
                absmax.clone(),
                code.clone(),
                *offset,
            ),
        }
    }

    /// The per-block absmax as a new f32 buffer, nested ones dequantized by the kernels' own
    /// expression (so a layer given these as a plain absmax computes the same values).
    pub fn absmax_f32<R: Runtime>(&self, client: &ComputeClient<R>) -> Result<Handle> {
        check_blocksize(self.blocksize)?;
        let blocks = self.numel().div_ceil(self.blocksize);
        if blocks > u32::MAX as usize {
            return Err(QuantError::Device(format!(
                "{blocks} absmax blocks exceed the kernels' 32-bit indexing"
            )));
        }
        let out = client.empty((blocks * 4).max(4));
        if blocks == 0 {
            return Ok(out);
        }
        let (absmax, ncodes, nabsmax, ncode, offset) = self.absmax_args();
        let threads = 256usize;
        // SAFETY: unit `b < blocks` reads block `b`'s absmax (or its code word and nested
        // absmax) and writes `out[b]`; `out` holds `blocks` f32 values.
        unsafe {
            absmax_kernel::launch_unchecked::<R>(
                client,
                cube_count(client, blocks.div_ceil(threads)),
                CubeDim::new_1d(threads as u32),
                ArrayArg::from_raw_parts(absmax, 1),
                ArrayArg::from_raw_parts(ncodes, 1),
                ArrayArg::from_raw_parts(nabsmax, 1),
                ArrayArg::from_raw_parts(ncode, 1),
                ArrayArg::from_raw_parts(self.code.clone(), 16),
                ArrayArg::from_raw_parts(out.clone(), blocks),
                blocks as u32,
                offset,
                self.is_nested(),
            );
        }
        Ok(out)
    }

    /// Dequantizes into a new buffer of `numel` elements of `dtype`: `code[q] * absmax` in f32,
    /// rounded once to `dtype`, as [`Quantized4bit::dequantize`] computes it.
    pub fn dequantize<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        dtype: FloatDtype,
    ) -> Result<Handle> {
        let out = client.empty((self.numel() * dtype.size()).max(4));
        self.dequantize_into(client, &out, dtype)?;
        Ok(out)
    }

    /// [`dequantize`](Self::dequantize) into `out` (at least `numel` elements of `dtype`).
    pub fn dequantize_into<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        out: &Handle,
        dtype: FloatDtype,
    ) -> Result<()> {
        check_dtype(client, dtype)?;
        check_blocksize(self.blocksize)?;
        let numel = self.numel();
        if numel == 0 {
            return Ok(());
        }
        if numel > u32::MAX as usize {
            return Err(QuantError::Device(format!(
                "4-bit tensor of {numel} elements exceeds the kernels' 32-bit indexing"
            )));
        }
        check_capacity(out, numel * dtype.size(), "dequantize output")?;
        let mut vo = vector_width(client, dtype.size(), numel).min(8);
        let offset_bytes = out.offset_start.unwrap_or(0) as usize;
        while vo > 1 && !offset_bytes.is_multiple_of(vo * dtype.size()) {
            vo /= 2;
        }
        let threads = 256usize;
        let words = numel.div_ceil(8);
        let (absmax, ncodes, nabsmax, ncode, offset) = self.absmax_args();
        let count = cube_count(client, words.div_ceil(threads * WORDS_PER_UNIT));
        let nested = self.is_nested();
        with_float!(dtype, F => unsafe {
            dequant4_kernel::launch_unchecked::<F, R>(
                client,
                count,
                CubeDim::new_1d(threads as u32),
                vo,
                ArrayArg::from_raw_parts(self.packed.clone(), words),
                ArrayArg::from_raw_parts(absmax, 1),
                ArrayArg::from_raw_parts(ncodes, 1),
                ArrayArg::from_raw_parts(nabsmax, 1),
                ArrayArg::from_raw_parts(ncode, 1),
                ArrayArg::from_raw_parts(self.code.clone(), 16),
                ArrayArg::from_raw_parts(out.clone(), numel / vo),
                numel as u32,
                offset,
                self.blocksize.trailing_zeros(),
                nested,
            )
        });
        Ok(())
    }

    /// Whether [`gemv`](Self::gemv) takes this weight: 2-D, with rows made of whole blocks.
    pub fn gemv_supported(&self) -> bool {
        matches!(self.shape.as_slice(), [n, k] if *n > 0 && *k > 0 && k % self.blocksize == 0)
            && self.numel() <= u32::MAX as usize
    }

    /// The fused GEMV: `x` is `[m, in]` in `dtype` (1 <= m <= [`MAX_GEMV_ROWS`]), the result a
    /// new `[m, out]` buffer in `dtype`, accumulated in f32, `bias` (`[out]`, `dtype`) added.
    /// The weight is never dequantized to memory.
    pub fn gemv<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        dtype: FloatDtype,
        bias: Option<&Handle>,
    ) -> Result<Handle> {
        let [n, _] = self.linear_shape()?;
        let config = GemvConfig::default_for(client, m, n);
        let out = client.empty((m * n * dtype.size()).max(4));
        self.gemv_into(client, x, m, dtype, bias, &out, config)?;
        Ok(out)
    }

    fn linear_shape(&self) -> Result<[usize; 2]> {
        match self.shape.as_slice() {
            [n, k] if self.gemv_supported() => Ok([*n, *k]),
            _ => Err(QuantError::BadShape {
                what: "fused 4-bit GEMV weight".into(),
                shape: self.shape.clone(),
                reason: format!(
                    "needs a 2-D [out, in] weight with `in` a multiple of the blocksize {}",
                    self.blocksize
                ),
            }),
        }
    }

    /// [`gemv`](Self::gemv) into `out` (`[m, out]` in `dtype`) with explicit launch parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn gemv_into<R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        x: &Handle,
        m: usize,
        dtype: FloatDtype,
        bias: Option<&Handle>,
        out: &Handle,
        config: GemvConfig,
    ) -> Result<()> {
        check_dtype(client, dtype)?;
        check_blocksize(self.blocksize)?;
        let [n, k] = self.linear_shape()?;
        if m == 0 || m > MAX_GEMV_ROWS {
            return Err(QuantError::Device(format!(
                "the fused 4-bit GEMV takes 1 to {MAX_GEMV_ROWS} rows, got {m}"
            )));
        }
        if config.use_plane && !planes_of_32(client) {
            return Err(QuantError::Device(
                "plane reduction needs planes of 32 units".into(),
            ));
        }
        let copies = match config.lut {
            LutMode::Single => 0,
            LutMode::Pairs(c) if [1, 2, 4, 8, 16].contains(&c) => c,
            LutMode::Pairs(c) => {
                return Err(QuantError::Device(format!(
                    "pair table copies must be 1, 2, 4, 8 or 16, got {c}"
                )));
            }
        };
        let rows = config.rows_per_plane.max(1);
        let planes = config.planes.clamp(1, 32);
        let depth = config.depth.clamp(1, 4);
        let split = config.split_k.max(1);
        if !planes.is_multiple_of(split) {
            return Err(QuantError::Device(format!(
                "split_k {split} must divide the planes per cube ({planes})"
            )));
        }
        let vx = x_vector_width(client, x, dtype, k);
        let outputs = planes * rows * m;
        let shared = 4 * 16
            + 8 * 256 * copies.max(1)
            + if self.is_nested() { 4 * 256 } else { 0 }
            + 4 * outputs * if config.use_plane { 1 } else { 33 };
        check_shared(client, shared, "fused 4-bit GEMV")?;
        check_capacity(x, m * k * dtype.size(), "GEMV input")?;
        check_capacity(out, m * n * dtype.size(), "GEMV output")?;
        if let Some(b) = bias {
            check_capacity(b, n * dtype.size(), "GEMV bias")?;
        }
        let groups = n.div_ceil(rows * planes / split);
        let cubes = if config.max_cubes > 0 {
            groups.min(config.max_cubes)
        } else {
            groups
        };
        let (absmax, ncodes, nabsmax, ncode, offset) = self.absmax_args();
        let has_bias = bias.is_some();
        let bias = bias.cloned().unwrap_or_else(|| out.clone());
        let factor_scale = m <= 2;
        let nested = self.is_nested();
        with_float!(dtype, F => unsafe {
            gemv4_kernel::launch_unchecked::<F, R>(
                client,
                cube_count(client, cubes),
                CubeDim::new_2d(32, planes as u32),
                vx,
                ArrayArg::from_raw_parts(self.packed.clone(), n * k / CHUNK),
                ArrayArg::from_raw_parts(absmax, 1),
                ArrayArg::from_raw_parts(ncodes, 1),
                ArrayArg::from_raw_parts(nabsmax, 1),
                ArrayArg::from_raw_parts(ncode, 1),
                ArrayArg::from_raw_parts(self.code.clone(), 16),
                ArrayArg::from_raw_parts(x.clone(), m * k / vx),
                ArrayArg::from_raw_parts(bias, n),
                ArrayArg::from_raw_parts(out.clone(), m * n),
                n as u32,
                k as u32,
                offset,
                self.blocksize.trailing_zeros(),
                m,
                rows,
                planes,
                depth,
                nested,
                has_bias,
                copies,
                config.use_plane,
                factor_scale,
                split,
            )
        });
        Ok(())
    }
}

/// The vector width for loading x: up to 16 bytes, dividing both 8 and `k`, and matching the
/// buffer's alignment.
pub(crate) fn x_vector_width<R: Runtime>(
    client: &ComputeClient<R>,
    x: &Handle,
    dtype: FloatDtype,
    k: usize,
) -> usize {
    let mut w = vector_width(client, dtype.size(), k).min(8);
    let offset = x.offset_start.unwrap_or(0) as usize;
    while w > 1 && !offset.is_multiple_of(w * dtype.size()) {
        w /= 2;
    }
    w
}

/// Fails unless `handle` spans at least `bytes` bytes.
pub(crate) fn check_capacity(handle: &Handle, bytes: usize, what: &str) -> Result<()> {
    let size = handle.size_in_used() as usize;
    if size < bytes {
        return Err(QuantError::Device(format!(
            "{what}: buffer of {size} bytes, needs {bytes}"
        )));
    }
    Ok(())
}

/// Fails unless a cube may use `bytes` of shared memory on this device.
pub(crate) fn check_shared<R: Runtime>(
    client: &ComputeClient<R>,
    bytes: usize,
    what: &str,
) -> Result<()> {
    let max = client.properties().hardware.max_shared_memory_size;
    if bytes > max {
        return Err(QuantError::Device(format!(
            "{what}: this launch needs {bytes} bytes of shared memory, the device has {max}; \
             use fewer rows, planes or table copies"
        )));
    }
    Ok(())
}
