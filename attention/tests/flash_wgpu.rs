//! The flash kernels on wgpu (any Vulkan device; in CI Mesa's lavapipe) against a
//! straightforward f64 reference, on random inputs of random shapes.
#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used)]

mod common;

use burn::backend::Wgpu;
use burn::tensor::{DType, Tensor, TensorData};
use common::{Case, Rng, reference_padded, reference_varlen};
use kiln_attention::{FlashKernel, FlashParams, flash_attention, flash_attention_varlen};

type B = Wgpu;

fn device() -> burn::backend::wgpu::WgpuDevice {
    Default::default()
}

fn tensor<const D: usize>(data: &[f32], shape: [usize; D], dtype: DType) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(TensorData::new(data.to_vec(), shape), &device()).cast(dtype)
}

fn read<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

/// Largest |got - want| relative to the largest |want| (at least 1e-3), NaN counts as failure.
fn check(what: &str, got: &[f32], want: &[f64], bound: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    let mut at = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = if g.is_finite() {
            (g as f64 - w).abs() / scale
        } else {
            f64::INFINITY
        };
        if err > worst {
            worst = err;
            at = i;
        }
    }
    assert!(
        worst <= bound,
        "{what}: relative error {worst:.3e} at {at} (got {}, want {}) over bound {bound:.0e}",
        got[at],
        want[at]
    );
}

fn run_padded(case: &Case, kernel: FlashKernel, dtype: DType, bound: f64, rng: &mut Rng) {
    let [b, hq, sq, d] = [case.batch, case.q_heads, case.q_len, case.head_dim];
    let [hk, sk] = [case.kv_heads, case.k_len];
    let q = rng.normal_vec(b * hq * sq * d);
    let k = rng.normal_vec(b * hk * sk * d);
    let v = rng.normal_vec(b * hk * sk * d);
    let round = |x: &Vec<f32>| -> Vec<f32> { read(tensor(x, [x.len()], dtype)) };
    // The reference sees the inputs as rounded to the kernel's dtype.
    let (qr, kr, vr) = (round(&q), round(&k), round(&v));
    let params = FlashParams {
        kernel,
        ..case.params()
    };
    let out = flash_attention(
        tensor(&q, [b, hq, sq, d], dtype),
        tensor(&k, [b, hk, sk, d], dtype),
        tensor(&v, [b, hk, sk, d], dtype),
        &params,
    )
    .unwrap();
    assert_eq!(out.dims(), [b, hq, sq, d]);
    let want = reference_padded(case, &qr, &kr, &vr);
    check(
        &format!("{case:?} {kernel:?} {dtype:?}"),
        &read(out),
        &want,
        bound,
    );
}

#[test]
fn portable_kernel_matches_the_reference_on_random_cases() {
    let mut rng = Rng::new(0x5eed_f1a5);
    for i in 0..24 {
        let case = Case::random(&mut rng, i);
        run_padded(&case, FlashKernel::Portable, DType::F32, 1e-5, &mut rng);
    }
}

#[test]
fn portable_kernel_in_f16() {
    if !<B as burn::tensor::backend::Backend>::supports_dtype(&device(), DType::F16) {
        panic!("the wgpu device does not support f16; the f16 path cannot be tested here");
    }
    let mut rng = Rng::new(0xf16);
    for i in 0..6 {
        let case = Case::random(&mut rng, i);
        run_padded(&case, FlashKernel::Portable, DType::F16, 1e-2, &mut rng);
    }
}

#[test]
fn splits_merge_exactly() {
    let mut rng = Rng::new(77);
    for splits in [2, 3, 7] {
        for i in 0..3 {
            let mut case = Case::random(&mut rng, i);
            case.q_len = 1 + (i % 3);
            case.k_len = 100 + 37 * i;
            case.splits = Some(splits);
            run_padded(&case, FlashKernel::Portable, DType::F32, 1e-5, &mut rng);
        }
    }
}

#[test]
fn varlen_matches_the_reference() {
    let mut rng = Rng::new(99);
    for i in 0..4 {
        let base = Case::random(&mut rng, i);
        let seqs = 1 + rng.below(4);
        let q_lens: Vec<usize> = (0..seqs).map(|_| 1 + rng.below(90)).collect();
        let k_lens: Vec<usize> = q_lens
            .iter()
            .map(|&n| {
                if base.causal {
                    n + rng.below(40)
                } else {
                    1 + rng.below(120)
                }
            })
            .collect();
        let cu = |lens: &[usize]| -> Vec<usize> {
            let mut c = vec![0];
            for n in lens {
                c.push(c[c.len() - 1] + n);
            }
            c
        };
        let (cu_q, cu_k) = (cu(&q_lens), cu(&k_lens));
        let (tq, tk) = (cu_q[seqs], cu_k[seqs]);
        let (hq, hk, d) = (base.q_heads, base.kv_heads, base.head_dim);
        let q = rng.normal_vec(tq * hq * d);
        let k = rng.normal_vec(tk * hk * d);
        let v = rng.normal_vec(tk * hk * d);
        let params = FlashParams {
            kernel: FlashKernel::Portable,
            key_lens: None,
            ..base.params()
        };
        let out = flash_attention_varlen(
            tensor(&q, [tq, hq, d], DType::F32),
            tensor(&k, [tk, hk, d], DType::F32),
            tensor(&v, [tk, hk, d], DType::F32),
            &cu_q,
            &cu_k,
            &params,
        )
        .unwrap();
        let want = reference_varlen(&base, &cu_q, &cu_k, &q, &k, &v);
        check(
            &format!("varlen {base:?} {cu_q:?} {cu_k:?}"),
            &read(out),
            &want,
            1e-5,
        );
    }
}

