//! A bounded run of the `fuzz/` targets on stable: the seed files of `fuzz/seeds/` mutated (bit
//! flips, overwritten integers, insertions, removals, truncations) and fed to the bodies of the
//! `safetensors`, `gguf` and `config` fuzz targets (`fuzz/bodies/`, the same code the targets
//! run). Any input may fail with an error; none may panic, abort or allocate without bound. The
//! fixed RNG seed keeps the run the same on every machine; `cargo fuzz` (see `fuzz/README.md`)
//! searches far longer.

use std::path::{Path, PathBuf};

use kiln_models::gguf::Gguf;
use kiln_models::inspect::inspect_gguf;
use kiln_models::weights::{SafetensorsSource, WeightSource};
use proptest::prelude::*;
use serde_json::Value;

#[path = "../../fuzz/bodies/config.rs"]
mod config_body;
#[path = "../../fuzz/bodies/gguf.rs"]
mod gguf_body;
#[path = "../../fuzz/bodies/safetensors.rs"]
mod safetensors_body;
#[path = "../../fuzz/smoke.rs"]
mod smoke;

use smoke::{ByteEdit, mutate, seeds};

/// Edits that keep the input's length.
fn in_place_edit() -> impl Strategy<Value = ByteEdit> {
    edit().prop_filter("keeps the length", ByteEdit::in_place)
}

fn edit() -> impl Strategy<Value = ByteEdit> {
    // Mostly edits that keep the layout, so that most inputs get past the header.
    prop_oneof![
        3 => smoke::flip(),
        2 => smoke::set(),
        3 => smoke::int(),
        1 => smoke::insert(16),
        1 => smoke::remove(64),
        1 => smoke::truncate(),
    ]
}

/// JSON values that configs and safetensors headers are refused or mis-sized with.
const ODD_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "3",
    "0.5",
    "-0.0",
    "1e300",
    "4294967296",
    "1000000000000000000",
    "18446744073709551615",
    "\"\"",
    "\"sliding_attention\"",
    "null",
    "true",
    "[]",
    "[0]",
    "{}",
    "{\"rope_type\": \"linear\", \"factor\": 0}",
    "[1099511627776, 0]",
    "[0, 8]",
    "[8, 0]",
    "[2, 2]",
    "\"U8\"",
    "\"I8\"",
    "\"F16\"",
    "\"BF16\"",
    "\"F64\"",
    "\"F8_E4M3\"",
];

/// The number of object values in `v`, nested ones included.
fn count_values(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(|x| 1 + count_values(x)).sum(),
        Value::Array(a) => a.iter().map(count_values).sum(),
        _ => 0,
    }
}

/// Replaces the `n`-th object value of `v` (in document order, parents first) with `odd`.
fn set_nth(v: &mut Value, n: &mut usize, odd: &Value) -> bool {
    let children: Vec<&mut Value> = match v {
        Value::Object(m) => m.values_mut().collect(),
        Value::Array(a) => return a.iter_mut().any(|x| set_nth(x, n, odd)),
        _ => return false,
    };
    for x in children {
        if *n == 0 {
            *x = odd.clone();
            return true;
        }
        *n -= 1;
        if set_nth(x, n, odd) {
            return true;
        }
    }
    false
}

/// A seed safetensors file with values of its JSON header replaced by [`ODD_VALUES`] (the
/// header length kept right), then byte edits of the tensor data, then of the whole file.
fn mutate_safetensors(
    seed: &[u8],
    values: &[(usize, usize)],
    data_edits: &[ByteEdit],
    file_edits: &[ByteEdit],
) -> Vec<u8> {
    let n = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")) as usize;
    let header = mutate_json(&seed[8..8 + n], values, &[]);
    let data = mutate(seed[8 + n..].to_vec(), data_edits);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    mutate(out, file_edits)
}

/// A seed config with some values replaced by [`ODD_VALUES`], then byte edits.
fn mutate_json(seed: &[u8], values: &[(usize, usize)], edits: &[ByteEdit]) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(seed).expect("seed is JSON");
    for &(which, value) in values {
        let total = count_values(&json);
        if total > 0 {
            let odd = serde_json::from_str(ODD_VALUES[value % ODD_VALUES.len()]).expect("odd");
            set_nth(&mut json, &mut (which % total), &odd);
        }
    }
    mutate(serde_json::to_vec(&json).expect("serializes"), edits)
}

/// A file in a private temp dir, for the readers that open a path; the dir goes on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kiln-fuzz-smoke-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        Self { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `gguf` fuzz target's body, plus `inspect_gguf`, which takes a path.
fn read_gguf(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write");
    let _ = inspect_gguf(path);
    gguf_body::run(data);
}

#[test]
fn seeds_read_cleanly() {
    // The unmutated seeds are valid files: they open, and their tensors read.
    let file = TempFile::new("seed.safetensors");
    for data in seeds("safetensors") {
        safetensors_body::run(&file.path, &data);
        let mut source = SafetensorsSource::open(&file.path).expect("seed opens");
        let names: Vec<String> = source.names().map(str::to_owned).collect();
        assert!(!names.is_empty());
        for name in names.iter().filter(|n| n.ends_with(".bias")) {
            source.host_tensor(name).expect("float tensor");
        }
    }
    for data in seeds("gguf") {
        let g = Gguf::from_bytes("seed.gguf", data.clone()).expect("seed parses");
        for t in g.tensors() {
            g.dequantize(t.name()).expect("dequantizes");
        }
        read_gguf(&TempFile::new("seed.gguf").path, &data);
    }
    for data in seeds("config") {
        serde_json::from_slice::<Value>(&data).expect("seed is JSON");
        config_body::run(&data);
    }
}

proptest! {
    #![proptest_config(smoke::config())]

    #[test]
    fn mutated_safetensors_never_panic(
        seed in any::<prop::sample::Index>(),
        values in prop::collection::vec((any::<usize>(), any::<usize>()), 0..2),
        data_edits in prop::collection::vec(in_place_edit(), 0..4),
        file_edits in prop::collection::vec(edit(), 0..2),
    ) {
        let all = seeds("safetensors");
        let seed: &Vec<u8> = seed.get(&all);
        let data = mutate_safetensors(seed, &values, &data_edits, &file_edits);
        safetensors_body::run(&TempFile::new("mutated.safetensors").path, &data);
    }

    #[test]
    fn mutated_gguf_never_panics(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let all = seeds("gguf");
        let data = mutate(seed.get(&all).clone(), &edits);
        read_gguf(&TempFile::new("mutated.gguf").path, &data);
    }

    #[test]
    fn mutated_configs_never_panic(
        seed in any::<prop::sample::Index>(),
        values in prop::collection::vec((any::<usize>(), any::<usize>()), 0..4),
        edits in prop::collection::vec(edit(), 0..3),
    ) {
        let all = seeds("config");
        let data: &Vec<u8> = seed.get(&all);
        config_body::run(&mutate_json(data, &values, &edits));
    }
}
