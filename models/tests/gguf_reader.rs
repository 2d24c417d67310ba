//! The GGUF reader against gguf-py's GGUFReader (`scripts/reference/gguf_synthetic.py`) and
//! transformers' config (`scripts/reference/gguf_transformers.py`), and its errors.

mod gguf_util;

use std::path::PathBuf;

use gguf_util::*;
use kiln_models::gemma2::Gemma2Config;
use kiln_models::gemma3::Gemma3Config;
use kiln_models::gguf::{Array, GgmlType, Gguf, GgufError, Value};
use proptest::prelude::*;
use serde_json::Value as Json;

fn synthetic_bytes() -> Vec<u8> {
    std::fs::read(fixture("synthetic.gguf")).expect("synthetic.gguf")
}

fn json_matches(value: &Value, types: &[Json], want: &Json, key: &str) {
    let ty = types[0].as_str().expect("type");
    assert_eq!(value.value_type().name(), ty, "{key}: type");
    match value {
        Value::String(s) => assert_eq!(want.as_str(), Some(s.as_str()), "{key}"),
        Value::Bool(b) => assert_eq!(want.as_bool(), Some(*b), "{key}"),
        Value::F32(f) => assert_eq!(f64::from(*f), want.as_f64().expect("f64"), "{key}"),
        Value::F64(f) => assert_eq!(*f, want.as_f64().expect("f64"), "{key}"),
        Value::Array(a) => array_matches(a, &types[1..], want, key),
        v => {
            let i = v.as_i128().expect("integer");
            let w = want
                .as_i64()
                .map(i128::from)
                .or(want.as_u64().map(i128::from))
                .expect("int");
            assert_eq!(i, w, "{key}");
        }
    }
}

fn array_matches(a: &Array, types: &[Json], want: &Json, key: &str) {
    let want = want.as_array().expect("array");
    assert_eq!(
        a.element_type().name(),
        types[0].as_str().expect("type"),
        "{key}: element type"
    );
    assert_eq!(a.len(), want.len(), "{key}: len");
    match a {
        Array::String(v) => {
            let w: Vec<&str> = want.iter().map(|x| x.as_str().expect("str")).collect();
            assert_eq!(v.iter().map(String::as_str).collect::<Vec<_>>(), w, "{key}");
        }
        Array::F32(v) => {
            for (x, w) in v.iter().zip(want) {
                assert_eq!(f64::from(*x), w.as_f64().expect("f64"), "{key}");
            }
        }
        Array::Bool(v) => {
            for (x, w) in v.iter().zip(want) {
                assert_eq!(Some(*x), w.as_bool(), "{key}");
            }
        }
        Array::Array(v) => {
            for (x, w) in v.iter().zip(want) {
                // Element types of inner arrays are inferred from the written values (INT32).
                array_matches(x, &[Json::from(x.element_type().name())], w, key);
            }
        }
        _ => {
            for (i, w) in want.iter().enumerate() {
                assert_eq!(a.int_at(i), w.as_i64().map(i128::from), "{key}[{i}]");
            }
        }
    }
}

#[test]
fn synthetic_file_reads_like_gguf_py() {
    let doc = json("synthetic.json");
    let g = Gguf::open(fixture("synthetic.gguf")).expect("open");
    assert_eq!(
        u64::from(g.version()),
        doc["version"].as_u64().expect("version")
    );
    assert_eq!(g.alignment(), doc["alignment"].as_u64().expect("alignment"));
    assert_eq!(
        g.data_offset(),
        doc["data_offset"].as_u64().expect("data_offset")
    );
    let meta = doc["metadata"].as_object().expect("metadata");
    assert_eq!(g.metadata().len(), meta.len());
    for ((key, value), (wkey, want)) in g.metadata().zip(meta) {
        assert_eq!(key, wkey, "metadata order");
        json_matches(
            value,
            want["types"].as_array().expect("types"),
            &want["value"],
            key,
        );
    }
    assert_eq!(
        g.get_f32("test.f32").expect("f32").to_bits() as u64,
        meta["test.f32"]["f32_bits"].as_u64().expect("bits")
    );
    assert_eq!(
        Array::Array(vec![
            Array::I32(vec![1, 2]),
            Array::I32(vec![3]),
            Array::I32(vec![4, 5, 6])
        ]),
        *g.get_array("test.array_nested").expect("nested")
    );

    let tensors = doc["tensors"].as_array().expect("tensors");
    assert_eq!(g.tensors().len(), tensors.len());
    for (t, want) in g.tensors().iter().zip(tensors) {
        let name = want["name"].as_str().expect("name");
        assert_eq!(t.name(), name);
        assert_eq!(
            t.ty().name(),
            want["type"].as_str().expect("type"),
            "{name}"
        );
        let dims: Vec<u64> = want["dims"]
            .as_array()
            .expect("dims")
            .iter()
            .map(|d| d.as_u64().expect("dim"))
            .collect();
        assert_eq!(t.dims(), dims.as_slice(), "{name}");
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(t.shape(), shape, "{name}");
        assert_eq!(
            t.n_elements(),
            want["n_elements"].as_u64().expect("n"),
            "{name}"
        );
        assert_eq!(
            t.n_bytes(),
            want["n_bytes"].as_u64().expect("bytes"),
            "{name}"
        );
        assert_eq!(
            g.data_offset() + t.offset(),
            want["offset_in_file"].as_u64().expect("offset"),
            "{name}"
        );
        assert_eq!(g.tensor_data(name).expect("data").len() as u64, t.n_bytes());
        let bits: Vec<u32> = want["f32_bits"]
            .as_array()
            .expect("bits")
            .iter()
            .map(|b| b.as_u64().expect("bit") as u32)
            .collect();
        let got: Vec<u32> = g
            .dequantize(name)
            .expect("dequantize")
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got, bits, "{name}: values");
    }
}

