//! `Linear4bit::concat_rows` / `Linear8bitLt::concat_rows` on a GPU backend (wgpu, or CUDA
//! when built with `cuda` alone): the joined layer gives each part's outputs, by the device
//! kernels, with double-quantized absmax turned into plain f32 values that equal what the
//! kernels computed from the nested form.
#![cfg(any(feature = "wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use burn::tensor::{Tensor, TensorData};
use kiln_quant::codec::{FloatDtype, FourBitType, Int8Rowwise, Quantized4bit};
use kiln_quant::nn::{Linear4bit, Linear8bitLt};

mod common;
use common::noise;

#[cfg(feature = "wgpu")]
type B = burn::backend::Wgpu;
#[cfg(not(feature = "wgpu"))]
type B = burn::backend::Cuda;

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// `[tokens, sum(outs)]` from per-part `[tokens, out]` results.
fn side_by_side(parts: &[Vec<f32>], outs: &[usize], tokens: usize) -> Vec<f32> {
    let mut all = Vec::new();
    for t in 0..tokens {
        for (p, &o) in parts.iter().zip(outs) {
            all.extend_from_slice(&p[t * o..(t + 1) * o]);
        }
    }
    all
}

fn close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * (1.0 + w.abs()),
            "{what}: y[{i}] = {g}, parts give {w}"
        );
    }
}

#[test]
fn joined_4bit_layers_give_each_parts_outputs() {
    let device = Default::default();
    let k = 256usize;
    let outs = [40usize, 24, 24];
    for (qt, dq, compute) in [
        (FourBitType::Nf4, false, FloatDtype::F32),
        (FourBitType::Nf4, true, FloatDtype::F32),
        (FourBitType::Fp4, true, FloatDtype::F16),
    ] {
        let parts: Vec<Linear4bit<B>> = outs
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                // Scaled differently per part, so the nested offsets differ.
                let w: Vec<f32> = noise(n * k, 11 + i as u64)
                    .iter()
                    .map(|v| v * (1.0 + i as f32))
                    .collect();
                let q = Quantized4bit::quantize(&w, &[n, k], qt, 64, dq).unwrap();
                let bias =
                    Tensor::from_data(TensorData::new(noise(n, 21 + i as u64), [n]), &device);
                Linear4bit::from_quantized(&q, Some(bias), compute, &device).unwrap()
            })
            .collect();
        let joined = Linear4bit::concat_rows(&parts).unwrap();
        assert!(joined.absmax_codes.is_none());
        assert_eq!(joined.meta.out_features, 88);
        // The plain absmax holds exactly the values the parts' absmax stand for.
        let want: Vec<f32> = parts.iter().flat_map(|p| values(p.absmax_f32())).collect();
        close(
            &format!("{qt} dq={dq} absmax"),
            &values(joined.absmax.clone()),
            &want,
            1e-7,
        );
        // 1 and 3 tokens through the fused GEMV, 19 through dequantization and a matmul.
        for tokens in [1usize, 3, 19] {
            let x = Tensor::<B, 2>::from_data(
                TensorData::new(noise(tokens * k, 5 + tokens as u64), [tokens, k]),
                &device,
            );
            let each: Vec<Vec<f32>> = parts
                .iter()
                .map(|p| {
                    values(
                        p.forward_device(x.clone())
                            .unwrap_or_else(|_| panic!("no kernel")),
                    )
                })
                .collect();
            let got = joined
                .forward_device(x)
                .unwrap_or_else(|_| panic!("no kernel"));
            assert_eq!(got.dims(), [tokens, 88]);
            let rel = if compute == FloatDtype::F16 {
                2e-3
            } else {
                2e-5
            };
            close(
                &format!("{qt} dq={dq} {tokens} tokens"),
                &values(got),
                &side_by_side(&each, &outs, tokens),
                rel,
            );
        }
    }
}

#[test]
fn joined_int8_layers_give_each_parts_outputs() {
    let device = Default::default();
    let k = 200usize;
    let outs = [29usize, 16, 16];
    let parts: Vec<Linear8bitLt<B>> = outs
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let wq = Int8Rowwise::quantize_weight(&noise(n * k, 31 + i as u64), n, k).unwrap();
            Linear8bitLt::from_quantized(&wq, None, 6.0, &device).unwrap()
        })
        .collect();
    let joined = Linear8bitLt::concat_rows(&parts).unwrap();
    assert_eq!(joined.meta.out_features, 61);
    for tokens in [1usize, 4] {
        let mut x: Vec<f32> = noise(tokens * k, 41).iter().map(|v| v * 4.0).collect();
        x[17] = 7.5; // an outlier column: the same for every part
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [tokens, k]), &device);
        let each: Vec<Vec<f32>> = parts
            .iter()
            .map(|p| {
                values(
                    p.forward_device(x.clone())
                        .unwrap_or_else(|_| panic!("no kernel")),
                )
            })
            .collect();
        let got = values(
            joined
                .forward_device(x)
                .unwrap_or_else(|_| panic!("no kernel")),
        );
        close(
            &format!("int8 {tokens} tokens"),
            &got,
            &side_by_side(&each, &outs, tokens),
            1e-5,
        );
    }
}

#[test]
fn layers_that_cannot_be_joined_are_refused() {
    let device = Default::default();
    let make = |n: usize, k: usize, bias: bool| {
        let q = Quantized4bit::quantize(&noise(n * k, 3), &[n, k], FourBitType::Nf4, 64, false)
            .unwrap();
        let b = bias.then(|| Tensor::<B, 1>::zeros([n], &device));
        Linear4bit::<B>::from_quantized(&q, b, FloatDtype::F32, &device).unwrap()
    };
    let err = |parts: &[Linear4bit<B>]| Linear4bit::concat_rows(parts).unwrap_err().to_string();
    assert!(err(&[make(8, 128, false), make(8, 256, false)]).contains("input size"));
    assert!(err(&[make(8, 128, false), make(8, 128, true)]).contains("bias"));
    // 3 x 40 = 120 weights: not whole 64-element blocks (one would span two parts).
    assert!(err(&[make(3, 40, false), make(3, 40, false)]).contains("blocks"));
    assert!(Linear4bit::<B>::concat_rows(&[]).is_err());
}
