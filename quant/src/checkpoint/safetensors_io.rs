//! Tensor-by-tensor safetensors reading and writing (no whole-file buffers, no mmap).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::element::{Element, FloatDtype};
use crate::error::{QuantError, Result};

/// The largest header accepted (the safetensors limit).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor read from (or to be written to) a safetensors file: dtype, shape and
/// little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

impl HfTensor {
    /// A tensor from raw parts.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Self {
        HfTensor { dtype, shape, data }
    }

    /// A u8 tensor.
    pub fn from_u8(shape: Vec<usize>, data: Vec<u8>) -> Self {
        HfTensor::new(Dtype::U8, shape, data)
    }

    /// An i8 tensor.
    pub fn from_i8(shape: Vec<usize>, data: &[i8]) -> Self {
        HfTensor::new(Dtype::I8, shape, data.iter().map(|&v| v as u8).collect())
    }

    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> Self {
        HfTensor::new(Dtype::F32, shape, f32::slice_to_le_bytes(data))
    }

    /// A float tensor of any [`Element`] type.
    pub fn from_floats<T: Element>(shape: Vec<usize>, data: &[T]) -> Self {
        HfTensor::new(T::DTYPE.safetensors(), shape, T::slice_to_le_bytes(data))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The float dtype, or an error naming `name` if the tensor is not f32/f16/bf16.
    pub fn float_dtype(&self, name: &str) -> Result<FloatDtype> {
        FloatDtype::from_safetensors(self.dtype).ok_or_else(|| {
            QuantError::bad_tensor(
                name,
                format!("expected a float tensor, found {:?}", self.dtype),
            )
        })
    }

    /// The values as `T`, requiring the tensor to be of `T`'s dtype.
    pub fn to_vec<T: Element>(&self, name: &str) -> Result<Vec<T>> {
        if self.dtype != T::DTYPE.safetensors() {
            return Err(QuantError::bad_tensor(
                name,
                format!(
                    "expected {:?}, found {:?}",
                    T::DTYPE.safetensors(),
                    self.dtype
                ),
            ));
        }
        Ok(T::vec_from_le_bytes(&self.data))
    }

    /// Any float tensor widened to f32.
    pub fn to_f32_vec(&self, name: &str) -> Result<Vec<f32>> {
        Ok(match self.float_dtype(name)? {
            FloatDtype::F32 => f32::vec_from_le_bytes(&self.data),
            FloatDtype::F16 => half::f16::vec_from_le_bytes(&self.data)
                .into_iter()
                .map(|v| v.to_f32())
                .collect(),
            FloatDtype::BF16 => half::bf16::vec_from_le_bytes(&self.data)
                .into_iter()
                .map(|v| v.to_f32())
                .collect(),
        })
    }

    /// The values of a u8 tensor.
    pub fn to_u8(&self, name: &str) -> Result<Vec<u8>> {
        self.expect_dtype(name, Dtype::U8)?;
        Ok(self.data.clone())
    }

    /// The values of an i8 tensor.
    pub fn to_i8(&self, name: &str) -> Result<Vec<i8>> {
        self.expect_dtype(name, Dtype::I8)?;
        Ok(self.data.iter().map(|&b| b as i8).collect())
    }

    fn expect_dtype(&self, name: &str, dtype: Dtype) -> Result<()> {
        if self.dtype == dtype {
            Ok(())
        } else {
            Err(QuantError::bad_tensor(
                name,
                format!("expected {dtype:?}, found {:?}", self.dtype),
            ))
        }
    }
}

/// An open safetensors file whose tensors are read one at a time.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    metadata: Metadata,
}

