//! What the bounded passes of `cargo test` (`models/tests/fuzz_smoke.rs` and
//! `chat-template/tests/fuzz_smoke.rs`) share: the seeds of `seeds/`, the proptest
//! configuration, and byte edits with their strategies. Not part of the fuzz build; each test
//! file uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// The seed inputs of one fuzz target, sorted by name.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect()
}

/// 1000 cases from a fixed RNG seed, so that every run tests the same inputs; nothing persisted.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(20261205),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One change to the bytes of an input; positions wrap around its length.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Flip(usize, u8),
    Set(usize, u8),
    /// An integer that sizes and counts are made of, little-endian, `width` bytes.
    Int(usize, u64, usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

impl ByteEdit {
    /// Whether the edit keeps the input's length.
    pub fn in_place(&self) -> bool {
        matches!(self, Self::Flip(..) | Self::Set(..) | Self::Int(..))
    }

    /// Applies the edit to `data`; edits at a position leave an empty input alone.
    pub fn apply(&self, data: &mut Vec<u8>) {
        let len = data.len();
        match self {
            Self::Flip(i, bit) if len > 0 => data[i % len] ^= 1 << bit,
            Self::Set(i, v) if len > 0 => data[i % len] = *v,
            Self::Int(i, v, w) if len > 0 => {
                let start = i % len;
                let end = (start + w).min(len);
                data[start..end].copy_from_slice(&v.to_le_bytes()[..end - start]);
            }
            Self::Insert(i, bytes) => {
                let start = i % (len + 1);
                data.splice(start..start, bytes.iter().copied());
            }
            Self::Remove(i, n) if len > 0 => {
                let start = i % len;
                data.drain(start..(start + n).min(len));
            }
            Self::Truncate(n) => data.truncate(n % (len + 1)),
            _ => {}
        }
    }
}

/// `data` with `edits` applied in order.
pub fn mutate(mut data: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        e.apply(&mut data);
    }
    data
}

/// Flips one bit.
pub fn flip() -> impl Strategy<Value = ByteEdit> {
    (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip(at, bit))
}

/// Overwrites one byte.
pub fn set() -> impl Strategy<Value = ByteEdit> {
    (any::<usize>(), any::<u8>()).prop_map(|(at, v)| ByteEdit::Set(at, v))
}

/// Overwrites 1, 2, 4 or 8 bytes with a little-endian integer, mostly one at the edge of a
/// range (0, 2^32 - 1, 2^63 - 1, ...).
pub fn int() -> impl Strategy<Value = ByteEdit> {
    let int = prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0xff),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0xffff_ffff),
        Just(1 << 32),
        Just(1 << 40),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        any::<u64>(),
    ];
    let width = prop_oneof![Just(1usize), Just(2), Just(4), Just(8)];
    (any::<usize>(), int, width).prop_map(|(at, v, w)| ByteEdit::Int(at, v, w))
}

/// Inserts 1 to `max - 1` random bytes.
pub fn insert(max: usize) -> impl Strategy<Value = ByteEdit> {
    (any::<usize>(), prop::collection::vec(any::<u8>(), 1..max))
        .prop_map(|(at, b)| ByteEdit::Insert(at, b))
}

/// Removes 1 to `max - 1` bytes.
pub fn remove(max: usize) -> impl Strategy<Value = ByteEdit> {
    (any::<usize>(), 1usize..max).prop_map(|(at, n)| ByteEdit::Remove(at, n))
}

/// Truncates the input.
pub fn truncate() -> impl Strategy<Value = ByteEdit> {
    any::<usize>().prop_map(ByteEdit::Truncate)
}
