//! Weights onto a CUDA device at the speed of the page cache.
//!
//! burn-cuda's `Tensor::from_data` copies the bytes into a fresh vector and hands that to the
//! driver as pageable memory: every byte is written to newly faulted-in pages twice before the
//! driver stages it again, and an 8B checkpoint went up at ~0.5 GB/s. Here the bytes are read
//! from the file straight into a few page-locked buffers allocated once per process and copied
//! from there into the tensor's device memory on a stream of their own, the read of one chunk
//! overlapping the copy of the previous ones.
//!
//! The device buffer comes from CubeCL's allocator (`empty`), so the tensor is an ordinary
//! CubeCL tensor afterwards. CubeCL's own stream is synchronized before the copy starts: the
//! allocator may hand out memory whose last reader is a kernel still in flight there. The copy
//! stream is synchronized before the tensor is returned, so later kernels on any stream see
//! the bytes.

use std::sync::Mutex;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::{CudaDevice, CudaRuntime};
use cubecl::prelude::*;
use cudarc::driver::{result as cu, sys};
use kiln_quant::gpu::cuda::{self, CudaStream};

use crate::ModelError;

/// Bytes per staging buffer.
const CHUNK: usize = 16 << 20;
/// Staging buffers: while the driver copies out of some, the next chunks are read into others.
const SLOTS: usize = 4;

/// One device's copy stream and page-locked staging buffers.
struct Stager {
    stream: CudaStream,
    /// A page-locked buffer of `CHUNK` bytes and the event recorded after its last copy.
    slots: Vec<(*mut u8, sys::CUevent)>,
}

// SAFETY: the pointers are driver objects and page-locked host memory owned by the stager,
// used only under the `STAGERS` lock.
unsafe impl Send for Stager {}

/// Per device ordinal: its stager, or `None` once setting one up failed (not retried).
static STAGERS: Mutex<Vec<(usize, Option<Stager>)>> = Mutex::new(Vec::new());

/// Waits for a stream when dropped: no copy may still read a staging buffer or write a
/// device buffer once the caller's frame is gone, even when `fill` panics.
struct Drain<'a>(&'a CudaStream);

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.0.synchronize().ok();
    }
}

fn driver_error(what: &str, e: impl std::fmt::Debug) -> ModelError {
    ModelError::Config(format!(
        "CUDA {what} failed during the weight upload: {e:?}"
    ))
}