impl SafetensorsFile {
    /// Opens a file and parses its header (nothing else is read).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = super::open_regular(&path).map_err(|e| QuantError::io(&path, e))?;
        let bad = |reason: String| QuantError::Safetensors {
            path: path.clone(),
            reason,
        };
        let file_len = file.metadata().map_err(|e| QuantError::io(&path, e))?.len();
        let mut n = [0u8; 8];
        file.read_exact(&mut n)
            .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n + 8 > file_len {
            return Err(bad(format!(
                "header length {n} does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| bad(format!("reading header: {e}")))?;
        let metadata: Metadata =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header JSON: {e}")))?;
        let data_start = 8 + n;
        if data_start + metadata.data_len() as u64 != file_len {
            return Err(bad(format!(
                "header describes {} data bytes, the file holds {}",
                metadata.data_len(),
                file_len - data_start
            )));
        }
        Ok(SafetensorsFile {
            path,
            file,
            data_start,
            metadata,
        })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in file order.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// Dtype, shape and offsets of a tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.metadata.info(name)
    }

    /// The free-form `__metadata__` map.
    pub fn user_metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }

    /// Reads one tensor.
    pub fn read(&mut self, name: &str) -> Result<HfTensor> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| QuantError::MissingTensor {
                name: name.to_string(),
                file: Some(self.path.clone()),
            })?;
        let (start, end) = info.data_offsets;
        let (dtype, shape) = (info.dtype, info.shape.clone());
        let mut data = vec![0u8; end - start];
        self.file
            .seek(SeekFrom::Start(self.data_start + start as u64))
            .and_then(|_| self.file.read_exact(&mut data))
            .map_err(|e| QuantError::io(&self.path, e))?;
        Ok(HfTensor { dtype, shape, data })
    }
}

/// The safetensors files of an HF model directory: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json`.
#[derive(Debug)]
pub struct ModelFiles {
    dir: PathBuf,
    files: Vec<SafetensorsFile>,
    index: BTreeMap<String, usize>,
    sharded: bool,
}

/// The name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

impl ModelFiles {
    /// Opens the safetensors files of `dir` (headers only).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let index_path = dir.join(INDEX_FILE);
        let (names, sharded) = if index_path.is_file() {
            let text =
                super::read_regular(&index_path).map_err(|e| QuantError::io(&index_path, e))?;
            let json: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| QuantError::Json {
                    path: index_path.clone(),
                    reason: e.to_string(),
                })?;
            let map = json["weight_map"]
                .as_object()
                .ok_or_else(|| QuantError::Json {
                    path: index_path.clone(),
                    reason: "no `weight_map` object".into(),
                })?;
            let mut files: Vec<String> = Vec::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| QuantError::Json {
                    path: index_path.clone(),
                    reason: format!("weight_map[{tensor}] is not a file name"),
                })?;
                if !files.iter().any(|f| f == file) {
                    files.push(file.to_string());
                }
            }
            files.sort();
            (files, true)
        } else if dir.join(SINGLE_FILE).is_file() {
            (vec![SINGLE_FILE.to_string()], false)
        } else {
            return Err(QuantError::MissingTensor {
                name: format!("{SINGLE_FILE} or {INDEX_FILE}"),
                file: Some(dir),
            });
        };
        let mut files = Vec::with_capacity(names.len());
        let mut index = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.contains('/') || name.contains('\\') || name == ".." {
                return Err(QuantError::Json {
                    path: index_path.clone(),
                    reason: format!("shard name `{name}` leaves the model directory"),
                });
            }
            let file = SafetensorsFile::open(dir.join(name))?;
            for t in file.names() {
                index.insert(t, i);
            }
            files.push(file);
        }
        Ok(ModelFiles {
            dir,
            files,
            index,
            sharded,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the checkpoint is sharded.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// The open files, in shard order.
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Dtype and shape of a tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.files[i].info(name))
    }

    /// Reads one tensor.
    pub fn read(&mut self, name: &str) -> Result<HfTensor> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| QuantError::MissingTensor {
                name: name.to_string(),
                file: Some(self.dir.clone()),
            })?;
        self.files[i].read(name)
    }

    pub(crate) fn file_mut(&mut self, i: usize) -> &mut SafetensorsFile {
        &mut self.files[i]
    }
}

