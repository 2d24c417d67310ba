//! A bounded run of the `fuzz/` targets on stable: the seed files of `fuzz/seeds/` mutated (bit
//! flips, overwritten integers, insertions, removals, truncations) and fed to the same readers
//! the `safetensors`, `gguf` and `config` fuzz targets drive. Any input may fail with an error;
//! none may panic, abort or allocate without bound. The fixed RNG seed keeps the run the same on
//! every machine; `cargo fuzz` (see `fuzz/README.md`) searches far longer.

use std::path::{Path, PathBuf};

use kiln_chat_template::{ApplyOptions, ChatTemplate, Limits, Message};
use kiln_models::bert::BertConfig;
use kiln_models::config::ModelConfig;
use kiln_models::gemma::GemmaConfig;
use kiln_models::gemma2::Gemma2Config;
use kiln_models::gemma3::Gemma3Config;
use kiln_models::generate::GenerationConfig;
use kiln_models::gguf::Gguf;
use kiln_models::inspect::{inspect_gguf, inspect_safetensors};
use kiln_models::llama::LlamaConfig;
use kiln_models::mistral;
use kiln_models::weights::{GgufSource, SafetensorsSource, WeightSource};
use kiln_quant::QuantConfig;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::Value;

/// The seed inputs of one fuzz target, sorted by name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
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

/// One change to an input; positions wrap around its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    /// An integer that sizes and counts are made of, little-endian, `width` bytes.
    Int(usize, u64, usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

/// Edits that keep the input's length.
fn in_place_edit() -> impl Strategy<Value = Edit> {
    edit().prop_filter("keeps the length", |e| {
        matches!(e, Edit::Flip(..) | Edit::Set(..) | Edit::Int(..))
    })
}

fn edit() -> impl Strategy<Value = Edit> {
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
    // Mostly edits that keep the layout, so that most inputs get past the header.
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Edit::Set(at, v)),
        3 => (any::<usize>(), int, prop_oneof![Just(1usize), Just(2), Just(4), Just(8)])
            .prop_map(|(at, v, w)| Edit::Int(at, v, w)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len();
        let at = |i: usize| if len == 0 { 0 } else { i % len };
        match e {
            Edit::Flip(i, bit) if len > 0 => data[at(*i)] ^= 1 << bit,
            Edit::Set(i, v) if len > 0 => data[at(*i)] = *v,
            Edit::Int(i, v, w) if len > 0 => {
                let start = at(*i);
                let end = (start + w).min(len);
                data[start..end].copy_from_slice(&v.to_le_bytes()[..end - start]);
            }
            Edit::Insert(i, bytes) => {
                let start = i % (len + 1);
                data.splice(start..start, bytes.iter().copied());
            }
            Edit::Remove(i, n) if len > 0 => {
                let start = at(*i);
                data.drain(start..(start + n).min(len));
            }
            Edit::Truncate(n) => data.truncate(n % (len + 1)),
            _ => {}
        }
    }
    data
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
    data_edits: &[Edit],
    file_edits: &[Edit],
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
fn mutate_json(seed: &[u8], values: &[(usize, usize)], edits: &[Edit]) -> Vec<u8> {
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

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(20261205),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
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

/// The `safetensors` fuzz target's body.
fn read_safetensors(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write");
    let _ = inspect_safetensors(path);
    let Ok(mut source) = SafetensorsSource::open(path) else {
        return;
    };
    let mut names: Vec<String> = source.names().map(str::to_owned).collect();
    names.sort();
    for name in &names {
        assert!(source.contains(name));
        if let Ok(Some(raw)) = source.raw_float(name) {
            let _ = raw.to_f32();
        }
        let _ = source.host_tensor(name);
        if let Some(prefix) = name.strip_suffix(".weight")
            && let Ok(Some(weight)) = source.stored_linear(prefix)
        {
            let _ = weight.dequantize_f32(name);
        }
    }
}

/// The `gguf` fuzz target's body (plus `inspect_gguf`, which takes a path).
fn read_gguf(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write");
    let _ = inspect_gguf(path);
    let Ok(g) = Gguf::from_bytes("smoke.gguf", data.to_vec()) else {
        return;
    };
    let _ = (g.version(), g.alignment(), g.data_offset(), g.arch());
    for (_, value) in g.metadata() {
        let _ = value.describe();
    }
    if let Ok(h) = g.hints() {
        let _ = LlamaConfig::from_gguf_hints(&h);
        let _ = mistral::config_from_gguf(&h);
        let _ = GemmaConfig::from_gguf_hints(&h);
        let _ = Gemma2Config::from_gguf_hints(&h).and_then(|c| c.sliding_layers());
        let _ = Gemma3Config::from_gguf_hints(&h);
    }
    let template = match g.chat_template() {
        Ok(Some(source)) => ChatTemplate::from_source("smoke.gguf", source).ok(),
        _ => None,
    };
    if let Ok(tok) = g.tokenizer() {
        let stop_ids = tok.stop_ids();
        let _ = tok
            .tokenizer
            .encode("Hello world <|im_end|>\n 2024 ▁x", true);
        let chat = tok.into_chat_tokenizer();
        let mut options = ApplyOptions::generation_prompt();
        options.special_tokens = chat.special_tokens().clone();
        if let Some(t) = &template {
            let _ = chat.terminators_with(t, &stop_ids);
            let t = t.clone().with_limits(Limits {
                fuel: Some(1_000_000),
                max_output_bytes: 1 << 20,
                ..Limits::default()
            });
            if let Ok(r) = t.apply(&[Message::user("Hi")], &options)
                && let Ok(enc) = chat.encode_rendered(&r.text)
            {
                let _ = chat.decode(&enc.ids, false);
            }
        }
    }
    for t in g.tensors() {
        let _ = g.dequantize(t.name());
    }
    if let Ok(mut source) = GgufSource::new(g) {
        let names = source.gguf().hf_tensor_names().unwrap_or_default();
        for name in &names {
            let _ = source.host_tensor(name);
        }
    }
}

/// The `config` fuzz target's body.
fn read_config(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = QuantConfig::from_model_config(&value).map(|q| q.map(|q| q.validate()));
    let _ = serde_json::from_value::<GenerationConfig>(value.clone()).map(|g| g.validate());
    let _ = ChatTemplate::from_tokenizer_config(&value, "tokenizer_config.json");
    let Ok(config) = ModelConfig::from_value(value) else {
        return;
    };
    let _ = (config.require_architecture(), config.dtype());
    let _ = config.rope_theta(None);
    let _ = config.rope_theta(Some("sliding_attention"));
    let _ = LlamaConfig::from_config(&config);
    let _ = mistral::config_from_hf(&config);
    let _ = GemmaConfig::from_config(&config);
    let _ = Gemma2Config::from_config(&config).and_then(|c| c.sliding_layers());
    let _ = Gemma3Config::from_config(&config);
    let _ = BertConfig::from_config(&config);
}

#[test]
fn seeds_read_cleanly() {
    // The unmutated seeds are valid files: they open, and their tensors read.
    let file = TempFile::new("seed.safetensors");
    for data in seeds("safetensors") {
        read_safetensors(&file.path, &data);
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
        read_config(&data);
    }
}

proptest! {
    #![proptest_config(config())]

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
        read_safetensors(&TempFile::new("mutated.safetensors").path, &data);
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
        read_config(&mutate_json(data, &values, &edits));
    }
}
