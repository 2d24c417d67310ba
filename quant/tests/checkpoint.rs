//! The HF + bitsandbytes checkpoint format against checkpoints saved by transformers 5.24 +
//! bitsandbytes 0.50.2 (scripts/reference/bnb_checkpoint.py → testdata/quant/tiny-llama/).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Fixture, bits, first_diff, testdata};
use kiln_quant::checkpoint::{
    Checkpoint, HfTensor, INDEX_FILE, LinearWeight, ModelFiles, TensorAction, bnb_format,
    quantize_checkpoint, save_tensors,
};
use kiln_quant::codec::{FourBitType, Quantized4bit};
use kiln_quant::{QuantBits, QuantConfig};

const VARIANTS: [&str; 3] = ["nf4-dq", "fp4", "int8"];

fn tiny(name: &str) -> PathBuf {
    testdata().join("tiny-llama").join(name)
}

/// A fresh scratch directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-quant-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Every tensor of a directory, by name.
fn all_tensors(dir: &Path) -> BTreeMap<String, HfTensor> {
    let mut files = ModelFiles::open(dir).expect("open");
    let names: Vec<String> = files.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| (n.clone(), files.read(&n).expect("read")))
        .collect()
}

fn assert_same_tensors(
    ours: &BTreeMap<String, HfTensor>,
    theirs: &BTreeMap<String, HfTensor>,
    label: &str,
) {
    let a: Vec<&String> = ours.keys().collect();
    let b: Vec<&String> = theirs.keys().collect();
    assert_eq!(a, b, "{label}: tensor names");
    for (name, t) in theirs {
        let o = &ours[name];
        assert_eq!(
            (o.dtype, &o.shape),
            (t.dtype, &t.shape),
            "{label}: {name} dtype/shape"
        );
        if let Some(d) = first_diff(&o.data, &t.data) {
            let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
            panic!(
                "{label}: {name} differs at byte {} ({} vs {}){}",
                d.0,
                d.1,
                d.2,
                if name.contains("quant_state") {
                    format!("\nkiln: {}\nbnb:  {}", text(&o.data), text(&t.data))
                } else {
                    String::new()
                }
            );
        }
    }
}

#[test]
fn reads_bnb_checkpoints_and_dequantizes_like_bnb() {
    for variant in VARIANTS {
        let mut ckpt = Checkpoint::open(tiny(variant)).expect("open");
        let cfg = ckpt.quant_config().expect("quantization_config").clone();
        assert_eq!(
            cfg.bits,
            if variant == "int8" {
                QuantBits::Eight
            } else {
                QuantBits::Four
            }
        );
        let fx = Fixture::open(&format!("tiny-llama/{variant}.dequant.safetensors"));
        let st = fx.st();
        let names = st.names();
        assert_eq!(
            names.len(),
            7,
            "{variant}: one dequantized weight per Linear"
        );
        for name in names {
            let module = name.trim_end_matches(".weight");
            let w = ckpt.linear_weight(module).expect("linear weight");
            match (&w, variant) {
                (LinearWeight::FourBit(q), "nf4-dq") => {
                    assert_eq!(q.quant_type(), FourBitType::Nf4);
                    assert!(q.is_nested());
                }
                (LinearWeight::FourBit(q), "fp4") => {
                    assert_eq!(q.quant_type(), FourBitType::Fp4);
                    assert!(!q.is_nested());
                }
                (LinearWeight::Int8(_), "int8") => {}
                (other, _) => panic!("{variant}/{module}: unexpected {other:?}"),
            }
            let ours = w.dequantize_f32(name).expect("dequantize");
            let theirs = fx.float(name);
            if let Some(d) = first_diff(&bits(&ours), &bits(&theirs)) {
                panic!(
                    "{variant}/{name}[{}]: {} vs bnb {}",
                    d.0,
                    f32::from_bits(d.1),
                    f32::from_bits(d.2)
                );
            }
        }
        // Unquantized tensors stay readable as float Linear weights.
        assert!(matches!(
            ckpt.linear_weight("lm_head").expect("lm_head"),
            LinearWeight::Float(_)
        ));
    }
}

