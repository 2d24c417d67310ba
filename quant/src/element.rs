//! Floating-point element types accepted by the codecs.

use half::{bf16, f16};

use crate::error::{QuantError, Result};

/// The float dtypes bitsandbytes quantizes from and dequantizes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatDtype {
    /// IEEE binary32 (`torch.float32`).
    F32,
    /// IEEE binary16 (`torch.float16`).
    F16,
    /// bfloat16 (`torch.bfloat16`).
    BF16,
}

impl FloatDtype {
    /// The torch name bitsandbytes writes (`"float32"`, `"float16"`, `"bfloat16"`).
    pub fn torch_name(self) -> &'static str {
        match self {
            FloatDtype::F32 => "float32",
            FloatDtype::F16 => "float16",
            FloatDtype::BF16 => "bfloat16",
        }
    }

    /// Parses a torch dtype name, with or without the `torch.` prefix.
    pub fn from_torch_name(name: &str) -> Option<Self> {
        match name.strip_prefix("torch.").unwrap_or(name) {
            "float32" | "float" => Some(FloatDtype::F32),
            "float16" | "half" => Some(FloatDtype::F16),
            "bfloat16" => Some(FloatDtype::BF16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FloatDtype::F32 => 4,
            FloatDtype::F16 | FloatDtype::BF16 => 2,
        }
    }

    /// The matching safetensors dtype.
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            FloatDtype::F32 => safetensors::Dtype::F32,
            FloatDtype::F16 => safetensors::Dtype::F16,
            FloatDtype::BF16 => safetensors::Dtype::BF16,
        }
    }

    /// The float dtype of a safetensors dtype, if it is one of the three.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        match dtype {
            safetensors::Dtype::F32 => Some(FloatDtype::F32),
            safetensors::Dtype::F16 => Some(FloatDtype::F16),
            safetensors::Dtype::BF16 => Some(FloatDtype::BF16),
            _ => None,
        }
    }

    /// Rounds an f32 to this dtype (round to nearest even) and back, as `tensor.to(dtype)` does.
    pub fn round(self, value: f32) -> f32 {
        match self {
            FloatDtype::F32 => value,
            FloatDtype::F16 => f16::from_f32(value).to_f32(),
            FloatDtype::BF16 => bf16::from_f32(value).to_f32(),
        }
    }
}

impl std::fmt::Display for FloatDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.torch_name())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type the codecs read and write: `f32`, [`half::f16`] or [`half::bf16`].
pub trait Element:
    Copy + Send + Sync + PartialEq + std::fmt::Debug + sealed::Sealed + 'static
{
    /// The dtype of this element type.
    const DTYPE: FloatDtype;
    /// Exact widening to f32.
    fn to_f32(self) -> f32;
    /// Narrowing from f32, rounding to nearest even.
    fn from_f32(value: f32) -> Self;
    /// Widens `src` into `dst` (same length); SIMD conversions where the CPU has them.
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
    /// Little-endian bytes of a slice (what safetensors stores).
    fn slice_to_le_bytes(values: &[Self]) -> Vec<u8>;
    /// Reads little-endian bytes (length must be a multiple of the element size).
    fn vec_from_le_bytes(bytes: &[u8]) -> Vec<Self>;
}

impl Element for f32 {
    const DTYPE: FloatDtype = FloatDtype::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        value
    }
    fn slice_to_le_bytes(values: &[Self]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
    fn vec_from_le_bytes(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// The two 16-bit floats differ only in their type: one impl serves both.
macro_rules! half_element {
    ($ty:ident, $dtype:expr) => {
        impl Element for $ty {
            const DTYPE: FloatDtype = $dtype;
            fn widen_into(src: &[Self], dst: &mut [f32]) {
                use half::slice::HalfFloatSliceExt;
                src.convert_to_f32_slice(dst);
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $ty::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(value: f32) -> Self {
                $ty::from_f32(value)
            }
            fn slice_to_le_bytes(values: &[Self]) -> Vec<u8> {
                values
                    .iter()
                    .flat_map(|v| v.to_bits().to_le_bytes())
                    .collect()
            }
            fn vec_from_le_bytes(bytes: &[u8]) -> Vec<Self> {
                bytes
                    .chunks_exact(2)
                    .map(|c| $ty::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect()
            }
        }
    };
}

half_element!(f16, FloatDtype::F16);
half_element!(bf16, FloatDtype::BF16);

/// Fails with [`QuantError::NonFinite`] on the first NaN or infinity.
pub(crate) fn check_finite<T: Element>(what: &str, data: &[T]) -> Result<()> {
    // A branch-free scan per chunk (vectorizes); the index is searched only on failure.
    let mut buf = [0.0f32; 1024];
    let all_finite = data.chunks(1024).all(|chunk| {
        let buf = &mut buf[..chunk.len()];
        T::widen_into(chunk, buf);
        buf.iter().fold(true, |ok, v| ok & v.is_finite())
    });
    if all_finite {
        return Ok(());
    }
    let (index, value) = data
        .iter()
        .enumerate()
        .find(|(_, v)| !v.to_f32().is_finite())
        .map(|(i, v)| (i, v.to_f32()))
        .unwrap_or((0, f32::NAN));
    Err(QuantError::NonFinite {
        what: what.to_string(),
        index,
        value,
    })
}

/// Checks that `len` equals the product of `shape`.
pub(crate) fn check_len(what: &str, shape: &[usize], len: usize) -> Result<()> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| QuantError::BadShape {
            what: what.to_string(),
            shape: shape.to_vec(),
            reason: "element count overflows".into(),
        })?;
    if expected != len {
        return Err(QuantError::LengthMismatch {
            what: what.to_string(),
            expected,
            actual: len,
        });
    }
    Ok(())
}
