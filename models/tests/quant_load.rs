//! Loading quantized: the tiny Llama of testdata/quant/tiny-llama quantized on load (NF4, NF4 +
//! double quant, FP4, LLM.int8) against transformers + bitsandbytes loading the same f32 weights
//! with the same `BitsAndBytesConfig` (fixture from scripts/reference/bnb_quant_logits.py), and
//! the checkpoints transformers saved after quantizing (bnb_checkpoint.py) loading the same.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::nn::{Linear, LinearFormat};
use kiln_models::weights::{FloatDtype, SafetensorsSource, WeightOptions, WeightSource};
use kiln_quant::QuantConfig;
use kiln_quant::codec::FourBitType;
use safetensors::SafeTensors;

type B = NdArray;

/// Largest |kiln - transformers + bitsandbytes| allowed on the logits (|logits| < 1 here; the
/// quantization itself moves them by 3e-3 (int8) to 6e-2 (fp4)). The dequantized weights are
/// bit-identical (checked below) and both compute in f32 (LLM.int8 with activations rounded to
/// f16 on both sides), so what remains is the summation order of f32 matmuls: measured 1.5e-7.
const TOLERANCE: f32 = 1e-5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/quant/tiny-llama")
}

/// `quant_logits.safetensors` in memory.
struct Reference(Vec<u8>);

