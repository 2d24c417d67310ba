//! Quantized and half-precision loading on the CUDA backend (built with `--features cuda`, run
//! on a machine with an NVIDIA GPU): there the burn modules `Linear4bit` / `Linear8bitLt` compute
//! (not the CPU kernels), against the transformers + bitsandbytes logits of
//! testdata/quant/tiny-llama/quant_logits.safetensors.
//!
//! `cargo test -p kiln-models --features cuda --test quant_device -- --nocapture`

#![cfg(feature = "cuda")]
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use burn::backend::Cuda;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::weights::{FloatDtype, SafetensorsSource, WeightOptions};
use kiln_quant::QuantConfig;
use kiln_quant::codec::FourBitType;
use safetensors::SafeTensors;

type B = Cuda;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/quant/tiny-llama")
}

fn reference(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(root().join("quant_logits.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name).unwrap().data().to_vec()
}

fn f32s(name: &str) -> Vec<f32> {
    reference(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn ids(case: &str) -> Vec<i64> {
    reference(&format!("{case}.input_ids"))
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn config(variant: &str) -> QuantConfig {
    match variant {
        "nf4" => QuantConfig::four_bit(FourBitType::Nf4),
        "nf4-dq" => QuantConfig::four_bit(FourBitType::Nf4).with_double_quant(true),
        "fp4" => QuantConfig::four_bit(FourBitType::Fp4),
        _ => QuantConfig::int8(),
    }
}

/// Max |logits - reference| over both cases, or the load/forward error.
fn max_diff(
    dir: &Path,
    dtype: FloatDtype,
    quantization: Option<QuantConfig>,
    reference_of: &str,
) -> Result<f32, String> {
    let device = Default::default();
    let config =
        LlamaConfig::from_config(&ModelConfig::from_file(&dir.join("config.json")).unwrap())
            .unwrap();
    let mut src = SafetensorsSource::open(dir)
        .unwrap()
        .with_options(WeightOptions {
            dtype,
            quantization,
        });
    let model = Llama::<B>::load(config, &mut src, AttentionImpl::Eager, &device)
        .map_err(|e| e.to_string())?;
    let mut worst = 0.0f32;
    for case in ["a", "b"] {
        let ids = ids(case);
        let input =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), &device);
        let got: Vec<f32> = model
            .forward(input, &mut model.new_cache(), false)
            .map_err(|e| e.to_string())?
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| format!("{e:?}"))?;
        let want = f32s(&format!("{reference_of}.{case}.logits"));
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |m, x| if x.is_nan() { f32::NAN } else { m.max(x) });
        worst = if d.is_nan() { f32::NAN } else { worst.max(d) };
    }
    Ok(worst)
}

/// (label, dir, dtype, quantization, reference, tolerance)
type Run<'a> = (
    String,
    PathBuf,
    FloatDtype,
    Option<QuantConfig>,
    &'a str,
    f32,
);

#[test]
fn quantized_and_half_precision_loads_on_cuda() {
    let f32_dir = root().join("f32");
    let mut runs: Vec<Run> = Vec::new();
    for v in ["nf4", "nf4-dq", "fp4", "int8"] {
        runs.push((
            format!("{v} on load"),
            f32_dir.clone(),
            FloatDtype::F32,
            Some(config(v)),
            v,
            1e-4,
        ));
    }
    for v in ["nf4-dq", "fp4", "int8"] {
        let over = (v == "nf4-dq").then(|| config(v));
        runs.push((
            format!("{v} saved checkpoint"),
            root().join(v),
            FloatDtype::F32,
            over,
            v,
            1e-4,
        ));
    }
    // The saved nf4-dq checkpoint's own compute dtype, bfloat16.
    runs.push((
        "nf4-dq saved, bf16 compute".into(),
        root().join("nf4-dq"),
        FloatDtype::F32,
        None,
        "nf4-dq",
        3e-2,
    ));
    for (label, dtype) in [("f16", FloatDtype::F16), ("bf16", FloatDtype::BF16)] {
        runs.push((
            format!("{label} dense"),
            f32_dir.clone(),
            dtype,
            None,
            "f32",
            3e-2,
        ));
        let nf4 = config("nf4").with_compute_dtype(dtype);
        runs.push((
            format!("{label} + nf4 ({label} compute)"),
            f32_dir.clone(),
            dtype,
            Some(nf4),
            "nf4",
            3e-2,
        ));
        runs.push((
            format!("{label} + int8"),
            f32_dir.clone(),
            dtype,
            Some(config("int8")),
            "int8",
            3e-2,
        ));
    }
    let mut failed = Vec::new();
    for (label, dir, dtype, q, reference_of, tol) in runs {
        let result = max_diff(&dir, dtype, q, reference_of);
        let ok = matches!(result, Ok(d) if d <= tol);
        println!(
            "{label:32} {result:?} (tolerance {tol:e}) {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failed.push(label);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}
