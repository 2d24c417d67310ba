//! Property tests: round-trip error bounds and layout invariants of the codecs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use half::{bf16, f16};
use kiln_quant::QuantError;
use kiln_quant::codec::{
    Absmax, FourBitType, Int8Rowwise, NESTED_BLOCKSIZE, Quantized4bit, VALID_BLOCKSIZES,
};
use proptest::prelude::*;

/// Half the widest gap between neighbouring codes: the worst rounding error relative to absmax.
fn max_half_gap(qt: FourBitType) -> f32 {
    let mut code = *qt.code();
    code.sort_by(f32::total_cmp);
    code.windows(2)
        .map(|w| (w[1] - w[0]) / 2.0)
        .fold(0.0, f32::max)
}

fn tensor() -> impl Strategy<Value = (Vec<f32>, usize)> {
    (
        1usize..3000,
        prop::sample::select(VALID_BLOCKSIZES.to_vec()),
        -20i32..20,
    )
        .prop_flat_map(|(n, bs, exp)| {
            let scale = 2f32.powi(exp);
            (prop::collection::vec(-1.0f32..1.0, n), Just(bs))
                .prop_map(move |(v, bs)| (v.into_iter().map(|x| x * scale).collect(), bs))
        })
}

fn qtype() -> impl Strategy<Value = FourBitType> {
    prop_oneof![Just(FourBitType::Nf4), Just(FourBitType::Fp4)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn four_bit_round_trip_is_bounded((x, bs) in tensor(), qt in qtype()) {
        let n = x.len();
        let q = Quantized4bit::quantize(&x, &[n], qt, bs, false).unwrap();
        prop_assert_eq!(q.packed().len(), n.div_ceil(2));
        prop_assert_eq!(q.absmax().len(), n.div_ceil(bs));
        let Absmax::Plain(absmax) = q.absmax() else { panic!("plain absmax expected") };
        let back: Vec<f32> = q.dequantize();
        let bound = max_half_gap(qt) * 1.0001;
        for (b, block) in x.chunks(bs).enumerate() {
            let m = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // The stored absmax is the block max (clamped to 1e-38 for a partial last block).
            prop_assert!(absmax[b] == m || (absmax[b] == 1e-38 && m < 1e-38));
            for (i, v) in block.iter().enumerate() {
                let err = (back[b * bs + i] - v).abs();
                prop_assert!(err <= bound * absmax[b] + 1e-30, "block {} elem {}: {} vs {}", b, i, back[b * bs + i], v);
            }
        }
        // The block max itself is representable: NF4 and FP4 both hold +-1.
        let argmax = x.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|(i, _)| i).unwrap();
        prop_assert_eq!(back[argmax], x[argmax]);
        // Unpacked codes round-trip through the packing (high nibble first).
        let codes = q.codes();
        prop_assert_eq!(codes.len(), n);
        for (i, c) in codes.iter().enumerate() {
            let byte = q.packed()[i / 2];
            prop_assert_eq!(*c, if i % 2 == 0 { byte >> 4 } else { byte & 0x0F });
        }
    }

    #[test]
    fn double_quant_keeps_absmax_close((x, bs) in tensor(), qt in qtype()) {
        let n = x.len();
        let plain = Quantized4bit::quantize(&x, &[n], qt, bs, false).unwrap();
        let nested = Quantized4bit::quantize(&x, &[n], qt, bs, true).unwrap();
        prop_assert_eq!(plain.packed(), nested.packed(), "codes do not depend on nesting");
        let Absmax::Nested(ns) = nested.absmax() else { panic!("nested expected") };
        prop_assert_eq!(ns.absmax().len(), n.div_ceil(bs).div_ceil(NESTED_BLOCKSIZE));
        let exact = plain.absmax().to_f32();
        let approx = nested.absmax().to_f32();
        for (j, (a, e)) in approx.iter().zip(exact.iter()).enumerate() {
            let nested_max = ns.absmax()[j / NESTED_BLOCKSIZE];
            // The dynamic map's widest gap is below 0.015; its lookup table adds one bin.
            prop_assert!((a - e).abs() <= 0.01 * nested_max + 1e-6 * e.abs() + 1e-37, "absmax {}: {} vs {}", j, a, e);
        }
    }

    #[test]
    fn half_inputs_quantize_as_their_f32_widening(v in prop::collection::vec(-1000.0f32..1000.0, 1..700), qt in qtype()) {
        let n = v.len();
        let h: Vec<f16> = v.iter().map(|x| f16::from_f32(*x)).collect();
        let b: Vec<bf16> = v.iter().map(|x| bf16::from_f32(*x)).collect();
        let hw: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        let bw: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        let qh = Quantized4bit::quantize(&h, &[n], qt, 64, true).unwrap();
        let qf = Quantized4bit::quantize(&hw, &[n], qt, 64, true).unwrap();
        prop_assert_eq!(qh.packed(), qf.packed());
        prop_assert_eq!(qh.absmax(), qf.absmax());
        let qb = Quantized4bit::quantize(&b, &[n], qt, 64, false).unwrap();
        let qbf = Quantized4bit::quantize(&bw, &[n], qt, 64, false).unwrap();
        prop_assert_eq!(qb.packed(), qbf.packed());
    }

    #[test]
    fn int8_round_trip_is_bounded(rows in 1usize..12, cols in 1usize..200, seed in any::<u64>()) {
        let mut s = seed;
        let x: Vec<f32> = (0..rows * cols).map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10.0
        }).collect();
        let q = Int8Rowwise::quantize(&x, rows, cols).unwrap();
        let back = q.dequantize();
        for r in 0..rows {
            let m = q.scales()[r];
            for c in 0..cols {
                let (a, b) = (back[r * cols + c], x[r * cols + c]);
                prop_assert!((a - b).abs() <= m / 127.0 * 0.5 * 1.0001 + 1e-6, "({}, {}): {} vs {}", r, c, a, b);
                prop_assert!(q.data()[r * cols + c] != i8::MIN);
            }
        }
    }

    #[test]
    fn non_finite_inputs_are_rejected(mut v in prop::collection::vec(-1.0f32..1.0, 1..300), pos in any::<prop::sample::Index>(), which in 0usize..3) {
        let i = pos.index(v.len());
        v[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][which];
        let n = v.len();
        let err = Quantized4bit::quantize(&v, &[n], FourBitType::Nf4, 64, false).unwrap_err();
        let reported = match err {
            QuantError::NonFinite { index, .. } => Some(index),
            _ => None,
        };
        prop_assert_eq!(reported, Some(i));
        let h: Vec<f16> = v.iter().map(|x| f16::from_f32(*x)).collect();
        prop_assert!(Quantized4bit::quantize(&h, &[n], FourBitType::Fp4, 64, true).is_err());
        prop_assert!(Int8Rowwise::quantize(&v, 1, n).is_err());
    }
}

