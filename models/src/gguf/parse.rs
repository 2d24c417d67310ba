//! Parsing the GGUF header, metadata and tensor table out of the file bytes.
//!
//! Every count read from the file is checked against the bytes left before anything is
//! allocated, so garbage input fails with an error instead of an allocation abort.

use std::collections::HashMap;
use std::path::Path;

use super::tensor::TensorInfo;
use super::value::{Array, Value, ValueType};
use super::{GgmlType, GgufError};

/// The magic at the start of every GGUF file.
pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment of tensor data when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Nesting limit for arrays of arrays (llama.cpp writes none; garbage could recurse deeply).
const MAX_ARRAY_DEPTH: usize = 16;

/// Everything read from the header; tensor data stays in the file.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    file: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_path_buf(),
            what,
            offset: self.pos as u64,
            needed,
            len: self.data.len() as u64,
        }
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                let out = &self.data[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(self.truncated(what(), n)),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then UTF-8 bytes. `Err(bytes)` when not UTF-8.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<Result<String, Vec<u8>>, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8(bytes.to_vec()).map_err(|e| e.into_bytes()))
    }

    /// Fails with `Truncated` unless `count` elements of at least `min_size` bytes can fit.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &dyn Fn() -> String,
    ) -> Result<usize, GgufError> {
        let needed = count.saturating_mul(min_size);
        if needed > self.remaining() as u64 {
            return Err(self.truncated(what(), needed));
        }
        usize::try_from(count).map_err(|_| self.truncated(what(), needed))
    }
}

