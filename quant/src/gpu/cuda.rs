//! Driver-level work on CubeCL's CUDA buffers: a stream of kiln's own beside CubeCL's, and
//! large matrix products through cuBLAS on it.
//!
//! CubeCL does not expose its CUDA stream, so work issued here is ordered against CubeCL's by
//! the host: CubeCL's stream is synchronized before (the inputs are written and the output's
//! memory is no longer read by a kernel in flight), and kiln's stream is synchronized before
//! the result is handed back (later CubeCL kernels see it). Both run in the device's primary
//! context, the one CubeCL's CUDA runtime uses, so its device pointers are valid here.
//!
//! cuBLAS is loaded at run time (`libcublas.so` of a CUDA toolkit or of the `nvidia-cublas`
//! wheel, found through the usual library path); without it, or with `KILN_CUBLAS=0` in the
//! environment, [`gemm_nt`] answers `None` and callers keep CubeCL's matmul.

use std::sync::Mutex;

use cubecl::cuda::CudaRuntime;
use cubecl::prelude::*;
use cubecl::server::Handle;
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{DriverError, result as cu, sys};

use crate::element::FloatDtype;

/// A non-blocking stream in the primary context of one device.
pub struct CudaStream {
    device: sys::CUdevice,
    context: sys::CUcontext,
    stream: sys::CUstream,
}

// SAFETY: driver handles, valid on any thread once their context is made current (`bind`).
unsafe impl Send for CudaStream {}

impl CudaStream {
    /// Retains device `ordinal`'s primary context and creates a stream in it.
    pub fn new(ordinal: usize) -> Result<Self, DriverError> {
        cu::init()?;
        let device = cu::device::get(ordinal as i32)?;
        // SAFETY: `device` is a valid device; the context is released in `drop`.
        let context = unsafe { cu::primary_ctx::retain(device) }?;
        // From here on, an early return drops `made`, which gives back what was made.
        let mut made = Self {
            device,
            context,
            stream: std::ptr::null_mut(),
        };
        made.bind()?;
        made.stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)?;
        Ok(made)
    }

    /// Makes the stream's context current on the calling thread.
    pub fn bind(&self) -> Result<(), DriverError> {
        // SAFETY: the context is retained for as long as `self` lives.
        unsafe { cu::ctx::set_current(self.context) }
    }

    /// The raw stream, for driver calls (valid while `self` lives).
    pub fn raw(&self) -> sys::CUstream {
        self.stream
    }

    /// Waits for everything queued on the stream.
    pub fn synchronize(&self) -> Result<(), DriverError> {
        // SAFETY: the stream was created in `new` and is destroyed only in `drop`.
        unsafe { cu::stream::synchronize(self.stream) }
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        // SAFETY: made in `new` (the stream may not have been); nothing is queued on it after
        // the synchronize.
        unsafe {
            if !self.stream.is_null() {
                cu::stream::synchronize(self.stream).ok();
                cu::stream::destroy(self.stream).ok();
            }
            cu::primary_ctx::release(self.device).ok();
        }
    }
}

/// The device address of `handle`'s first byte.
pub fn device_ptr(client: &ComputeClient<CudaRuntime>, handle: &Handle) -> Option<u64> {
    client
        .get_resource(handle.clone())
        .ok()
        .map(|r| r.resource().ptr)
}

/// Waits until every kernel CubeCL queued on `client`'s stream has run.
pub fn sync_cubecl(client: &ComputeClient<CudaRuntime>) -> bool {
    cubecl::future::block_on(client.sync()).is_ok()
}

/// One device's cuBLAS handle, bound to kiln's stream there.
struct Blas {
    handle: blas_sys::cublasHandle_t,
    // Dropped after `handle` (see `Drop`).
    stream: CudaStream,
}

// SAFETY: used only under the `BLAS` lock.
unsafe impl Send for Blas {}

