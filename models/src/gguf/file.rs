//! [`Gguf`]: an open GGUF file, its metadata and its tensors.

use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::parse::{Parsed, parse};
use super::tensor::TensorInfo;
use super::value::Value;
use super::{GgmlType, GgufError, dequantize_into};

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A GGUF v2/v3 file: header and metadata parsed, tensor data left in place (memory-mapped).
///
/// Nothing is dequantized until asked, one tensor (or a range of its rows) at a time.
///
/// ```no_run
/// use kiln_models::gguf::Gguf;
/// let gguf = Gguf::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// assert_eq!(gguf.arch()?, "llama");
/// let layers = gguf.get_u32("llama.block_count")?;
/// let q = gguf.tensor("blk.0.attn_q.weight")?;
/// let values: Vec<f32> = gguf.dequantize("blk.0.attn_q.weight")?; // row-major q.shape()
/// # Ok::<(), kiln_models::gguf::GgufError>(())
/// ```
pub struct Gguf {
    file: PathBuf,
    data: Storage,
    parsed: Parsed,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("file", &self.file)
            .field("version", &self.parsed.version)
            .field("metadata", &self.parsed.metadata.len())
            .field("tensors", &self.parsed.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Opens and memory-maps a GGUF file, parsing its header, metadata and tensor table.
    ///
    /// Fails on a bad magic, an unsupported version, a truncated header, or any tensor whose
    /// bytes lie outside the file. The file must not be modified while the value is alive.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            file: path.to_path_buf(),
            source,
        };
        let file = kiln_quant::checkpoint::open_regular(path).map_err(io)?;
        // SAFETY: the map is read-only and owned by the returned value. Memory-mapping is sound
        // only while no one truncates or rewrites the file; like safetensors and llama.cpp we
        // rely on model files not changing while loaded (stated on this function's docs).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_storage(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses a GGUF held in memory; `name` stands for the file in error messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_storage(name.into(), Storage::Owned(bytes))
    }

    fn from_storage(file: PathBuf, data: Storage) -> Result<Self, GgufError> {
        let parsed = parse(&data, &file)?;
        Ok(Self { file, data, parsed })
    }

    /// The file path (or the name given to [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    /// The tensor data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Absolute byte offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// All metadata entries, in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.parsed.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of a metadata key, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.parsed
            .key_index
            .get(key)
            .map(|&i| &self.parsed.metadata[i].1)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    /// Whether a tensor of that name exists.
    pub fn contains_tensor(&self, name: &str) -> bool {
        self.parsed.tensor_index.contains_key(name)
    }

    /// The info of one tensor.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.parsed
            .tensor_index
            .get(name)
            .map(|&i| &self.parsed.tensors[i])
            .ok_or_else(|| GgufError::TensorNotFound {
                file: self.file.clone(),
                tensor: name.to_owned(),
            })
    }

    /// The raw bytes of a tensor, as stored (quantized blocks for quantized types).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let t = self.tensor(name)?;
        Ok(self.bytes_of(t))
    }

    fn bytes_of(&self, t: &TensorInfo) -> &[u8] {
        // In bounds: `parse` checked data_offset + offset + n_bytes <= file length.
        let start = (self.parsed.data_offset + t.offset()) as usize;
        &self.data[start..start + t.n_bytes() as usize]
    }

    fn supported(&self, t: &TensorInfo) -> Result<(), GgufError> {
        if t.ty().can_dequantize() {
            Ok(())
        } else {
            Err(GgufError::UnsupportedType {
                file: self.file.clone(),
                tensor: t.name().to_owned(),
                ty: t.ty(),
                supported: GgmlType::supported_list(),
            })
        }
    }

    /// Dequantizes a whole tensor to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor(name)?;
        self.dequantize_rows(name, 0..t.n_rows())
    }

    /// Dequantizes rows `rows` of a tensor (a row is `dims()[0]` contiguous elements).
    ///
    /// This is the streaming form: a loader converts a large tensor a slab of rows at a time.
    pub fn dequantize_rows(&self, name: &str, rows: Range<usize>) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor(name)?;
        let n = rows.len().saturating_mul(t.row_len());
        self.supported(t)?;
        self.check_rows(t, &rows)?;
        let mut out = vec![0f32; n];
        self.dequantize_rows_into(name, rows, &mut out)?;
        Ok(out)
    }

    /// Dequantizes rows `rows` of a tensor into `out` (`out.len()` = rows x row length).
    pub fn dequantize_rows_into(
        &self,
        name: &str,
        rows: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), GgufError> {
        let t = self.tensor(name)?;
        self.supported(t)?;
        self.check_rows(t, &rows)?;
        let bad = |reason: String| GgufError::BadTensor {
            file: self.file.clone(),
            tensor: name.to_owned(),
            reason,
        };
        if out.len() != rows.len() * t.row_len() {
            return Err(bad(format!(
                "output holds {} values, rows {rows:?} need {}",
                out.len(),
                rows.len() * t.row_len()
            )));
        }
        let rb = t.row_bytes();
        let bytes = &self.bytes_of(t)[rows.start * rb..rows.end * rb];
        dequantize_into(t.ty(), bytes, out).map_err(|e| bad(e.to_string()))
    }

    fn check_rows(&self, t: &TensorInfo, rows: &Range<usize>) -> Result<(), GgufError> {
        if rows.start > rows.end || rows.end > t.n_rows() {
            return Err(GgufError::BadTensor {
                file: self.file.clone(),
                tensor: t.name().to_owned(),
                reason: format!("rows {rows:?} out of range, the tensor has {}", t.n_rows()),
            });
        }
        Ok(())
    }
}
