//! Fixture access shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

/// `testdata/quant` at the repository root.
pub fn testdata() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/quant"))
}

/// A whole fixture file in memory, with its case list.
pub struct Fixture {
    bytes: Vec<u8>,
    pub name: String,
}

impl Fixture {
    pub fn open(name: &str) -> Fixture {
        let path = testdata().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "fixture {} missing ({e}); regenerate it with scripts/reference/bnb_golden.py",
                path.display()
            )
        });
        Fixture {
            bytes,
            name: name.to_string(),
        }
    }

    pub fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors fixture")
    }

    pub fn metadata(&self, key: &str) -> serde_json::Value {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).expect("header");
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_else(|| panic!("{}: no metadata key {key}", self.name));
        serde_json::from_str(&text).expect("metadata JSON")
    }

    pub fn has(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    pub fn raw(&self, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{}: tensor {name} missing", self.name));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::F32, "{name}");
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn f16(&self, name: &str) -> Vec<f16> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::F16, "{name}");
        data.chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    }

    pub fn bf16(&self, name: &str) -> Vec<bf16> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::BF16, "{name}");
        data.chunks_exact(2)
            .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    }

    pub fn u8(&self, name: &str) -> Vec<u8> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::U8, "{name}");
        data
    }

    pub fn i8(&self, name: &str) -> Vec<i8> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::I8, "{name}");
        data.into_iter().map(|b| b as i8).collect()
    }

    pub fn i64(&self, name: &str) -> Vec<i64> {
        let (dtype, _, data) = self.raw(name);
        assert_eq!(dtype, Dtype::I64, "{name}");
        data.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Any float tensor widened to f32.
    pub fn float(&self, name: &str) -> Vec<f32> {
        let (dtype, _, _) = self.raw(name);
        match dtype {
            Dtype::F32 => self.f32(name),
            Dtype::F16 => self.f16(name).iter().map(|v| v.to_f32()).collect(),
            Dtype::BF16 => self.bf16(name).iter().map(|v| v.to_f32()).collect(),
            other => panic!("{name}: not a float tensor ({other:?})"),
        }
    }
}

/// Bit patterns, so that -0.0 vs 0.0 and NaN payloads count as differences.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Index and values of the first difference, for readable failures.
pub fn first_diff<T: PartialEq + Copy + std::fmt::Debug>(
    a: &[T],
    b: &[T],
) -> Option<(usize, T, T)> {
    if a.len() != b.len() {
        panic!("lengths differ: {} vs {}", a.len(), b.len());
    }
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i, *x, *y))
}

/// `n` deterministic values in [-1, 1) from `seed` (xorshift).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