impl Blas {
    fn new(ordinal: usize) -> Option<Self> {
        if std::env::var("KILN_CUBLAS").is_ok_and(|v| v == "0") {
            return None;
        }
        // SAFETY: only probes whether the library loads.
        if !unsafe { blas_sys::is_culib_present() } {
            tracing::debug!("cuBLAS not found; large matrix products stay on CubeCL's matmul");
            return None;
        }
        let stream = CudaStream::new(ordinal)
            .inspect_err(|e| tracing::debug!("no CUDA stream for cuBLAS: {e:?}"))
            .ok()?;
        let handle = blas::create_handle()
            .inspect_err(|e| tracing::debug!("cuBLAS handle: {e:?}"))
            .ok()?;
        // SAFETY: both were just made and are valid.
        if let Err(e) = unsafe { blas::set_stream(handle, stream.raw() as _) } {
            tracing::debug!("cuBLAS stream: {e:?}");
            unsafe { blas::destroy_handle(handle) }.ok();
            return None;
        }
        Some(Self { handle, stream })
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        if self.stream.bind().is_ok() {
            self.stream.synchronize().ok();
            // SAFETY: made in `new`, idle after the synchronize.
            unsafe { blas::destroy_handle(self.handle) }.ok();
        }
    }
}

/// Per device ordinal: its cuBLAS, or `None` where it could not be set up (not retried).
static BLAS: Mutex<Vec<(usize, Option<Blas>)>> = Mutex::new(Vec::new());

/// Whether [`gemm_nt`] can run on device `ordinal` (cuBLAS found and set up there).
pub fn cublas_available(ordinal: usize) -> bool {
    with_blas(ordinal, |_| Some(())).is_some()
}

fn with_blas<T>(ordinal: usize, f: impl FnOnce(&mut Blas) -> Option<T>) -> Option<T> {
    let mut all = BLAS.lock().unwrap_or_else(|p| p.into_inner());
    if !all.iter().any(|(o, _)| *o == ordinal) {
        all.push((ordinal, Blas::new(ordinal)));
    }
    let blas = all.iter_mut().find(|(o, _)| *o == ordinal)?.1.as_mut()?;
    f(blas)
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` in `dtype` (f32 accumulation) through cuBLAS: `x` dense
/// row-major, `w`'s rows `ldw >= k` elements apart; a new contiguous buffer. `None` when
/// cuBLAS is unavailable, a size does not fit its 32-bit arguments, or a call fails (nothing
/// is then written that the caller sees; it computes the product another way).
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt(
    client: &ComputeClient<CudaRuntime>,
    ordinal: usize,
    x: &Handle,
    w: &Handle,
    m: usize,
    n: usize,
    k: usize,
    ldw: usize,
    dtype: FloatDtype,
) -> Option<Handle> {
    let fits = |v: usize| i32::try_from(v).is_ok();
    if m == 0 || n == 0 || k == 0 || ldw < k || ![m, n, k, ldw].into_iter().all(fits) {
        return None;
    }
    let (data_type, elem) = match dtype {
        FloatDtype::F32 => (blas_sys::cudaDataType::CUDA_R_32F, 4),
        FloatDtype::F16 => (blas_sys::cudaDataType::CUDA_R_16F, 2),
        FloatDtype::BF16 => (blas_sys::cudaDataType::CUDA_R_16BF, 2),
    };
    with_blas(ordinal, |blas| {
        let out = client.empty(m * n * elem);
        // The inputs are written and the output's memory is free once CubeCL's stream drained.
        if !sync_cubecl(client) {
            return None;
        }
        let (xp, wp, yp) = (
            device_ptr(client, x)?,
            device_ptr(client, w)?,
            device_ptr(client, &out)?,
        );
        blas.stream.bind().ok()?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Column-major view: yᵀ (n × m, ld n) = op(w) (n × k: the row-major [n, ldw] buffer
        // read as k × n column-major, transposed) · xᵀ (k × m, ld k).
        // SAFETY: the pointers address live buffers of the sizes checked above (the handles
        // are held until the stream is synchronized below); alpha and beta are host f32s, as
        // the f32 compute type asks.
        let launched = unsafe {
            blas::gemm_ex(
                blas.handle,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                m as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                wp as *const std::ffi::c_void,
                data_type,
                ldw as i32,
                xp as *const std::ffi::c_void,
                data_type,
                k as i32,
                (&beta as *const f32).cast(),
                yp as *mut std::ffi::c_void,
                data_type,
                n as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        let synced = blas.stream.synchronize();
        if let Err(e) = &launched {
            tracing::debug!("cuBLAS GEMM ({m} x {n} x {k}, {dtype:?}) failed: {e:?}");
        }
        (launched.is_ok() && synced.is_ok()).then_some(out)
    })
}