#[test]
fn quantizing_the_f32_model_reproduces_bnb_byte_for_byte() {
    for variant in VARIANTS {
        for source in ["f32", "f32-sharded"] {
            let reference = Checkpoint::open(tiny(variant)).expect("bnb checkpoint");
            let cfg = reference.quant_config().expect("config").clone();
            let out = scratch(&format!("{variant}-{source}"));
            let mut seen = 0;
            let summary = quantize_checkpoint(tiny(source), &out, &cfg, |p| {
                seen += 1;
                assert_eq!(p.index, seen);
                if p.name.ends_with("proj.weight") {
                    assert_eq!(p.action, TensorAction::Quantized, "{}", p.name);
                } else {
                    assert_eq!(p.action, TensorAction::Copied, "{}", p.name);
                }
            })
            .expect("quantize");
            assert_eq!(summary.tensors_quantized, 7, "{variant}");
            assert_eq!(seen, summary.tensors_quantized + summary.tensors_copied);
            let label = format!("{variant} from {source}");
            assert_same_tensors(&all_tensors(&out), &all_tensors(&tiny(variant)), &label);
            assert_eq!(
                out.join(INDEX_FILE).is_file(),
                source == "f32-sharded",
                "{label}: index"
            );

            // The quantization_config written is the one transformers wrote.
            let ours = Checkpoint::open(&out).expect("reopen");
            let theirs = &reference.config_json()["quantization_config"];
            assert_eq!(
                serde_json::to_string(&ours.config_json()["quantization_config"]).expect("json"),
                serde_json::to_string(theirs).expect("json"),
                "{label}: quantization_config"
            );
            let bnb_bytes: usize = all_tensors(&tiny(variant))
                .values()
                .map(|t| t.data.len())
                .sum();
            assert_eq!(
                summary.bytes_after, bnb_bytes as u64,
                "{label}: bytes written"
            );
            let min_bits = if variant == "int8" { 8.0 } else { 4.0 };
            assert!(
                summary.bits_per_param() > min_bits,
                "{label}: {}",
                summary.bits_per_param()
            );
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}

#[test]
fn kiln_writes_what_it_reads() {
    for variant in VARIANTS {
        let theirs = all_tensors(&tiny(variant));
        let out = scratch(&format!("rewrite-{variant}"));
        let list: Vec<(String, HfTensor)> =
            theirs.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        save_tensors(out.join("model.safetensors"), &list, None).expect("save");
        assert_same_tensors(&all_tensors(&out), &theirs, variant);

        // Quantized weights through kiln's types and back to tensors.
        let mut ckpt = Checkpoint::open(tiny(variant)).expect("open");
        for module in ckpt.linear_modules() {
            let produced = match ckpt.linear_weight(&module).expect("weight") {
                LinearWeight::FourBit(q) => {
                    bnb_format::four_bit_tensors(&format!("{module}.weight"), &q)
                }
                LinearWeight::Int8(q) => bnb_format::int8_tensors(&module, &q),
                LinearWeight::Float(_) => continue,
            };
            for (name, t) in produced {
                assert_eq!(t, theirs[&name], "{variant}: {name}");
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn quant_config_round_trips_transformers_json() {
    for variant in VARIANTS {
        let ckpt = Checkpoint::open(tiny(variant)).expect("open");
        let theirs = ckpt.config_json()["quantization_config"].clone();
        let cfg: QuantConfig = serde_json::from_value(theirs.clone()).expect("parse");
        let ours = serde_json::to_string_pretty(&cfg).expect("serialize");
        assert_eq!(
            ours,
            serde_json::to_string_pretty(&theirs).expect("json"),
            "{variant}"
        );
    }
}

#[test]
fn double_quantized_weight_round_trips_through_tensors() {
    let w: Vec<f32> = (0..(300 * 64))
        .map(|i| ((i * 7919) % 1000) as f32 / 333.0 - 1.5)
        .collect();
    for qt in [FourBitType::Nf4, FourBitType::Fp4] {
        for dq in [false, true] {
            let q = Quantized4bit::quantize(&w, &[300, 64], qt, 64, dq).expect("quantize");
            let tensors = bnb_format::four_bit_tensors("m.weight", &q);
            let back = bnb_format::four_bit_from_tensors("m.weight", |n| {
                Ok(tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()))
            })
            .expect("read back");
            assert_eq!(back, q);
        }
    }
}

#[test]
fn missing_and_malformed_tensors_are_named() {
    let q =
        Quantized4bit::quantize(&[0.5f32; 64], &[1, 64], FourBitType::Nf4, 64, false).expect("q");
    let tensors = bnb_format::four_bit_tensors("m.weight", &q);
    let without_absmax = |n: &str| {
        Ok(tensors
            .iter()
            .find(|(k, _)| k == n && !k.ends_with(".absmax"))
            .map(|(_, t)| t.clone()))
    };
    let err = bnb_format::four_bit_from_tensors("m.weight", without_absmax).expect_err("missing");
    assert!(err.to_string().contains("m.weight.absmax"), "{err}");

    let truncated = |n: &str| {
        Ok(tensors.iter().find(|(k, _)| k == n).map(|(k, t)| {
            let mut t = t.clone();
            if k == "m.weight" {
                t.data.pop();
                t.shape = vec![t.data.len(), 1];
            }
            t
        }))
    };
    let err = bnb_format::four_bit_from_tensors("m.weight", truncated).expect_err("short");
    assert!(err.to_string().contains("packed"), "{err}");
}

#[test]
fn refuses_to_quantize_a_quantized_model() {
    let out = scratch("requantize");
    let err = quantize_checkpoint(tiny("nf4-dq"), &out, &QuantConfig::int8(), |_| {})
        .expect_err("quantized input");
    assert!(
        err.to_string()
            .contains("already has a quantization_config"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