fn bad_metadata(file: &Path, key: &str, reason: impl Into<String>) -> GgufError {
    GgufError::BadMetadata {
        file: file.to_path_buf(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn bad_tensor(file: &Path, tensor: &str, reason: impl Into<String>) -> GgufError {
    GgufError::BadTensor {
        file: file.to_path_buf(),
        tensor: tensor.to_owned(),
        reason: reason.into(),
    }
}

fn read_fixed<T, const N: usize>(
    c: &mut Cursor<'_>,
    n: usize,
    what: &dyn Fn() -> String,
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    let bytes = c.take((n * N) as u64, what)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|b| {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            f(a)
        })
        .collect())
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<Value, GgufError> {
    let what = || format!("value of metadata key `{key}`");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(&what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        ValueType::Bool => Value::Bool(u8::from_le_bytes(c.array(&what)?) != 0),
        ValueType::String => Value::String(
            c.string(&what)?
                .map_err(|_| bad_metadata(c.file, key, "string value is not valid UTF-8"))?,
        ),
        ValueType::Array => Value::Array(read_array(c, key, 0)?),
    })
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(bad_metadata(
            c.file,
            key,
            format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
        ));
    }
    let what = || format!("array header of metadata key `{key}`");
    let type_id = c.u32(&what)?;
    let ty = ValueType::from_id(type_id).ok_or_else(|| {
        bad_metadata(
            c.file,
            key,
            format!("unknown array element type id {type_id}"),
        )
    })?;
    let count = c.u64(&what)?;
    let what = || format!("{count} {} elements of metadata key `{key}`", ty.name());
    let min_size = match ty {
        ValueType::String => 8,
        ValueType::Array => 12,
        other => other.fixed_size().unwrap_or(1) as u64,
    };
    let n = c.check_count(count, min_size, &what)?;
    Ok(match ty {
        ValueType::U8 => Array::U8(read_fixed(c, n, &what, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(read_fixed(c, n, &what, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(read_fixed(c, n, &what, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(read_fixed(c, n, &what, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(read_fixed(c, n, &what, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(read_fixed(c, n, &what, i32::from_le_bytes)?),
        ValueType::U64 => Array::U64(read_fixed(c, n, &what, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(read_fixed(c, n, &what, i64::from_le_bytes)?),
        ValueType::F32 => Array::F32(read_fixed(c, n, &what, f32::from_le_bytes)?),
        ValueType::F64 => Array::F64(read_fixed(c, n, &what, f64::from_le_bytes)?),
        ValueType::Bool => Array::Bool(read_fixed(c, n, &what, |b: [u8; 1]| b[0] != 0)?),
        ValueType::String => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let what = || format!("string #{i} of metadata key `{key}`");
                let s = c.string(&what)?.map_err(|_| {
                    bad_metadata(c.file, key, format!("string #{i} is not valid UTF-8"))
                })?;
                out.push(s);
            }
            Array::String(out)
        }
        ValueType::Array => {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(out)
        }
    })
}

/// Parses the header, metadata and tensor table of `data`, and checks every tensor's bytes
/// lie inside `data`.
pub(crate) fn parse(data: &[u8], file: &Path) -> Result<Parsed, GgufError> {
    if data.len() < 4 || &data[..4] != MAGIC {
        return Err(GgufError::BadMagic {
            file: file.to_path_buf(),
            found: data[..data.len().min(4)].to_vec(),
        });
    }
    let mut c = Cursor { data, pos: 4, file };
    let version = c.u32(&|| "the version field".to_owned())?;
    if version != 2 && version != 3 {
        let hint = if (1..=3).contains(&version.swap_bytes()) {
            " (this looks like a big-endian file)".to_owned()
        } else if version == 1 {
            " (v1 files use 32-bit counts; convert them with llama.cpp)".to_owned()
        } else {
            String::new()
        };
        return Err(GgufError::UnsupportedVersion {
            file: file.to_path_buf(),
            version,
            hint,
        });
    }
    let tensor_count = c.u64(&|| "the tensor count".to_owned())?;
    let kv_count = c.u64(&|| "the metadata count".to_owned())?;
    // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info 24.
    let bad_count = |what: &str, count: u64| GgufError::BadHeader {
        file: file.to_path_buf(),
        reason: format!(
            "{what} count {count} cannot fit in a file of {} bytes",
            data.len()
        ),
    };
    let rem = c.remaining() as u64;
    if kv_count.checked_mul(13).is_none_or(|n| n > rem) {
        return Err(bad_count("metadata", kv_count));
    }
    if tensor_count.checked_mul(24).is_none_or(|n| n > rem) {
        return Err(bad_count("tensor", tensor_count));
    }

    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut key_index = HashMap::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key = c
            .string(&|| format!("the key of metadata entry #{i}"))?
            .map_err(|_| bad_metadata(file, &format!("#{i}"), "key is not valid UTF-8"))?;
        let type_id = c.u32(&|| format!("the type of metadata key `{key}`"))?;
        let ty = ValueType::from_id(type_id)
            .ok_or_else(|| bad_metadata(file, &key, format!("unknown value type id {type_id}")))?;
        let value = read_value(&mut c, ty, &key)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(bad_metadata(file, &key, "duplicate key"));
        }
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(bad_metadata(
                file,
                "general.alignment",
                format!(
                    "must be a UINT32 power of two, found {} {v:?}",
                    v.describe()
                ),
            ));
        }
    };

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let name = c
            .string(&|| format!("the name of tensor #{i}"))?
            .map_err(|_| bad_tensor(file, &format!("#{i}"), "name is not valid UTF-8"))?;
        let what = || format!("the info of tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(bad_tensor(
                file,
                &name,
                format!("{n_dims} dims, at most {MAX_DIMS} allowed"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownType {
            file: file.to_path_buf(),
            tensor: name.clone(),
            type_id,
        })?;
        let info = TensorInfo::new(name.clone(), dims, ty, offset)
            .map_err(|reason| bad_tensor(file, &name, reason))?;
        if offset % alignment != 0 {
            return Err(bad_tensor(
                file,
                &name,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(bad_tensor(file, &name, "duplicate tensor name"));
        }
        tensors.push(info);
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset());
        let end = start.and_then(|s| s.checked_add(t.n_bytes()));
        match (start, end) {
            (Some(_), Some(end)) if end <= data.len() as u64 => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    file: file.to_path_buf(),
                    tensor: t.name().to_owned(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    len: data.len() as u64,
                });
            }
        }
    }

    Ok(Parsed {
        version,
        metadata,
        key_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}