/// A random case for the emulated tensor-core kernel: small (emulation synchronizes the cube
/// in every matrix operation), and with every mask kind active so that one compiled kernel
/// covers all of their code.
fn emulated_case(rng: &mut Rng, i: usize, head_dim: usize, splits: usize) -> Case {
    let mut case = Case::random(rng, i);
    case.head_dim = head_dim;
    case.q_len = if splits > 1 {
        1 + rng.below(4)
    } else {
        33 + rng.below(60)
    };
    case.k_len = case.q_len + rng.below(60);
    if let Some(lens) = case.key_lens.as_mut() {
        lens.iter_mut().for_each(|n| *n = rng.below(case.k_len + 1));
    }
    case.causal = true;
    case.window_left = if i.is_multiple_of(2) {
        -1
    } else {
        rng.below(48) as i64
    };
    case.window_right = rng.below(6) as i64;
    case.softcap = 10.0 + 40.0 * rng.unit();
    case.splits = Some(splits);
    case
}

#[test]
fn tensor_core_kernel_logic_emulated() {
    let mut rng = Rng::new(0x7c);
    for i in 0..4 {
        let case = emulated_case(&mut rng, i, 64, 1);
        // Odd cases run the two-stage (pipelined) variant's buffer logic.
        let kernel = if i % 2 == 0 {
            FlashKernel::TensorCoreEmulated
        } else {
            FlashKernel::TensorCorePipelinedEmulated
        };
        run_padded(&case, kernel, DType::F32, 1e-5, &mut rng);
    }
}

/// More configurations of the emulated tensor-core kernel (each compiles for a while on
/// lavapipe): `cargo test -p kiln-attention --features wgpu -- --ignored`.
#[test]
#[ignore = "several minutes on lavapipe; run with --ignored"]
fn tensor_core_kernel_logic_emulated_more() {
    let mut rng = Rng::new(0x7d);
    // Split-KV decoding.
    for i in 0..3 {
        let case = emulated_case(&mut rng, i, 64, 3);
        run_padded(
            &case,
            FlashKernel::TensorCoreEmulated,
            DType::F32,
            1e-5,
            &mut rng,
        );
    }
    // No masks.
    for i in 0..2 {
        let mut case = Case::random(&mut rng, 0);
        case.head_dim = 64;
        case.q_len = 33 + rng.below(60);
        case.k_len = 1 + rng.below(100);
        case.splits = Some(1);
        case.softcap = 0.0;
        let _ = i;
        run_padded(
            &case,
            FlashKernel::TensorCoreEmulated,
            DType::F32,
            1e-5,
            &mut rng,
        );
    }
    // Head dimension 128 in f16 (f32 tiles of 128 do not fit lavapipe's 32 KiB).
    for i in 0..2 {
        let case = emulated_case(&mut rng, i, 128, 1);
        run_padded(
            &case,
            FlashKernel::TensorCoreEmulated,
            DType::F16,
            1e-2,
            &mut rng,
        );
    }
    // The pipelined variant with splits.
    for i in 0..2 {
        let case = emulated_case(&mut rng, i, 64, 2);
        run_padded(
            &case,
            FlashKernel::TensorCorePipelinedEmulated,
            DType::F32,
            1e-5,
            &mut rng,
        );
    }
}

/// A KV cache buffer read by the flash kernels as it is (capacity beyond the used positions,
/// filled with garbage) equals eager attention over the used positions alone.
#[test]
fn kvcache_buffers_equal_eager_on_the_used_positions() {
    use kiln_attention::{
        AttentionImpl, AttentionOptions, attention_with_kvcache, eager_attention,
    };
    let mut rng = Rng::new(7);
    let (b, hq, hk, d, cap) = (2, 4, 2, 16, 64);
    for (q_len, used) in [(1, 1), (1, 37), (5, 20), (3, 64)] {
        let q = tensor(
            &rng.normal_vec(b * hq * q_len * d),
            [b, hq, q_len, d],
            DType::F32,
        );
        // Unused positions hold large values: reading them would show.
        let mut kv = |_: usize| {
            let mut v = rng.normal_vec(b * hk * cap * d);
            for (i, x) in v.iter_mut().enumerate() {
                if (i / d) % cap >= used {
                    *x = 1e4;
                }
            }
            tensor(&v, [b, hk, cap, d], DType::F32)
        };
        let (k, v) = (kv(0), kv(1));
        for options in [
            AttentionOptions::causal(),
            AttentionOptions::causal().with_window(kiln_attention::Window::sliding(4)),
        ] {
            // Flash must run here (an error otherwise); Auto takes it too.
            let run = |implementation| {
                attention_with_kvcache(
                    implementation,
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    used,
                    &options,
                )
                .unwrap()
            };
            let (got, auto) = (run(AttentionImpl::Flash), run(AttentionImpl::Auto));
            assert_eq!(read(got.clone()), read(auto));
            let want = eager_attention(
                q.clone(),
                k.clone().narrow(2, 0, used),
                v.clone().narrow(2, 0, used),
                &options,
            )
            .unwrap();
            let want: Vec<f64> = read(want).into_iter().map(f64::from).collect();
            check(
                &format!("q_len {q_len}, used {used}"),
                &read(got),
                &want,
                1e-4,
            );
        }
    }
}