#[test]
fn typed_accessors_and_their_errors_name_the_key() {
    let g = Gguf::open(fixture("synthetic.gguf")).expect("open");
    assert_eq!(g.arch().expect("arch"), "llama");
    assert_eq!(g.get_u32("test.u32").expect("u32"), 4_000_000_000);
    assert_eq!(g.get_u32("test.u8").expect("u8 widens"), 200);
    assert_eq!(
        g.get_u64("test.u64").expect("u64"),
        18_000_000_000_000_000_000
    );
    assert_eq!(
        g.get_i64("test.i64").expect("i64"),
        -9_000_000_000_000_000_000
    );
    assert_eq!(
        g.get_str("test.string").expect("str"),
        "héllo wörld 🦙\nline two"
    );
    assert_eq!(g.get_str("test.empty_string").expect("empty"), "");
    assert!(g.get_bool("test.bool_true").expect("bool"));
    assert_eq!(g.get_str_array("test.array_str").expect("strs")[2], "ß✓");
    assert_eq!(
        g.get_int_array("test.array_i32").expect("ints"),
        vec![1, -2, 3, -4]
    );
    assert_eq!(g.opt_u32("no.such.key").expect("opt"), None);

    let err = g.get_u32("no.such.key").unwrap_err();
    assert!(
        matches!(&err, GgufError::MissingKey { key, .. } if key == "no.such.key"),
        "{err}"
    );
    assert!(err.to_string().contains("synthetic.gguf"), "{err}");
    let err = g.get_u32("test.i32").unwrap_err();
    assert!(
        matches!(&err, GgufError::WrongType { key, found, .. } if key == "test.i32" && found == "INT32"),
        "{err}"
    );
    let err = g.get_str("test.u8").unwrap_err();
    assert!(
        err.to_string().contains("`test.u8`") && err.to_string().contains("UINT8"),
        "{err}"
    );
    let err = g.get_f32("test.string").unwrap_err();
    assert!(err.to_string().contains("`test.string`"), "{err}");
    let err = g.get_str_array("test.array_i32").unwrap_err();
    assert!(err.to_string().contains("ARRAY[INT32]"), "{err}");
    let err = g.tensor("nope").unwrap_err();
    assert!(
        matches!(&err, GgufError::TensorNotFound { tensor, .. } if tensor == "nope"),
        "{err}"
    );
}