/// A safetensors file written tensor by tensor, so only one tensor need be in memory.
///
/// The header (all names, dtypes, shapes) is laid out first and each tensor's bytes go to their
/// place as they are produced, in the order the `safetensors` crate uses (by dtype alignment,
/// then name). Small tensors whose length is only known once produced (the quant_state JSON of
/// double-quantized weights) are *deferred*: planned with a maximum length, kept in memory, and
/// appended after the others at [`finish`](Self::finish); the header is padded with spaces to the
/// size reserved for the maximum lengths.
#[derive(Debug)]
pub struct SafetensorsWriter {
    path: PathBuf,
    file: BufWriter<File>,
    header_len: usize,
    fixed_infos: Vec<(String, TensorInfo)>,
    fixed_index: HashMap<String, usize>,
    fixed_len: usize,
    deferred_max: HashMap<String, (Dtype, usize)>,
    deferred: BTreeMap<String, HfTensor>,
    written: HashSet<String>,
    user_metadata: Option<HashMap<String, String>>,
}

fn lay_out(
    tensors: Vec<(String, Dtype, Vec<usize>)>,
    start: usize,
) -> (Vec<(String, TensorInfo)>, usize) {
    let mut tensors = tensors;
    tensors.sort_by(|(ln, ld, _), (rn, rd, _)| rd.cmp(ld).then(ln.cmp(rn)));
    let mut offset = start;
    let infos = tensors
        .into_iter()
        .map(|(name, dtype, shape)| {
            let numel: usize = shape.iter().product();
            let len = numel * dtype.bitsize() / 8;
            let info = TensorInfo {
                dtype,
                shape,
                data_offsets: (offset, offset + len),
            };
            offset += len;
            (name, info)
        })
        .collect();
    (infos, offset)
}

