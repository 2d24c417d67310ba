//! `Linear4bit` / `Linear8bitLt` on burn's wgpu backend: the forward must take the device
//! kernels (not the reference path) and agree with the CPU codecs.
#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used)]

use burn::backend::Wgpu;
use burn::tensor::{Tensor, TensorData};
use kiln_quant::codec::{FloatDtype, FourBitType, Int8Rowwise, Quantized4bit, int8_linear};
use kiln_quant::nn::{Linear4bit, Linear8bitLt};

mod common;
use common::noise;

type B = Wgpu;

fn seed() -> u64 {
    let seed = std::env::var("KILN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("KILN_TEST_SEED={seed}");
    seed
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    let data = t.into_data();
    data.convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn linear4bit_runs_the_kernels_and_matches_the_codec() {
    let device = Default::default();
    let seed = seed();
    let (n, k) = (45usize, 256usize);
    let w = noise(n * k, seed);
    let bias = noise(n, seed + 1);
    for (qt, dq) in [(FourBitType::Nf4, true), (FourBitType::Fp4, false)] {
        let q = Quantized4bit::quantize(&w, &[n, k], qt, 64, dq).unwrap();
        let wf = q.dequantize::<f32>();
        let layer = Linear4bit::<B>::from_quantized(
            &q,
            Some(Tensor::from_data(
                TensorData::new(bias.clone(), [n]),
                &device,
            )),
            FloatDtype::F32,
            &device,
        )
        .unwrap();
        // 1 and 3 tokens take the fused GEMV, 19 the device dequantization and a matmul.
        for tokens in [1usize, 3, 19] {
            let x = noise(tokens * k, seed + 2 + tokens as u64);
            let xt = Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [1, tokens, k]), &device);
            let y = layer
                .forward_device(xt)
                .unwrap_or_else(|_| panic!("{qt} {tokens} tokens: no device path"));
            assert_eq!(y.dims(), [1, tokens, n]);
            let got = values(y);
            for t in 0..tokens {
                for o in 0..n {
                    let (mut e, mut mag) = (bias[o] as f64, bias[o].abs() as f64);
                    for i in 0..k {
                        let p = x[t * k + i] as f64 * wf[o * k + i] as f64;
                        e += p;
                        mag += p.abs();
                    }
                    let g = got[t * n + o] as f64;
                    assert!(
                        (g - e).abs() <= 1e-5 * mag + 1e-6,
                        "{qt} dq {dq} tokens {tokens}: y[{t}, {o}] = {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn linear4bit_f16_compute_matches_reference_forward() {
    let device = Default::default();
    let seed = seed();
    let (n, k) = (33usize, 128usize);
    let q =
        Quantized4bit::quantize(&noise(n * k, seed), &[n, k], FourBitType::Nf4, 32, false).unwrap();
    let layer = Linear4bit::<B>::from_quantized(&q, None, FloatDtype::F16, &device).unwrap();
    let x = noise(2 * k, seed + 7);
    let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [2, k]), &device);
    let got = values(
        layer
            .forward_device(xt.clone())
            .unwrap_or_else(|_| panic!("no device path")),
    );
    let want = values(layer.forward_reference(xt));
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        // Both round to f16; the device accumulates in f32 with f32 weights.
        assert!(
            (g - e).abs() <= 2e-3 * (1.0 + e.abs()),
            "y[{i}] = {g} vs {e}"
        );
    }
}

#[test]
fn linear8bit_runs_the_kernels_and_matches_the_codec() {
    let device = Default::default();
    let seed = seed();
    let (n, k) = (29usize, 200usize);
    let wq = Int8Rowwise::quantize_weight(&noise(n * k, seed), n, k).unwrap();
    let bias = noise(n, seed + 3);
    let layer = Linear8bitLt::<B>::from_quantized(
        &wq,
        Some(Tensor::from_data(
            TensorData::new(bias.clone(), [n]),
            &device,
        )),
        6.0,
        &device,
    )
    .unwrap();
    for tokens in [1usize, 4] {
        let mut x: Vec<f32> = noise(tokens * k, seed + 4)
            .iter()
            .map(|v| v * 4.0)
            .collect();
        x[17] = 7.5; // an outlier column
        let want = int8_linear(&x, tokens, &wq, Some(&bias), 6.0).unwrap();
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [tokens, k]), &device);
        let got = values(
            layer
                .forward_device(xt)
                .unwrap_or_else(|_| panic!("no device path")),
        );
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "tokens {tokens}: y[{i}] = {g} vs {e}"
            );
        }
    }
    // More rows than the fused kernel takes: the reference path.
    let xt = Tensor::<B, 2>::from_data(TensorData::new(noise(20 * k, seed + 5), [20, k]), &device);
    assert!(layer.forward_device(xt.clone()).is_err());
    assert_eq!(layer.forward(xt).dims(), [20, n]);
}

