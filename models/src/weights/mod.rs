//! Where weights come from: a safetensors file or sharded dir, a GGUF file, ...
//!
//! Loaders ask a [`WeightSource`] for one tensor at a time by its HF name, so a model is
//! built layer by layer and never held twice in memory. A source also carries the
//! [`WeightOptions`] of the load (float dtype, quantization): [`crate::nn::Linear::load`] reads
//! them, so quantizing a model on load needs nothing from the architecture's code.

mod gguf;
mod safetensors;

use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use kiln_quant::QuantConfig;
use kiln_quant::checkpoint::LinearWeight;
pub use kiln_quant::codec::FloatDtype;

pub use self::gguf::GgufSource;
pub use self::safetensors::SafetensorsSource;
use crate::ModelError;

/// A tensor on the host, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// A float tensor as the file stores it: little-endian bytes of `dtype`, read from the file
/// only when they are used, so that a GPU load streams them from the page cache to the device
/// without a host copy of the whole tensor.
#[derive(Debug, Clone)]
pub struct RawFloat {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The stored dtype.
    pub dtype: FloatDtype,
    /// The bytes, one piece after the other.
    pieces: Vec<Piece>,
}

/// Part of a [`RawFloat`]'s bytes.
#[derive(Clone)]
enum Piece {
    Owned(Vec<u8>),
    /// `len` bytes at `start` of a memory-mapped file.
    Mapped {
        path: Arc<Path>,
        file: Arc<std::fs::File>,
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Piece::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
            Piece::Mapped {
                path, start, len, ..
            } => write!(f, "Mapped({}: {len} bytes at {start})", path.display()),
        }
    }
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Owned(b) => b.len(),
            Piece::Mapped { len, .. } => *len,
        }
    }

    /// Fills `buf` with the bytes from `offset` on (`offset + buf.len() <= self.len()`).
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), ModelError> {
        match self {
            Piece::Owned(b) => {
                buf.copy_from_slice(&b[offset..offset + buf.len()]);
                Ok(())
            }
            Piece::Mapped {
                path,
                file,
                map,
                start,
                ..
            } => {
                let at = start + offset;
                // A read from the file is one copy out of the page cache, ~2-3x faster than
                // faulting the map in page by page; the map is the fallback.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::FileExt;
                    if file.read_exact_at(buf, at as u64).is_ok() {
                        return Ok(());
                    }
                }
                #[cfg(not(unix))]
                let _ = file;
                let src = map.get(at..at + buf.len()).ok_or_else(|| ModelError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than its header says",
                    ),
                })?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

impl RawFloat {
    /// Bytes already in memory.
    pub fn new(shape: Vec<usize>, dtype: FloatDtype, bytes: Vec<u8>) -> Self {
        Self {
            shape,
            dtype,
            pieces: vec![Piece::Owned(bytes)],
        }
    }

    /// `len` bytes at `start` of a memory-mapped file (`start + len` inside the map).
    pub(crate) fn mapped(
        shape: Vec<usize>,
        dtype: FloatDtype,
        path: Arc<Path>,
        file: Arc<std::fs::File>,
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    ) -> Self {
        Self {
            shape,
            dtype,
            pieces: vec![Piece::Mapped {
                path,
                file,
                map,
                start,
                len,
            }],
        }
    }

    /// Tensors of one dtype stacked along the first axis into `shape` (no bytes are copied).
    pub fn concat(parts: Vec<RawFloat>, shape: Vec<usize>) -> Self {
        let dtype = parts.first().map_or(FloatDtype::F32, |p| p.dtype);
        debug_assert!(parts.iter().all(|p| p.dtype == dtype));
        Self {
            shape,
            dtype,
            pieces: parts.into_iter().flat_map(|p| p.pieces).collect(),
        }
    }

    /// The number of bytes.
    pub fn byte_len(&self) -> usize {
        self.pieces.iter().map(Piece::len).sum()
    }

    /// Fills `buf` with the bytes from `offset` on; an error names the file that could not be
    /// read.
    pub fn read_at(&self, mut offset: usize, mut buf: &mut [u8]) -> Result<(), ModelError> {
        for piece in &self.pieces {
            if buf.is_empty() {
                break;
            }
            let len = piece.len();
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = buf.len().min(len - offset);
            let (head, rest) = buf.split_at_mut(n);
            piece.read_at(offset, head)?;
            buf = rest;
            offset = 0;
        }
        if buf.is_empty() {
            Ok(())
        } else {
            Err(ModelError::Config(format!(
                "read past the end of a {}-byte tensor",
                self.byte_len()
            )))
        }
    }

