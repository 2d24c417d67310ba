//! `Linear4bit` / `Linear8bitLt` on burn's ndarray backend against the CPU codecs and the
//! transformers + bitsandbytes checkpoints of testdata/quant/tiny-llama.
#![cfg(feature = "burn")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::backend::NdArray;
use burn::nn::LinearConfig;
use burn::tensor::{DType, Tensor, TensorData};
use common::{bits, testdata};
use half::f16;
use kiln_quant::checkpoint::{Checkpoint, LinearWeight};
use kiln_quant::codec::{FloatDtype, FourBitType, Int8Rowwise, Quantized4bit, int8_linear};
use kiln_quant::nn::{Linear4bit, Linear8bitLt};

type B = NdArray;

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32 data")
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `x W^T + b` in f64, for reference.
fn reference_linear(
    x: &[f32],
    tokens: usize,
    w: &[f32],
    out: usize,
    inp: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0.0f32; tokens * out];
    for t in 0..tokens {
        for o in 0..out {
            let mut acc = bias.map_or(0.0, |b| b[o] as f64);
            for i in 0..inp {
                acc += x[t * inp + i] as f64 * w[o * inp + i] as f64;
            }
            y[t * out + o] = acc as f32;
        }
    }
    y
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, label: &str) {
    assert_eq!(a.len(), b.len(), "{label}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{label}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn linear4bit_from_bnb_checkpoint_matches_the_codec() {
    let device = Default::default();
    for variant in ["nf4-dq", "fp4"] {
        let mut ckpt = Checkpoint::open(testdata().join("tiny-llama").join(variant)).expect("open");
        for module in ckpt.linear_modules() {
            let LinearWeight::FourBit(q) = ckpt.linear_weight(&module).expect("weight") else {
                continue;
            };
            // ndarray computes in f32 only: override the checkpoint's bf16 compute dtype.
            let layer = Linear4bit::<B>::from_checkpoint(
                &mut ckpt,
                &module,
                Some(FloatDtype::F32),
                &device,
            )
            .expect("module");
            // Compact storage: bitsandbytes' bytes four to an i32 word, so half a byte per
            // weight and one byte per nested absmax code.
            assert_eq!(layer.packed.dtype(), DType::I32);
            assert_eq!(layer.packed.dims()[0], q.packed().len().div_ceil(16) * 4);
            if let Some(codes) = &layer.absmax_codes {
                assert_eq!(codes.dtype(), DType::I32);
            }
            let w = values(layer.weight());
            let expected: Vec<f32> = q.dequantize();
            assert_eq!(
                bits(&w),
                bits(&expected),
                "{variant}/{module}: dequantized weight"
            );

            let [out, inp] = [q.shape()[0], q.shape()[1]];
            let x = noise(3 * inp, 7);
            let bias = ckpt
                .tensor(&format!("{module}.bias"))
                .ok()
                .map(|t| t.to_f32_vec("bias").expect("f32"));
            let y = values(layer.forward(Tensor::<B, 2>::from_data(
                TensorData::new(x.clone(), [3, inp]),
                &device,
            )));
            let want = reference_linear(&x, 3, &expected, out, inp, bias.as_deref());
            assert_close(&y, &want, 1e-5, &format!("{variant}/{module} forward"));
        }
    }
}

#[test]
fn linear4bit_from_burn_linear() {
    let device = Default::default();
    let linear = LinearConfig::new(96, 40).with_bias(true).init::<B>(&device);
    for (qt, bs, dq) in [(FourBitType::Nf4, 64, true), (FourBitType::Fp4, 32, false)] {
        let layer =
            Linear4bit::from_linear(&linear, qt, bs, dq, FloatDtype::F32).expect("quantize");
        // burn stores [in, out]; bnb quantizes [out, in].
        let rows = values(linear.weight.val().transpose());
        let q = Quantized4bit::quantize(&rows, &[40, 96], qt, bs, dq).expect("codec");
        let expected: Vec<f32> = q.dequantize();
        assert_eq!(
            bits(&values(layer.weight())),
            bits(&expected),
            "{qt} bs {bs}"
        );

        // A 3-D input through both.
        let x = noise(2 * 5 * 96, 3);
        let xt = Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [2, 5, 96]), &device);
        let y = values(layer.forward(xt));
        let bias = values(linear.bias.as_ref().expect("bias").val());
        let want = reference_linear(&x, 10, &expected, 40, 96, Some(&bias));
        assert_close(&y, &want, 1e-5, "3-D forward");
        // And close to the float layer, within 4-bit error.
        let float = values(linear.forward(Tensor::<B, 3>::from_data(
            TensorData::new(x, [2, 5, 96]),
            &device,
        )));
        let err = y
            .iter()
            .zip(&float)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err < 0.3,
            "{qt}: 4-bit layer strays {err} from the float layer"
        );
    }
}