#[test]
fn version_2_reads_and_other_versions_fail() {
    let mut bytes = synthetic_bytes();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let g = Gguf::from_bytes("v2.gguf", bytes.clone()).expect("v2");
    assert_eq!(g.version(), 2);
    assert_eq!(g.tensors().len(), 6);
    for v in [1u32, 4, 0x0300_0000] {
        bytes[4..8].copy_from_slice(&v.to_le_bytes());
        let err = Gguf::from_bytes("vx.gguf", bytes.clone()).unwrap_err();
        assert!(
            matches!(err, GgufError::UnsupportedVersion { version, .. } if version == v),
            "{err}"
        );
        assert!(err.to_string().contains("vx.gguf"));
    }
    bytes[4..8].copy_from_slice(&0x0300_0000u32.to_le_bytes());
    let err = Gguf::from_bytes("be.gguf", bytes).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn bad_magic_is_reported() {
    let mut bytes = synthetic_bytes();
    bytes[0] = b'X';
    let err = Gguf::from_bytes("magic.gguf", bytes).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
    assert!(err.to_string().contains("magic.gguf"));
    assert!(matches!(
        Gguf::from_bytes("e.gguf", vec![]).unwrap_err(),
        GgufError::BadMagic { .. }
    ));
    let err = Gguf::open("/nonexistent/dir/model.gguf").unwrap_err();
    assert!(
        matches!(err, GgufError::Io { .. }) && err.to_string().contains("model.gguf"),
        "{err}"
    );
}

/// Finds `needle` (a tensor name or metadata key as stored, with its u64 length prefix) in the
/// file; returns the position after it.
fn tensor_info_pos(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor info")
        + needle.len()
}

#[test]
fn unknown_type_id_names_the_tensor() {
    let mut bytes = synthetic_bytes();
    // t.f16 has 2 dims: after the name come n_dims (4), dims (16), then the type id.
    let at = tensor_info_pos(&bytes, "t.f16") + 4 + 16;
    bytes[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
    let err = Gguf::from_bytes("type.gguf", bytes.clone()).unwrap_err();
    assert!(
        matches!(&err, GgufError::UnknownType { tensor, type_id: 5, .. } if tensor == "t.f16"),
        "{err}"
    );
    // A known type kiln reads but does not dequantize, with the same byte size as F16.
    bytes[at..at + 4].copy_from_slice(&GgmlType::I16.id().to_le_bytes());
    let g = Gguf::from_bytes("i16.gguf", bytes).expect("I16 is readable");
    let err = g.dequantize("t.f16").unwrap_err();
    assert!(
        matches!(&err, GgufError::UnsupportedType { tensor, ty: GgmlType::I16, .. } if tensor == "t.f16"),
        "{err}"
    );
    assert!(g.tensor_data("t.f16").is_ok());
}

#[test]
fn absurd_block_counts_are_refused_before_allocating() {
    // Found by the `gguf` fuzz target: a block count of 2^31 + 1 made the Gemma 2/3 configs
    // allocate a 2 GiB per-layer table (and the loaders a layer list as long) before any weight
    // was read.
    let seed = repo_root().join("fuzz/seeds/gguf/gemma3_spm.gguf");
    let mut bytes = std::fs::read(&seed).expect("gemma3 seed");
    let at = tensor_info_pos(&bytes, "gemma3.block_count") + 4;
    bytes[at..at + 4].copy_from_slice(&0x8000_0001u32.to_le_bytes());
    let g = Gguf::from_bytes("layers.gguf", bytes.clone()).expect("parses");
    let err = g.hints().unwrap_err();
    assert!(
        matches!(&err, GgufError::BadMetadata { key, .. } if key == "gemma3.block_count"),
        "{err}"
    );
    assert!(err.to_string().contains("2147483649"), "{err}");
    // The configs refuse such hints too, however they were made.
    bytes[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let mut hints = Gguf::from_bytes("layers.gguf", bytes)
        .expect("parses")
        .hints()
        .expect("hints");
    hints.num_hidden_layers = u32::MAX as usize;
    let err = Gemma3Config::from_gguf_hints(&hints).unwrap_err();
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    let err = Gemma2Config::from_gguf_hints(&hints)
        .and_then(|c| c.sliding_layers())
        .unwrap_err();
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
}

#[test]
fn tensor_data_out_of_bounds_names_the_tensor() {
    let mut bytes = synthetic_bytes();
    let at = tensor_info_pos(&bytes, "t.bf16") + 4 + 16 + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let err = Gguf::from_bytes("oob.gguf", bytes.clone()).unwrap_err();
    assert!(
        matches!(&err, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "t.bf16"),
        "{err}"
    );
    // A misaligned offset.
    bytes[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
    let err = Gguf::from_bytes("align.gguf", bytes).unwrap_err();
    assert!(
        matches!(&err, GgufError::BadTensor { tensor, .. } if tensor == "t.bf16"),
        "{err}"
    );
}

#[test]
fn truncated_copies_of_a_real_file_fail_cleanly() {
    let src = artifact(SMOLLM2);
    let full = std::fs::read(&src).expect("read");
    let g = Gguf::from_bytes("full", full.clone()).expect("full file");
    let data_offset = g.data_offset() as usize;
    let last = g
        .tensors()
        .iter()
        .max_by_key(|t| t.offset())
        .expect("tensors");
    let end_of_data = data_offset + (last.offset() + last.n_bytes()) as usize;
    let dir = std::env::temp_dir().join(format!("kiln-gguf-truncate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let points = [
        2,                   // inside the magic
        6,                   // inside the version
        20,                  // inside the counts
        200,                 // inside metadata
        600_000,             // inside the token list
        data_offset - 40,    // inside the tensor table
        data_offset + 1_000, // inside the first tensor's data
        end_of_data - 1,     // one byte short
    ];
    for &cut in &points {
        let path: PathBuf = dir.join(format!("cut-{cut}.gguf"));
        std::fs::write(&path, &full[..cut]).expect("write");
        let err = Gguf::open(&path).expect_err(&format!("cut at {cut} must fail"));
        let msg = err.to_string();
        assert!(msg.contains(&format!("cut-{cut}.gguf")), "cut {cut}: {msg}");
        match err {
            GgufError::BadMagic { .. } => assert!(cut < 4),
            GgufError::Truncated { .. } | GgufError::BadHeader { .. } => {
                assert!(cut < data_offset, "cut {cut}: {msg}")
            }
            GgufError::TensorOutOfBounds { .. } => {
                assert!(cut >= data_offset - 40, "cut {cut}: {msg}")
            }
            other => panic!("cut {cut}: unexpected {other}"),
        }
        std::fs::remove_file(&path).expect("cleanup");
    }
    std::fs::remove_dir(&dir).expect("cleanup dir");
}

#[test]
fn hints_match_transformers_config() {
    let m = json("transformers/manifest.json");
    for (label, rel) in [("smollm2", SMOLLM2), ("gemma3", GEMMA3)] {
        let want = &m["configs"][label];
        let h = Gguf::open(artifact(rel))
            .expect("open")
            .hints()
            .expect("hints");
        let n = |k: &str| want[k].as_u64().map(|v| v as usize);
        assert_eq!(Some(h.num_hidden_layers), n("num_hidden_layers"), "{label}");
        assert_eq!(Some(h.hidden_size), n("hidden_size"), "{label}");
        assert_eq!(h.intermediate_size, n("intermediate_size"), "{label}");
        assert_eq!(
            Some(h.num_attention_heads),
            n("num_attention_heads"),
            "{label}"
        );
        assert_eq!(
            Some(h.num_key_value_heads),
            n("num_key_value_heads"),
            "{label}"
        );
        assert_eq!(Some(h.head_dim), n("head_dim"), "{label}");
        assert_eq!(
            h.max_position_embeddings,
            n("max_position_embeddings"),
            "{label}"
        );
        assert_eq!(h.sliding_window, n("sliding_window"), "{label}");
        assert_eq!(Some(h.vocab_size), n("vocab_size"), "{label}");
        assert_eq!(
            h.rms_norm_eps.map(f64::from),
            want["rms_norm_eps"].as_f64(),
            "{label}"
        );
        assert_eq!(
            h.rope_theta.map(f64::from),
            want["rope_theta"].as_f64(),
            "{label}"
        );
        assert_eq!(
            Some(h.tie_word_embeddings),
            want["tie_word_embeddings"].as_bool(),
            "{label}"
        );
        assert_eq!(
            h.bos_token_id.map(u64::from),
            want["bos_token_id"].as_u64(),
            "{label}"
        );
        assert_eq!(
            h.eos_token_id.map(u64::from),
            want["eos_token_id"].as_u64(),
            "{label}"
        );
        assert_eq!(
            h.pad_token_id.map(u64::from),
            want["pad_token_id"].as_u64(),
            "{label}"
        );
    }
}

#[test]
fn real_files_open_with_expected_structure() {
    let g = Gguf::open(artifact(GEMMA3)).expect("open");
    assert_eq!(g.version(), 3);
    assert_eq!(g.arch().expect("arch"), "gemma3");
    assert_eq!(g.tensors().len(), 236);
    let t = g.tensor("token_embd.weight").expect("embd");
    assert_eq!(t.dims(), &[640, 262144]);
    assert_eq!(t.shape(), vec![262144, 640]);
    assert_eq!(t.ty(), GgmlType::Q8_0);
    assert_eq!(g.chat_template().expect("template"), None);
    let s = Gguf::open(artifact(SMOLLM2)).expect("open");
    assert!(
        s.chat_template()
            .expect("template")
            .expect("some")
            .contains("<|im_start|>")
    );
    assert_eq!(s.tensors().len(), 272);
}

fn exercise(g: &Gguf) {
    let _ = g.hints();
    let _ = g.tokenizer();
    let _ = g.arch();
    for t in g.tensors() {
        let _ = g.dequantize(t.name());
        let _ = t.shape();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..2048), header in any::<bool>()) {
        if header && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b"GGUF");
            bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
        }
        if let Ok(g) = Gguf::from_bytes("random.gguf", bytes) {
            exercise(&g);
        }
    }

    #[test]
    fn mutated_or_truncated_real_header_never_panics(
        cut in 0usize..2400,
        flips in prop::collection::vec((0usize..2400, any::<u8>()), 0..8),
    ) {
        let mut bytes = synthetic_bytes();
        for (at, v) in flips {
            if at < bytes.len() {
                bytes[at] = v;
            }
        }
        bytes.truncate(cut);
        match Gguf::from_bytes("mutated.gguf", bytes) {
            Ok(g) => exercise(&g),
            Err(e) => {
                let names_file = e.to_string().contains("mutated.gguf");
                prop_assert!(names_file, "error does not name the file: {}", e);
            }
        }
    }
}