impl Stager {
    fn new(ordinal: usize) -> Result<Self, ModelError> {
        // CubeCL's CUDA runtime works in the device's primary context, the stream's, so device
        // pointers from its allocator are valid there.
        let stream = CudaStream::new(ordinal).map_err(|e| driver_error("stream setup", e))?;
        // From here on, an early return drops `stager`, which gives back what was made.
        let mut stager = Self {
            stream,
            slots: Vec::with_capacity(SLOTS),
        };
        for _ in 0..SLOTS {
            // SAFETY: a plain page-locked allocation, freed in `drop`; zeroed once, so the
            // chunks handed to `fill` always cover initialized bytes.
            let buf = unsafe { cu::malloc_host(CHUNK, 0) }
                .map_err(|e| driver_error("pinned allocation", e))?;
            unsafe { std::ptr::write_bytes(buf.cast::<u8>(), 0, CHUNK) };
            let event = cu::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING);
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    // SAFETY: allocated just above and not shared.
                    unsafe { cu::free_host(buf) }.ok();
                    return Err(driver_error("event creation", e));
                }
            };
            stager.slots.push((buf.cast(), event));
        }
        Ok(stager)
    }

    /// Copies `len` bytes, produced chunk by chunk by `fill(offset, chunk)`, to device address
    /// `dst`; returns once they are on the device.
    fn copy(&mut self, dst: u64, len: usize, fill: &mut super::Fill<'_>) -> Result<(), ModelError> {
        let err = |what: &'static str| move |e| driver_error(what, e);
        self.stream.bind().map_err(err("context"))?;
        let stream = self.stream.raw();
        let _drain = Drain(&self.stream);
        let mut result = Ok(());
        for (i, at) in (0..len).step_by(CHUNK).enumerate() {
            let (buf, event) = self.slots[i % SLOTS];
            let n = CHUNK.min(len - at);
            // SAFETY: the event was created in `new`; waiting on a never-recorded event
            // returns at once.
            if let Err(e) = unsafe { cu::event::synchronize(event) } {
                result = Err(driver_error("event wait", e));
                break;
            }
            // SAFETY: `buf` holds `CHUNK >= n` bytes and no copy reads it any more (the
            // event of its last copy completed above).
            let chunk = unsafe { std::slice::from_raw_parts_mut(buf, n) };
            if let Err(e) = fill(at, chunk) {
                result = Err(e);
                break;
            }
            // SAFETY: `dst + at .. dst + at + n` lies in the caller's allocation of `len`
            // bytes; `chunk` stays valid and untouched until the event below completes.
            let copied = unsafe {
                cu::memcpy_htod_async(dst + at as u64, chunk, stream)
                    .and_then(|()| cu::event::record(event, stream))
            };
            if let Err(e) = copied {
                result = Err(driver_error("host-to-device copy", e));
                break;
            }
        }
        // Every staging buffer must be free again before the next call (or an error return).
        let synced = self.stream.synchronize();
        result.and(synced.map_err(err("stream synchronize")))
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        // The stream is idle after `copy`; it and its context go when `stream` drops.
        self.stream.synchronize().ok();
        for &(buf, event) in &self.slots {
            // SAFETY: made in `new`, no copy reads them any more.
            unsafe {
                cu::event::destroy(event).ok();
                cu::free_host(buf.cast()).ok();
            }
        }
    }
}

/// A 1-D CUDA tensor of `len` bytes of `dtype` filled by `fill`; `None` when `B` is not
/// burn's CUDA backend (or the stager cannot be set up, e.g. no pinned memory: the caller's
/// generic path then runs).
pub(super) fn upload<B: Backend>(
    len: usize,
    dtype: DType,
    device: &B::Device,
    fill: &mut super::Fill<'_>,
) -> Option<Result<Tensor<B, 1>, ModelError>> {
    if !super::glue::is_cube::<B, CudaRuntime>() {
        return None;
    }
    let device: CudaDevice = super::glue::same_type(device.clone())?;
    let elem = dtype.size();
    if elem == 0 || !len.is_multiple_of(elem) || len == 0 {
        return None;
    }
    let mut stagers = STAGERS.lock().unwrap_or_else(|p| p.into_inner());
    if !stagers.iter().any(|(o, _)| *o == device.index) {
        let stager = Stager::new(device.index)
            .inspect_err(|e| {
                tracing::debug!("pinned uploads unavailable ({e}); uploading through burn")
            })
            .ok();
        stagers.push((device.index, stager));
    }
    let stager = stagers
        .iter_mut()
        .find(|(o, _)| *o == device.index)?
        .1
        .as_mut()?;

    let client = CudaRuntime::client(&device);
    let handle = client.empty(len);
    // The allocator may reuse memory a queued kernel still reads: let CubeCL's stream drain.
    if !cuda::sync_cubecl(&client) {
        return Some(Err(driver_error("synchronize", "CubeCL's stream")));
    }
    let Some(ptr) = cuda::device_ptr(&client, &handle) else {
        return Some(Err(driver_error("buffer lookup", "no such buffer")));
    };
    if let Err(e) = stager.copy(ptr, len, fill) {
        return Some(Err(e));
    }
    let tensor =
        CubeTensor::new_contiguous(client, device, Shape::new([len / elem]), handle, dtype);
    let p = super::glue::same_type::<_, B::FloatTensorPrimitive>(tensor)?;
    Some(Ok(Tensor::from_primitive(TensorPrimitive::Float(p))))
}