/// Activations exactly representable in f16, with outlier columns (bnb casts inputs to f16
/// before quantizing; such inputs make that cast exact).
fn activations(tokens: usize, inp: usize, seed: u64) -> Vec<f32> {
    let mut x = noise(tokens * inp, seed);
    for t in 0..tokens {
        x[t * inp + 3] *= 12.0;
        x[t * inp + inp / 2] *= 9.0;
    }
    x.iter().map(|v| f16::from_f32(*v).to_f32()).collect()
}

#[test]
fn linear8bit_from_bnb_checkpoint_matches_the_codec() {
    let device = Default::default();
    let mut ckpt = Checkpoint::open(testdata().join("tiny-llama").join("int8")).expect("open");
    for module in ckpt.linear_modules() {
        let LinearWeight::Int8(q) = ckpt.linear_weight(&module).expect("weight") else {
            continue;
        };
        let layer =
            Linear8bitLt::<B>::from_checkpoint(&mut ckpt, &module, None, &device).expect("module");
        assert_eq!(layer.meta.threshold, 6.0);
        // Compact storage: one byte per weight, four to an i32 word (rows padded to 16 bytes).
        assert_eq!(layer.weight.dtype(), DType::I32);
        assert_eq!(layer.weight.dims(), [q.rows(), q.cols().div_ceil(16) * 4]);
        assert_eq!(
            bits(&values(layer.weight_f32())),
            bits(&q.dequantize()),
            "{module}: weight"
        );
        let bias = ckpt
            .tensor(&format!("{module}.bias"))
            .ok()
            .map(|t| t.to_f32_vec("bias").expect("f32"));
        for tokens in [1, 4] {
            let x = activations(tokens, q.cols(), 11);
            let want = int8_linear(&x, tokens, &q, bias.as_deref(), 6.0).expect("codec");
            let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [tokens, q.cols()]), &device);
            let y = values(layer.forward(xt));
            assert_close(&y, &want, 1e-5, &format!("{module} ({tokens} tokens)"));
        }
    }
}

#[test]
fn linear8bit_from_burn_linear_without_threshold() {
    let device = Default::default();
    let linear = LinearConfig::new(64, 24)
        .with_bias(false)
        .init::<B>(&device);
    let layer = Linear8bitLt::from_linear(&linear, 0.0).expect("quantize");
    let rows = values(linear.weight.val().transpose());
    let q = Int8Rowwise::quantize_weight(&rows, 24, 64).expect("codec");
    let x = activations(3, 64, 5);
    let want = int8_linear(&x, 3, &q, None, 0.0).expect("codec");
    let y = values(layer.forward(Tensor::<B, 2>::from_data(
        TensorData::new(x, [3, 64]),
        &device,
    )));
    assert_close(&y, &want, 1e-5, "threshold 0");
}

#[test]
fn linear8bit_rounds_activations_to_f16_as_bitsandbytes_does() {
    // Inputs that f16 cannot hold exactly (and some in f16's subnormal range): the module must
    // quantize what bitsandbytes quantizes, `x.to(float16)`, as the CPU codec does.
    let device = Default::default();
    let mut ckpt = Checkpoint::open(testdata().join("tiny-llama").join("int8")).expect("open");
    let module = "model.layers.0.mlp.down_proj";
    let LinearWeight::Int8(q) = ckpt.linear_weight(module).expect("weight") else {
        panic!("{module} is not int8");
    };
    let layer =
        Linear8bitLt::<B>::from_checkpoint(&mut ckpt, module, None, &device).expect("module");
    let tokens = 5;
    let mut x = noise(tokens * q.cols(), 23);
    for (i, v) in x.iter_mut().enumerate() {
        match i % 7 {
            0 => *v *= 1e-5, // subnormal in f16
            3 => *v *= 9.0,  // outliers past the threshold
            _ => {}
        }
    }
    assert!(x.iter().any(|v| f16::from_f32(*v).to_f32() != *v));
    let want = int8_linear(&x, tokens, &q, None, 6.0).expect("codec");
    let y = values(layer.forward(Tensor::<B, 2>::from_data(
        TensorData::new(x, [tokens, q.cols()]),
        &device,
    )));
    assert_close(&y, &want, 1e-5, "unrounded activations");
}
