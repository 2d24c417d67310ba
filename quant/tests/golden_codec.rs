//! Bit-exactness against golden vectors written by bitsandbytes 0.50.2 itself
//! (scripts/reference/bnb_golden.py → testdata/quant/golden_*.safetensors).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, bits, first_diff};
use half::{bf16, f16};
use kiln_quant::codec::{
    Absmax, Element, FourBitType, Int8Rowwise, Quantized4bit, dequantize_blockwise_8bit,
    dynamic_map, int8_linear, quantize_blockwise_8bit, quantize_rows,
};

fn case_str<'a>(case: &'a serde_json::Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("case key {key}"))
}

fn case_usize(case: &serde_json::Value, key: &str) -> usize {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("case key {key}")) as usize
}

fn shape(case: &serde_json::Value) -> Vec<usize> {
    case["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

/// Quantizes one fixture case with kiln and compares every output with bnb's.
fn check_4bit_case<T: Element>(
    fx: &Fixture,
    case: &serde_json::Value,
    input: Vec<T>,
    deq_bits: Vec<u32>,
) {
    let name = case_str(case, "name");
    let qt = FourBitType::from_name(case_str(case, "quant_type")).expect("quant type");
    let bs = case_usize(case, "blocksize");
    let dq = case["double_quant"].as_bool().expect("double_quant");
    let label = format!(
        "{name} ({qt}, bs {bs}, {}, {:?}, dq {dq}, {})",
        T::DTYPE,
        shape(case),
        case["kind"]
    );

    let q = Quantized4bit::quantize(&input, &shape(case), qt, bs, dq).expect("quantize");
    if let Some(d) = first_diff(q.packed(), &fx.u8(&format!("{name}.packed"))) {
        panic!(
            "{label}: packed byte {} = {:#04x}, bnb {:#04x}",
            d.0, d.1, d.2
        );
    }
    match q.absmax() {
        Absmax::Plain(a) => {
            assert!(!dq);
            if let Some(d) = first_diff(&bits(a), &bits(&fx.f32(&format!("{name}.absmax")))) {
                panic!("{label}: absmax[{}] bits {:#x} vs bnb {:#x}", d.0, d.1, d.2);
            }
        }
        Absmax::Nested(n) => {
            assert!(dq);
            let offset = fx.f32(&format!("{name}.offset"))[0];
            assert_eq!(
                n.offset().to_bits(),
                offset.to_bits(),
                "{label}: offset {} vs bnb {offset}",
                n.offset()
            );
            if let Some(d) = first_diff(
                &bits(n.absmax()),
                &bits(&fx.f32(&format!("{name}.nested_absmax"))),
            ) {
                panic!(
                    "{label}: nested_absmax[{}] {:#x} vs bnb {:#x}",
                    d.0, d.1, d.2
                );
            }
            if let Some(d) = first_diff(n.codes(), &fx.u8(&format!("{name}.absmax_q"))) {
                panic!("{label}: absmax code {} = {} vs bnb {}", d.0, d.1, d.2);
            }
            let abs = n.dequantize();
            if let Some(d) = first_diff(
                &bits(&abs),
                &bits(&fx.f32(&format!("{name}.absmax_dequant"))),
            ) {
                panic!(
                    "{label}: dequantized absmax[{}] {:#x} vs bnb {:#x}",
                    d.0, d.1, d.2
                );
            }
        }
    }
    let json = kiln_quant::checkpoint::bnb_format::QuantStateJson::of(&q).to_json();
    assert_eq!(
        json,
        case_str(case, "quant_state_json"),
        "{label}: quant_state JSON"
    );
    let deq: Vec<T> = q.dequantize();
    let ours: Vec<u32> = deq.iter().map(|v| v.to_f32().to_bits()).collect();
    if let Some(d) = first_diff(&ours, &deq_bits) {
        panic!(
            "{label}: dequant[{}] = {} vs bnb {}",
            d.0,
            f32::from_bits(d.1),
            f32::from_bits(d.2)
        );
    }
}

#[test]
fn four_bit_matches_bitsandbytes() {
    let fx = Fixture::open("golden_4bit.safetensors");
    let cases = fx.metadata("cases");
    let cases = cases.as_array().expect("case list");
    assert!(cases.len() > 150, "fixture has {} cases", cases.len());
    for case in cases {
        let name = case_str(case, "name");
        let input = format!("{name}.input");
        let deq = format!("{name}.dequant");
        let deq_bits = bits(&fx.float(&deq));
        match case_str(case, "dtype") {
            "float32" => check_4bit_case(&fx, case, fx.f32(&input), deq_bits),
            "float16" => check_4bit_case::<f16>(&fx, case, fx.f16(&input), deq_bits),
            "bfloat16" => check_4bit_case::<bf16>(&fx, case, fx.bf16(&input), deq_bits),
            other => panic!("unknown dtype {other}"),
        }
    }
}

#[test]
fn dynamic_map_matches_bitsandbytes() {
    let fx = Fixture::open("golden_blockwise8.safetensors");
    let theirs = fx.f32("dynamic_map");
    if let Some(d) = first_diff(&bits(dynamic_map()), &bits(&theirs)) {
        panic!(
            "dynamic map[{}]: {} vs bnb {}",
            d.0,
            f32::from_bits(d.1),
            f32::from_bits(d.2)
        );
    }
}

#[test]
fn blockwise_8bit_matches_bitsandbytes() {
    let fx = Fixture::open("golden_blockwise8.safetensors");
    let cases = fx.metadata("cases");
    for case in cases.as_array().expect("cases") {
        let name = case_str(case, "name");
        let bs = case_usize(case, "blocksize");
        let x = fx.f32(&format!("{name}.input"));
        let (codes, absmax) = quantize_blockwise_8bit(&x, dynamic_map(), bs).expect("quantize");
        if let Some(d) = first_diff(&codes, &fx.u8(&format!("{name}.codes"))) {
            panic!(
                "{name}: code {} = {} vs bnb {} (x = {})",
                d.0, d.1, d.2, x[d.0]
            );
        }
        assert_eq!(
            bits(&absmax),
            bits(&fx.f32(&format!("{name}.absmax"))),
            "{name}: absmax"
        );
        let deq =
            dequantize_blockwise_8bit(&codes, &absmax, dynamic_map(), bs).expect("dequantize");
        assert_eq!(
            bits(&deq),
            bits(&fx.f32(&format!("{name}.dequant"))),
            "{name}: dequant"
        );
    }
}

fn check_rowwise<T: Element>(fx: &Fixture, case: &serde_json::Value, x: Vec<T>) {
    let name = case_str(case, "name");
    let sh = shape(case);
    let thr = case["threshold"].as_f64().expect("threshold");
    let dec = quantize_rows(&x, sh[0], sh[1], thr).expect("quantize");
    let label = format!("{name} ({}, {sh:?}, threshold {thr})", T::DTYPE);
    if let Some(d) = first_diff(dec.quantized.data(), &fx.i8(&format!("{name}.cb"))) {
        panic!("{label}: int8[{}] = {} vs bnb {}", d.0, d.1, d.2);
    }
    assert_eq!(
        bits(dec.quantized.scales()),
        bits(&fx.f32(&format!("{name}.scb"))),
        "{label}: scales"
    );
    if case["has_outlier_cols"].as_bool().expect("flag") {
        let cols: Vec<usize> = fx
            .i64(&format!("{name}.outlier_cols"))
            .iter()
            .map(|&c| c as usize)
            .collect();
        assert_eq!(dec.outlier_cols, cols, "{label}: outlier columns");
    } else {
        assert!(dec.outlier_cols.is_empty(), "{label}");
    }
    assert_eq!(
        bits(&dec.quantized.dequantize()),
        bits(&fx.f32(&format!("{name}.dequant"))),
        "{label}: dequant"
    );
}

#[test]
fn int8_rowwise_matches_bitsandbytes() {
    let fx = Fixture::open("golden_int8.safetensors");
    let cases = fx.metadata("cases");
    for case in cases.as_array().expect("cases") {
        let input = format!("{}.input", case_str(case, "name"));
        match case_str(case, "dtype") {
            "float32" => check_rowwise(&fx, case, fx.f32(&input)),
            "float16" => check_rowwise(&fx, case, fx.f16(&input)),
            "bfloat16" => check_rowwise(&fx, case, fx.bf16(&input)),
            other => panic!("unknown dtype {other}"),
        }
    }
}

fn check_linear<T: Element>(
    fx: &Fixture,
    case: &serde_json::Value,
    x: Vec<T>,
    bias: Option<Vec<T>>,
) {
    let name = case_str(case, "name");
    let tokens = case_usize(case, "tokens");
    let (fin, fout) = (case_usize(case, "in"), case_usize(case, "out"));
    let thr = case["threshold"].as_f64().expect("threshold");
    let w = fx.f32(&format!("{name}.weight"));
    let weight = Int8Rowwise::quantize_weight(&w, fout, fin).expect("weight");
    assert_eq!(
        weight.data(),
        fx.i8(&format!("{name}.cb")).as_slice(),
        "{name}: CB"
    );
    assert_eq!(
        bits(weight.scales()),
        bits(&fx.f32(&format!("{name}.scb"))),
        "{name}: SCB"
    );

    // The activation side: f16 cast, then row-wise with the threshold.
    let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(v.to_f32())).collect();
    let dec = quantize_rows(&xh, tokens, fin, thr).expect("activations");
    assert_eq!(
        dec.quantized.data(),
        fx.i8(&format!("{name}.ca")).as_slice(),
        "{name}: CA"
    );
    assert_eq!(
        bits(dec.quantized.scales()),
        bits(&fx.f32(&format!("{name}.sca"))),
        "{name}: SCA"
    );
    if fx.has(&format!("{name}.outlier_cols")) {
        let cols: Vec<usize> = fx
            .i64(&format!("{name}.outlier_cols"))
            .iter()
            .map(|&c| c as usize)
            .collect();
        assert_eq!(dec.outlier_cols, cols, "{name}: outlier columns");
    }

    let out = int8_linear(&x, tokens, &weight, bias.as_deref(), thr).expect("forward");
    let theirs = fx.float(&format!("{name}.out"));
    let tol = if T::DTYPE == kiln_quant::codec::FloatDtype::F32 {
        1e-5
    } else {
        2e-3
    };
    for (i, (a, b)) in out.iter().zip(&theirs).enumerate() {
        let a = a.to_f32();
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{name}: out[{i}] = {a} vs bnb {b}"
        );
    }
}

#[test]
fn llm_int8_forward_matches_bitsandbytes() {
    let fx = Fixture::open("golden_int8.safetensors");
    let cases = fx.metadata("matmul_cases");
    for case in cases.as_array().expect("cases") {
        let name = case_str(case, "name");
        let has_bias = case["bias"].as_bool().expect("bias");
        let bias_f32 = has_bias.then(|| fx.f32(&format!("{name}.bias")));
        match case_str(case, "dtype") {
            "float32" => check_linear(&fx, case, fx.f32(&format!("{name}.x")), bias_f32),
            "float16" => {
                let bias = bias_f32.map(|b| b.iter().map(|v| f16::from_f32(*v)).collect());
                check_linear(&fx, case, fx.f16(&format!("{name}.x")), bias)
            }
            other => panic!("unknown dtype {other}"),
        }
    }
}