impl Reference {
    fn open() -> Self {
        let path = root().join("quant_logits.safetensors");
        Self(std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} ({e}): regenerate with scripts/reference/bnb_quant_logits.py",
                path.display()
            )
        }))
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let view = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("fixture lacks {name}: {e}"));
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn ids(&self, case: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let view = st.tensor(&format!("{case}.input_ids")).unwrap();
        view.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

const CASES: [&str; 2] = ["a", "b"];

fn config(variant: &str) -> QuantConfig {
    match variant {
        "nf4" => QuantConfig::four_bit(FourBitType::Nf4),
        "nf4-dq" => QuantConfig::four_bit(FourBitType::Nf4).with_double_quant(true),
        "fp4" => QuantConfig::four_bit(FourBitType::Fp4),
        "int8" => QuantConfig::int8(),
        other => panic!("unknown variant {other}"),
    }
}

fn source(dir: &Path, quantization: Option<QuantConfig>) -> SafetensorsSource {
    SafetensorsSource::open(dir)
        .unwrap()
        .with_options(WeightOptions {
            dtype: FloatDtype::F32,
            quantization,
        })
}

fn load(dir: &Path, quantization: Option<QuantConfig>) -> Llama<B> {
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let config = LlamaConfig::from_config(&config).unwrap();
    let mut src = source(dir, quantization);
    Llama::load(config, &mut src, AttentionImpl::Eager, &Default::default()).unwrap()
}

fn logits(model: &Llama<B>, ids: &[i64]) -> Vec<f32> {
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Default::default(),
    );
    let mut cache = model.new_cache();
    model
        .forward(ids, &mut cache, false)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The seven Linear layers of the decoder layer, with `[in, out]`.
const LINEARS: [(&str, usize, usize); 7] = [
    ("model.layers.0.self_attn.q_proj", 64, 64),
    ("model.layers.0.self_attn.k_proj", 64, 32),
    ("model.layers.0.self_attn.v_proj", 64, 32),
    ("model.layers.0.self_attn.o_proj", 64, 64),
    ("model.layers.0.mlp.gate_proj", 64, 128),
    ("model.layers.0.mlp.up_proj", 64, 128),
    ("model.layers.0.mlp.down_proj", 128, 64),
];

fn has_bias(module: &str) -> bool {
    module.contains("self_attn")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn quantized_on_load_logits_equal_bitsandbytes() {
    let reference = Reference::open();
    let f32_dir = root().join("f32");
    for variant in ["nf4", "nf4-dq", "fp4", "int8"] {
        let model = load(&f32_dir, Some(config(variant)));
        for case in CASES {
            let got = logits(&model, &reference.ids(case));
            let want = reference.f32s(&format!("{variant}.{case}.logits"));
            let diff = max_abs_diff(&got, &want);
            println!("{variant} case {case}: max |kiln - bitsandbytes| = {diff:e}");
            assert!(
                diff <= TOLERANCE,
                "{variant} case {case}: max |kiln - bitsandbytes| = {diff}"
            );
            // And the quantization did happen: the logits are not the f32 model's.
            let f32_logits = reference.f32s(&format!("f32.{case}.logits"));
            assert!(max_abs_diff(&got, &f32_logits) > 10.0 * TOLERANCE);
        }
    }
}

#[test]
fn unquantized_load_equals_transformers_f32() {
    let reference = Reference::open();
    let model = load(&root().join("f32"), None);
    for case in CASES {
        let got = logits(&model, &reference.ids(case));
        let diff = max_abs_diff(&got, &reference.f32s(&format!("f32.{case}.logits")));
        assert!(diff <= TOLERANCE, "case {case}: {diff}");
    }
}

#[test]
fn bitsandbytes_checkpoints_load_quantized_with_the_same_logits() {
    let reference = Reference::open();
    for variant in ["nf4-dq", "fp4", "int8"] {
        let dir = root().join(variant);
        // The nf4-dq checkpoint computes in bfloat16 (its quantization_config); the CPU backend
        // computes in float32, as the reference of this comparison does.
        let over = (variant == "nf4-dq").then(|| config(variant));
        let stored = load(&dir, over);
        let fresh = load(&root().join("f32"), Some(config(variant)));
        for case in CASES {
            let ids = reference.ids(case);
            let got = logits(&stored, &ids);
            assert_eq!(
                bits(&got),
                bits(&logits(&fresh, &ids)),
                "{variant} case {case}: the saved checkpoint and quantizing on load differ"
            );
            let want = reference.f32s(&format!("{variant}.{case}.logits"));
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= TOLERANCE, "{variant} case {case}: {diff}");
        }
    }
}

#[test]
fn the_checkpoints_compute_dtype_falls_back_to_the_model_dtype_on_cpu() {
    // nf4-dq says bnb_4bit_compute_dtype bfloat16, which ndarray lacks: without an explicit
    // request the layer computes in the model dtype.
    let mut src = source(&root().join("nf4-dq"), None);
    let layer =
        Linear::<B>::load(&mut src, LINEARS[0].0, 64, 64, true, &Default::default()).unwrap();
    assert_eq!(
        layer.format(),
        LinearFormat::FourBit {
            quant_type: FourBitType::Nf4,
            double_quant: true,
            compute_dtype: FloatDtype::F32
        }
    );
    // An explicit request the backend cannot honor is an error naming the dtype.
    let bf16 = config("nf4-dq").with_compute_dtype(FloatDtype::BF16);
    let mut src = source(&root().join("nf4-dq"), Some(bf16));
    let err = Linear::<B>::load(&mut src, LINEARS[0].0, 64, 64, true, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bfloat16"), "{err}");
}

/// bnb's dequantized weights of a variant: `<variant>.dequant.safetensors` (saved checkpoints)
/// or the `nf4.*` tensors of the logits fixture.
fn bnb_dequantized(variant: &str, reference: &Reference, weight: &str) -> Vec<f32> {
    if variant == "nf4" {
        return reference.f32s(&format!("nf4.{weight}"));
    }
    let bytes = std::fs::read(root().join(format!("{variant}.dequant.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(weight)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn every_decoder_linear_is_quantized_bit_exact_and_lm_head_is_not() {
    let reference = Reference::open();
    let device = Default::default();
    for variant in ["nf4", "nf4-dq", "fp4", "int8"] {
        let mut dirs = vec![root().join("f32"), root().join("f32-sharded")];
        if variant != "nf4" {
            dirs.push(root().join(variant));
        }
        for dir in dirs {
            let mut src = source(&dir, Some(config(variant)));
            for (module, inp, out) in LINEARS {
                let layer =
                    Linear::<B>::load(&mut src, module, inp, out, has_bias(module), &device)
                        .unwrap();
                let expected_format = match variant {
                    "int8" => LinearFormat::Int8,
                    v => LinearFormat::FourBit {
                        quant_type: if v == "fp4" {
                            FourBitType::Fp4
                        } else {
                            FourBitType::Nf4
                        },
                        double_quant: v == "nf4-dq",
                        compute_dtype: FloatDtype::F32,
                    },
                };
                assert_eq!(layer.format(), expected_format, "{variant} {module}");
                let got: Vec<f32> = layer.weight().into_data().to_vec().unwrap();
                let weight = format!("{module}.weight");
                assert_eq!(
                    bits(&got),
                    bits(&bnb_dequantized(variant, &reference, &weight)),
                    "{variant} {} {module}: dequantized weight differs from bitsandbytes'",
                    dir.display()
                );
            }
            let head = Linear::<B>::load(&mut src, "lm_head", 64, 96, false, &device).unwrap();
            assert_eq!(head.format(), LinearFormat::Dense(FloatDtype::F32));
        }
    }
}

#[test]
fn skip_modules_stay_dense() {
    let mut src = source(
        &root().join("f32"),
        Some(config("nf4").with_skip_modules(vec!["down_proj".into(), "lm_head".into()])),
    );
    let device = Default::default();
    let down = Linear::<B>::load(
        &mut src,
        "model.layers.0.mlp.down_proj",
        128,
        64,
        false,
        &device,
    )
    .unwrap();
    assert_eq!(down.format(), LinearFormat::Dense(FloatDtype::F32));
    let up = Linear::<B>::load(
        &mut src,
        "model.layers.0.mlp.up_proj",
        64,
        128,
        false,
        &device,
    )
    .unwrap();
    assert!(matches!(up.format(), LinearFormat::FourBit { .. }));
}

#[test]
fn f16_and_bf16_on_the_cpu_backend_are_a_clear_error() {
    let dir = root().join("f32");
    for dtype in [FloatDtype::F16, FloatDtype::BF16] {
        for quantization in [None, Some(config("nf4"))] {
            let config = LlamaConfig::from_config(
                &ModelConfig::from_file(&dir.join("config.json")).unwrap(),
            )
            .unwrap();
            let mut src = SafetensorsSource::open(&dir)
                .unwrap()
                .with_options(WeightOptions {
                    dtype,
                    quantization,
                });
            let err = Llama::<B>::load(config, &mut src, AttentionImpl::Eager, &Default::default())
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains(dtype.torch_name()) && err.contains("not supported"),
                "{err}"
            );
        }
        let options = kiln_models::pipeline::LoadOptions::<B> {
            dtype,
            ..Default::default()
        };
        let err = options.weight_options().unwrap_err().to_string();
        assert!(err.contains(dtype.torch_name()), "{err}");
    }
}

#[test]
fn a_stored_quantized_weight_of_the_wrong_shape_names_the_tensor() {
    let mut src = source(&root().join("nf4-dq"), None);
    let err = Linear::<B>::load(
        &mut src,
        "model.layers.0.mlp.up_proj",
        64,
        130,
        false,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.layers.0.mlp.up_proj.weight"), "{err}");
    // The stored format is described by the source.
    assert!(src.stored_quantization().is_some());
}