    /// All the bytes in one vector.
    pub fn into_bytes(self) -> Result<Vec<u8>, ModelError> {
        if let [Piece::Owned(_)] = self.pieces.as_slice() {
            let Some(Piece::Owned(b)) = self.pieces.into_iter().next() else {
                unreachable!("matched above")
            };
            return Ok(b);
        }
        let mut bytes = vec![0u8; self.byte_len()];
        self.read_at(0, &mut bytes)?;
        Ok(bytes)
    }

    /// The values as f32 (exact: every stored dtype widens to f32 without rounding).
    pub fn to_f32(&self) -> Result<Vec<f32>, ModelError> {
        let read;
        let b: &[u8] = match self.pieces.as_slice() {
            [Piece::Owned(b)] => b,
            _ => {
                let mut all = vec![0u8; self.byte_len()];
                self.read_at(0, &mut all)?;
                read = all;
                &read
            }
        };
        Ok(match self.dtype {
            FloatDtype::F32 => b
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatDtype::F16 => b
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatDtype::BF16 => b
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// On `device` in `dtype`: the stored bytes are uploaded as they are and converted there
    /// when the backend holds the stored dtype (GPU backends); otherwise converted on the host.
    /// Either way the values are the stored ones rounded once to `dtype`.
    pub fn to_device<B: Backend, const D: usize>(
        self,
        shape: [usize; D],
        dtype: FloatDtype,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        check_dtype::<B>(dtype, device)?;
        let stored = burn_dtype(self.dtype);
        // f32 goes through an aligned f32 vector (host backends read it in place).
        if self.dtype != FloatDtype::F32 && B::supports_dtype(device, stored) {
            let (start, n) = (std::time::Instant::now(), self.byte_len());
            let elems = shape.iter().product::<usize>();
            // CUDA: streamed from the file through pinned buffers straight into the tensor.
            let file_dtype = self.dtype;
            let streamed = crate::nn::kernels::upload::<B>(n, stored, device, &mut |at, buf| {
                self.read_at(at, buf)
            });
            let t = match streamed {
                Some(t) => t?,
                // Uploaded flat and reshaped there: a flat upload is one contiguous copy, where
                // burn-cuda copies a matrix row by row as a pitched 2-D copy.
                None => {
                    let data = TensorData::from_bytes_vec(self.into_bytes()?, [elems], stored);
                    Tensor::<B, 1>::from_data(data, (device, stored))
                }
            }
            .reshape(shape);
            tracing::debug!(
                "uploaded {n} bytes in {:.2} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
            return Ok(if file_dtype == dtype {
                t
            } else {
                t.cast(burn_dtype(dtype))
            });
        }
        float_tensor(self.to_f32()?, shape, dtype, device)
    }
}

/// How weights become tensors as they are read: their float dtype and whether Linear layers
/// are quantized (transformers' `dtype` and `quantization_config` of `from_pretrained`).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightOptions {
    /// The float dtype of unquantized weights, and so of the model's compute.
    pub dtype: FloatDtype,
    /// Quantize each Linear as it is read: every Linear of the decoder layers (`lm_head`,
    /// embeddings and `skip_modules` stay unquantized). For a checkpoint stored quantized, the
    /// storage format is the checkpoint's; only `compute_dtype` and `int8_threshold` are
    /// taken from here.
    pub quantization: Option<QuantConfig>,
}

/// f32, unquantized.
pub static DEFAULT_WEIGHT_OPTIONS: WeightOptions = WeightOptions {
    dtype: FloatDtype::F32,
    quantization: None,
};

impl Default for WeightOptions {
    fn default() -> Self {
        DEFAULT_WEIGHT_OPTIONS.clone()
    }
}

/// A source of named tensors (HF names, e.g. `model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// The file or dir, for error messages.
    fn origin(&self) -> &Path;

    /// Whether a tensor exists.
    fn contains(&self, name: &str) -> bool;

    /// Reads one tensor as f32.
    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError>;

    /// Reads one float tensor as it is stored, when the source stores plain f32/f16/bf16
    /// (`None`: ask [`WeightSource::host_tensor`]). Lets loads skip the f32 round trip.
    fn raw_float(&mut self, name: &str) -> Result<Option<RawFloat>, ModelError> {
        let _ = name;
        Ok(None)
    }

    /// The weight of the Linear at `prefix` when the checkpoint stores it quantized
    /// (bitsandbytes 4-bit or 8-bit layout); `None` when `{prefix}.weight` is a float tensor.
    fn stored_linear(&mut self, prefix: &str) -> Result<Option<LinearWeight>, ModelError> {
        let _ = prefix;
        Ok(None)
    }

    /// The checkpoint's own `quantization_config`, when it was saved quantized.
    fn stored_quantization(&self) -> Option<&QuantConfig> {
        None
    }

    /// The dtype and quantization the model is loaded with.
    fn options(&self) -> &WeightOptions {
        &DEFAULT_WEIGHT_OPTIONS
    }
}

/// burn's dtype for a kiln float dtype.
pub fn burn_dtype(dtype: FloatDtype) -> DType {
    match dtype {
        FloatDtype::F32 => DType::F32,
        FloatDtype::F16 => DType::F16,
        FloatDtype::BF16 => DType::BF16,
    }
}

/// Checks that backend `B` computes in `dtype` on `device`; the error says which dtype works.
pub fn check_dtype<B: Backend>(dtype: FloatDtype, device: &B::Device) -> Result<(), ModelError> {
    if B::supports_dtype(device, burn_dtype(dtype)) {
        Ok(())
    } else {
        Err(ModelError::Config(format!(
            "dtype {dtype} is not supported by this backend on {device:?} \
             (the CPU backend computes in float32 only; CUDA has float16 and bfloat16, wgpu \
             float16 where the adapter has it)"
        )))
    }
}

/// A float tensor of `dtype` from f32 host values (rounded to nearest even).
pub fn float_tensor<B: Backend, const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    dtype: FloatDtype,
    device: &B::Device,
) -> Result<Tensor<B, D>, ModelError> {
    check_dtype::<B>(dtype, device)?;
    // Flat, then reshaped: see `RawFloat::to_device`.
    let elems = shape.iter().product::<usize>();
    Ok(
        Tensor::<B, 1>::from_data(TensorData::new(data, [elems]), (device, burn_dtype(dtype)))
            .reshape(shape),
    )
}

impl dyn WeightSource + '_ {
    /// Reads a tensor, checks its shape and puts it on `device` in the load's dtype.
    pub fn tensor<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        if let Some(raw) = self.raw_float(name)? {
            if raw.shape != shape {
                return Err(ModelError::ShapeMismatch {
                    file: self.origin().to_path_buf(),
                    tensor: name.to_owned(),
                    expected: shape.to_vec(),
                    found: raw.shape,
                });
            }
            return raw.to_device(shape, self.options().dtype, device);
        }
        let t = self.host_tensor(name)?;
        if t.shape != shape {
            return Err(ModelError::ShapeMismatch {
                file: self.origin().to_path_buf(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        float_tensor(t.data, shape, self.options().dtype, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped_file(bytes: &[u8]) -> (Arc<Path>, Arc<std::fs::File>, Arc<memmap2::Mmap>) {
        let path = std::env::temp_dir().join(format!(
            "kiln-rawfloat-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        std::fs::remove_file(&path).ok();
        (Arc::from(path.as_path()), Arc::new(file), Arc::new(map))
    }

    #[test]
    fn stacked_pieces_read_as_one_tensor_from_any_offset() {
        let file_bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let (path, file, map) = mapped_file(&file_bytes);
        let a = RawFloat::mapped(vec![5, 10], FloatDtype::F16, path, file, map, 100, 100);
        let b = RawFloat::new(vec![3, 10], FloatDtype::F16, (0..60u8).rev().collect());
        let all = RawFloat::concat(vec![a, b], vec![8, 10]);
        let expected: Vec<u8> = file_bytes[100..200]
            .iter()
            .copied()
            .chain((0..60u8).rev())
            .collect();
        assert_eq!(all.byte_len(), 160);
        for (at, n) in [(0, 160), (0, 7), (95, 10), (100, 60), (99, 2), (159, 1)] {
            let mut buf = vec![0u8; n];
            all.read_at(at, &mut buf).unwrap();
            assert_eq!(buf, expected[at..at + n], "offset {at}, {n} bytes");
        }
        assert!(all.read_at(150, &mut [0u8; 11]).is_err());
        assert_eq!(all.clone().into_bytes().unwrap(), expected);
        let values = all.to_f32().unwrap();
        assert_eq!(values.len(), 80);
        assert_eq!(
            values[0],
            half::f16::from_le_bytes([expected[0], expected[1]]).to_f32()
        );
    }

    #[test]
    fn a_mapped_piece_past_the_end_of_its_file_is_an_error_naming_it() {
        let (path, file, map) = mapped_file(&[1u8; 64]);
        let raw = RawFloat::mapped(vec![64], FloatDtype::F16, path, file, map, 32, 64);
        let err = raw.into_bytes().unwrap_err().to_string();
        assert!(err.contains("kiln-rawfloat"), "{err}");
    }
}
