//! Typed metadata accessors with errors that name the key.

use super::value::{Array, Value};
use super::{Gguf, GgufError};

impl Gguf {
    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            file: self.path().to_path_buf(),
            key: key.to_owned(),
        }
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> GgufError {
        GgufError::WrongType {
            file: self.path().to_path_buf(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            found: found.describe(),
        }
    }

    /// The value of a key that must be present.
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    /// `general.architecture` (`llama`, `gemma3`, ...).
    pub fn arch(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    fn int_in<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_i128()
            .and_then(|i| T::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| self.wrong(key, expected, v))
    }

    /// An integer key as u32. Any integer type is accepted if the value fits.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.opt_u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_u32`](Self::get_u32), `None` when the key is absent.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.int_in(key, "an integer in u32 range")
    }

    /// An integer key as u64. Any integer type is accepted if the value fits.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_u64`](Self::get_u64), `None` when the key is absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.int_in(key, "an integer in u64 range")
    }

    /// An integer key as i64. Any integer type is accepted if the value fits.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.int_in(key, "an integer in i64 range")?
            .ok_or_else(|| self.missing(key))
    }

    /// A float key as f32: `FLOAT32` as stored, `FLOAT64` rounded to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.opt_f32(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_f32`](Self::get_f32), `None` when the key is absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v)),
            Some(Value::F64(v)) => Ok(Some(*v as f32)),
            Some(v) => Err(self.wrong(key, "FLOAT32", v)),
        }
    }

    /// A boolean key.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_bool`](Self::get_bool), `None` when the key is absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "BOOL", v)),
        }
    }

    /// A string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_str`](Self::get_str), `None` when the key is absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "STRING", v)),
        }
    }

    /// An array key, of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        self.opt_array(key)?.ok_or_else(|| self.missing(key))
    }

    /// Like [`get_array`](Self::get_array), `None` when the key is absent.
    pub fn opt_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(key, "ARRAY", v)),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`, ...).
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.get_array(key)? {
            Array::String(v) => Ok(v),
            _ => Err(self.wrong(key, "ARRAY[STRING]", self.require(key)?)),
        }
    }

    /// An array of f32 (`tokenizer.ggml.scores`, ...).
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.get_array(key)? {
            Array::F32(v) => Ok(v),
            _ => Err(self.wrong(key, "ARRAY[FLOAT32]", self.require(key)?)),
        }
    }

    /// An array of integers as i64 (`tokenizer.ggml.token_type`, per-layer head counts, ...).
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let v = self.require(key)?;
        let expected = "ARRAY of integers in i64 range";
        let a = v.as_array().ok_or_else(|| self.wrong(key, expected, v))?;
        (0..a.len())
            .map(|i| {
                a.int_at(i)
                    .and_then(|x| i64::try_from(x).ok())
                    .ok_or_else(|| self.wrong(key, expected, v))
            })
            .collect()
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Result<Option<&str>, GgufError> {
        self.opt_str("tokenizer.chat_template")
    }
}