#[test]
fn rejects_bad_blocksizes_and_shapes() {
    let x = [1.0f32; 100];
    for bs in [0, 16, 48, 8192] {
        let err = Quantized4bit::quantize(&x, &[100], FourBitType::Nf4, bs, false).unwrap_err();
        assert!(err.to_string().contains(&bs.to_string()), "{err}");
    }
    let err = Quantized4bit::quantize(&x, &[10, 9], FourBitType::Nf4, 64, false).unwrap_err();
    assert!(err.to_string().contains("90"), "{err}");
}

#[test]
fn empty_and_zero_tensors() {
    let q =
        Quantized4bit::quantize::<f32>(&[], &[0, 64], FourBitType::Nf4, 64, true).expect("empty");
    assert!(q.packed().is_empty());
    assert!(q.dequantize::<f32>().is_empty());
    let z =
        Quantized4bit::quantize(&[0.0f32; 70], &[70], FourBitType::Nf4, 64, false).expect("zeros");
    assert!(z.dequantize::<f32>().iter().all(|v| *v == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The row-at-a-time CPU matmul equals dequantize-then-multiply (summed in f64 here) for
    /// any shape, blocksize, weight dtype and nesting.
    #[test]
    fn four_bit_linear_equals_dequantize_then_matmul(
        out in 1usize..24,
        inp in 1usize..200,
        tokens in 1usize..4,
        bs in prop::sample::select(vec![32usize, 64, 128]),
        nested in any::<bool>(),
        dtype in 0u8..3,
        seed in any::<u64>(),
    ) {
        let mut s = seed | 1;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let w: Vec<f32> = (0..out * inp).map(|_| next()).collect();
        let x: Vec<f32> = (0..tokens * inp).map(|_| next()).collect();
        let bias: Vec<f32> = (0..out).map(|_| next()).collect();
        let shape = [out, inp];
        let q = match dtype {
            0 => Quantized4bit::quantize(&w, &shape, FourBitType::Nf4, bs, nested),
            1 => {
                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                Quantized4bit::quantize(&h, &shape, FourBitType::Fp4, bs, nested)
            }
            _ => {
                let h: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                Quantized4bit::quantize(&h, &shape, FourBitType::Nf4, bs, nested)
            }
        }
        .unwrap();
        let dense: Vec<f32> = match dtype {
            0 => q.dequantize::<f32>(),
            1 => q.dequantize::<f16>().into_iter().map(f16::to_f32).collect(),
            _ => q.dequantize::<bf16>().into_iter().map(bf16::to_f32).collect(),
        };
        let y = q.linear(&x, tokens, Some(&bias)).unwrap();
        for t in 0..tokens {
            for j in 0..out {
                let want: f64 = bias[j] as f64
                    + (0..inp)
                        .map(|i| x[t * inp + i] as f64 * dense[j * inp + i] as f64)
                        .sum::<f64>();
                let got = y[t * out + j] as f64;
                prop_assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{got} vs {want}");
            }
        }
    }
}