/// `Linear4bit::quantize` quantizes on the device: every tensor of the module (codes, plain or
/// nested absmax, code tables) equals the host codec's, in f32 and f16, with and without double
/// quantization, for a size whose last block is partial.
#[test]
fn linear4bit_quantize_on_the_device_equals_the_host_codec() {
    let device = Default::default();
    let seed = seed();
    let (n, k) = (37usize, 200usize);
    let w = noise(n * k, seed);
    let ints = |t: Tensor<B, 1, burn::tensor::Int>| {
        t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
    };
    for dtype in [FloatDtype::F32, FloatDtype::F16] {
        for (qt, dq) in [
            (FourBitType::Nf4, true),
            (FourBitType::Fp4, false),
            (FourBitType::Nf4, false),
        ] {
            let what = format!("{dtype:?} {qt} double quant {dq}");
            let (host_q, weight) = match dtype {
                FloatDtype::F16 => {
                    let h: Vec<half::f16> = w.iter().map(|&x| half::f16::from_f32(x)).collect();
                    let t = Tensor::<B, 2>::from_data(
                        TensorData::new(h.clone(), [n, k]),
                        (&device, burn::tensor::DType::F16),
                    );
                    (Quantized4bit::quantize(&h, &[n, k], qt, 64, dq).unwrap(), t)
                }
                _ => (
                    Quantized4bit::quantize(&w, &[n, k], qt, 64, dq).unwrap(),
                    Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [n, k]), &device),
                ),
            };
            let host =
                Linear4bit::<B>::from_quantized(&host_q, None, FloatDtype::F32, &device).unwrap();
            let dev = Linear4bit::<B>::quantize(weight, None, qt, 64, dq, FloatDtype::F32).unwrap();
            assert_eq!(dev.meta, host.meta, "{what}: meta");
            assert_eq!(
                ints(dev.packed.clone()),
                ints(host.packed.clone()),
                "{what}: codes"
            );
            assert_eq!(
                values(dev.absmax.clone()),
                values(host.absmax.clone()),
                "{what}: absmax"
            );
            assert_eq!(
                values(dev.code.clone()),
                values(host.code.clone()),
                "{what}: code"
            );
            assert_eq!(dev.absmax_codes.is_some(), dq, "{what}");
            if dq {
                let (a, b) = (
                    dev.absmax_codes.clone().unwrap(),
                    host.absmax_codes.clone().unwrap(),
                );
                assert_eq!(ints(a), ints(b), "{what}: nested codes");
                let (a, b) = (
                    dev.nested_absmax.clone().unwrap(),
                    host.nested_absmax.clone().unwrap(),
                );
                assert_eq!(values(a), values(b), "{what}: nested absmax");
            }
            // And the layer computes: its forward equals the host-built layer's.
            let x = noise(3 * k, seed + 9);
            let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [3, k]), &device);
            assert_eq!(
                values(dev.forward(xt.clone())),
                values(host.forward(xt)),
                "{what}: forward"
            );
        }
    }
}

/// `Linear8bitLt::quantize` quantizes on the device: the packed rows and `SCB` equal the host
/// codec's (`Int8Params`: via f16), for f32 and f16 weights, a row of zeros and a width that
/// pads its rows; a NaN is refused with its index.
#[test]
fn linear8bit_quantize_on_the_device_equals_the_host_codec() {
    let device = Default::default();
    let seed = seed();
    let (n, k) = (21usize, 300usize);
    let mut w: Vec<f32> = noise(n * k, seed).iter().map(|v| v * 3.0).collect();
    w[5 * k..6 * k].fill(0.0);
    let ints = |t: Tensor<B, 2, burn::tensor::Int>| {
        t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
    };
    let q = Int8Rowwise::quantize_weight(&w, n, k).unwrap();
    let host = Linear8bitLt::<B>::from_quantized(&q, None, 6.0, &device).unwrap();
    for f16_input in [false, true] {
        let t = Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [n, k]), &device);
        let t = if f16_input {
            t.cast(burn::tensor::FloatDType::F16)
        } else {
            t
        };
        let dev = Linear8bitLt::<B>::quantize(t, None, 6.0).unwrap();
        assert_eq!(dev.meta, host.meta, "f16 input {f16_input}: meta");
        assert_eq!(
            ints(dev.weight.clone()),
            ints(host.weight.clone()),
            "f16 input {f16_input}: rows"
        );
        assert_eq!(
            values(dev.scb.clone()),
            values(host.scb.clone()),
            "f16 input {f16_input}: SCB"
        );
    }
    let mut bad = w.clone();
    bad[7 * k + 3] = f32::NAN;
    let t = Tensor::<B, 2>::from_data(TensorData::new(bad, [n, k]), &device);
    let err = Linear8bitLt::<B>::quantize(t, None, 6.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&(7 * k + 3).to_string()), "{err}");
}