fn header_bytes(
    path: &Path,
    meta: Option<HashMap<String, String>>,
    infos: Vec<(String, TensorInfo)>,
) -> Result<Vec<u8>> {
    let metadata = Metadata::new(meta, infos).map_err(|e| QuantError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::to_vec(&metadata).map_err(|e| QuantError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl SafetensorsWriter {
    /// Creates `path` for `fixed` tensors (name, dtype, shape), `deferred` 1-D tensors (name,
    /// dtype, maximum element count) and a `__metadata__` map.
    pub fn create(
        path: impl AsRef<Path>,
        fixed: Vec<(String, Dtype, Vec<usize>)>,
        deferred: Vec<(String, Dtype, usize)>,
        user_metadata: Option<HashMap<String, String>>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let n_fixed = fixed.len();
        let (fixed_infos, fixed_len) = lay_out(fixed, 0);
        let fixed_index: HashMap<String, usize> = fixed_infos
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        let deferred_max: HashMap<String, (Dtype, usize)> = deferred
            .iter()
            .map(|(n, d, m)| (n.clone(), (*d, *m)))
            .collect();
        if fixed_index.len() != n_fixed
            || deferred_max.len() != deferred.len()
            || deferred_max.keys().any(|k| fixed_index.contains_key(k))
        {
            return Err(QuantError::Safetensors {
                path,
                reason: "duplicate tensor names".into(),
            });
        }
        // The largest header: deferred tensors at their maximum lengths.
        let (max_deferred, _) = lay_out(
            deferred
                .into_iter()
                .map(|(n, d, m)| (n, d, vec![m]))
                .collect(),
            fixed_len,
        );
        let mut all = fixed_infos.clone();
        all.extend(max_deferred);
        let header = header_bytes(&path, user_metadata.clone(), all)?;
        let header_len = header.len().next_multiple_of(8);
        let file = File::create(&path).map_err(|e| QuantError::io(&path, e))?;
        file.set_len((8 + header_len + fixed_len) as u64)
            .map_err(|e| QuantError::io(&path, e))?;
        Ok(SafetensorsWriter {
            path,
            file: BufWriter::new(file),
            header_len,
            fixed_infos,
            fixed_index,
            fixed_len,
            deferred_max,
            deferred: BTreeMap::new(),
            written: HashSet::new(),
            user_metadata,
        })
    }

    /// Writes one planned tensor (dtype and shape must match the plan; a deferred one is kept
    /// until [`finish`](Self::finish)).
    pub fn write(&mut self, name: &str, tensor: &HfTensor) -> Result<()> {
        if self.written.contains(name) {
            return Err(QuantError::bad_tensor(name, "written twice"));
        }
        if let Some(&(dtype, max)) = self.deferred_max.get(name) {
            if tensor.dtype != dtype || tensor.shape.len() != 1 || tensor.shape[0] > max {
                return Err(QuantError::bad_tensor(
                    name,
                    format!(
                        "planned 1-D {dtype:?} of at most {max}, got {:?} {:?}",
                        tensor.dtype, tensor.shape
                    ),
                ));
            }
            self.deferred.insert(name.to_string(), tensor.clone());
            self.written.insert(name.to_string());
            return Ok(());
        }
        let info = self
            .fixed_index
            .get(name)
            .map(|&i| &self.fixed_infos[i].1)
            .ok_or_else(|| QuantError::Safetensors {
                path: self.path.clone(),
                reason: format!("tensor `{name}` was not planned"),
            })?;
        let (start, end) = info.data_offsets;
        if info.dtype != tensor.dtype
            || info.shape != tensor.shape
            || end - start != tensor.data.len()
        {
            return Err(QuantError::bad_tensor(
                name,
                format!(
                    "planned {:?} {:?}, got {:?} {:?} ({} bytes)",
                    info.dtype,
                    info.shape,
                    tensor.dtype,
                    tensor.shape,
                    tensor.data.len()
                ),
            ));
        }
        let pos = (8 + self.header_len + start) as u64;
        self.file
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.file.write_all(&tensor.data))
            .map_err(|e| QuantError::io(&self.path, e))?;
        self.written.insert(name.to_string());
        Ok(())
    }

    /// Appends the deferred tensors, writes the header, and checks that every planned tensor
    /// was written.
    pub fn finish(mut self) -> Result<()> {
        let missing = self
            .fixed_index
            .keys()
            .chain(self.deferred_max.keys())
            .find(|n| !self.written.contains(*n));
        if let Some(missing) = missing {
            return Err(QuantError::MissingTensor {
                name: missing.clone(),
                file: Some(self.path.clone()),
            });
        }
        let deferred = std::mem::take(&mut self.deferred);
        let (deferred_infos, total) = lay_out(
            deferred
                .iter()
                .map(|(n, t)| (n.clone(), t.dtype, t.shape.clone()))
                .collect(),
            self.fixed_len,
        );
        let io = |path: &Path, e| QuantError::io(path, e);
        self.file
            .seek(SeekFrom::Start(
                (8 + self.header_len + self.fixed_len) as u64,
            ))
            .map_err(|e| io(&self.path, e))?;
        for (name, _) in &deferred_infos {
            if let Some(t) = deferred.get(name) {
                self.file
                    .write_all(&t.data)
                    .map_err(|e| io(&self.path, e))?;
            }
        }
        let mut infos = std::mem::take(&mut self.fixed_infos);
        infos.extend(deferred_infos);
        let mut header = header_bytes(&self.path, self.user_metadata.take(), infos)?;
        if header.len() > self.header_len {
            return Err(QuantError::Safetensors {
                path: self.path.clone(),
                reason: "header outgrew its reserved size".into(),
            });
        }
        header.resize(self.header_len, b' ');
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(&(self.header_len as u64).to_le_bytes()))
            .and_then(|_| self.file.write_all(&header))
            .and_then(|_| self.file.flush())
            .map_err(|e| io(&self.path, e))?;
        self.file
            .get_ref()
            .set_len((8 + self.header_len + total) as u64)
            .map_err(|e| io(&self.path, e))
    }
}

/// Writes a whole set of tensors to one file (convenience over [`SafetensorsWriter`]).
pub fn save_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, HfTensor)],
    user_metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let plan = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype, t.shape.clone()))
        .collect();
    let mut writer = SafetensorsWriter::create(path, plan, Vec::new(), user_metadata)?;
    for (name, tensor) in tensors {
        writer.write(name, tensor)?;
    }
    writer.finish()
}
