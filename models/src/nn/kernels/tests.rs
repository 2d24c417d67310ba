//! The kernels against the burn-op paths (and, for the activation, an f64 reference) on
//! burn's wgpu backend (on a machine without a GPU: Mesa's lavapipe), on random inputs of odd
//! sizes, into outputs poisoned with NaN: `cargo test -p kiln-models --features wgpu
//! nn::kernels`. With the `cuda` feature alone they run on burn's CUDA backend instead, bf16
//! too, when asked for: `cargo test -p kiln-models --features cuda nn::kernels -- --ignored`
//! on a machine with a CUDA device.
#![allow(clippy::unwrap_used)]

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;

use super::norm::Reduction;
use crate::nn::Activation;
use crate::nn::norm::rms_norm_reference;
use crate::nn::rope::rope_reference;

#[cfg(feature = "wgpu")]
type W = burn::backend::Wgpu;
#[cfg(feature = "wgpu")]
type Runtime = cubecl::wgpu::WgpuRuntime;
#[cfg(not(feature = "wgpu"))]
type W = burn::backend::Cuda;
#[cfg(not(feature = "wgpu"))]
type Runtime = cubecl::cuda::CudaRuntime;

/// Uniform values in `[-scale, scale)` from a xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// f32 and f16 (which every device these tests run on must support), and bf16 where the
/// device has it (CUDA; wgpu has none).
fn dtypes() -> Vec<DType> {
    let device = Default::default();
    assert!(
        <W as Backend>::supports_dtype(&device, DType::F16),
        "the device does not support f16; the f16 path cannot be tested here"
    );
    let mut dtypes = vec![DType::F32, DType::F16];
    if <W as Backend>::supports_dtype(&device, DType::BF16) {
        dtypes.push(DType::BF16);
    }
    dtypes
}

/// Uploaded flat and reshaped, as the models upload weights: burn-cuda uploads a matrix as a
/// pitched copy (rows padded apart), which the kernels' contiguity checks would refuse.
fn tensor<const D: usize>(v: &[f32], shape: [usize; D], dtype: DType) -> Tensor<W, D> {
    let n = v.len();
    let t = Tensor::<W, 1>::from_data(TensorData::new(v.to_vec(), [n]), &Default::default())
        .reshape(shape);
    if dtype == DType::F32 {
        t
    } else {
        t.cast(dtype)
    }
}

fn values<const D: usize>(t: Tensor<W, D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

fn cube<const D: usize>(t: Tensor<W, D>) -> CubeTensor<Runtime> {
    t.into_primitive().tensor()
}

fn uncube<const D: usize>(c: CubeTensor<Runtime>) -> Tensor<W, D> {
    Tensor::from_primitive(TensorPrimitive::Float(c))
}

/// A contiguous output of NaN, so that an element the kernel does not write fails the check.
fn poisoned<const D: usize>(shape: [usize; D], dtype: DType) -> CubeTensor<Runtime> {
    cube(Tensor::<W, D>::full(shape, f32::NAN, &Default::default()).cast(dtype))
}

/// The spacing of `dtype`'s values at `v`.
fn ulp(v: f32, dtype: DType) -> f32 {
    let (mantissa, min_exp) = match dtype {
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
        _ => (23, -126),
    };
    let exp = (v.abs().max(f32::MIN_POSITIVE).log2().floor() as i32).max(min_exp);
    2f32.powi(exp - mantissa)
}

/// f32: `|got - want| <= 1e-5 * max(1, |want|)`; half types: at most `ulps` spacings of the
/// dtype at `want`. NaN never passes.
fn check(what: &str, got: &[f32], want: &[f32], dtype: DType, ulps: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = match dtype {
            DType::F32 => 1e-5 * w.abs().max(1.0),
            _ => ulps * ulp(w, dtype),
        };
        assert!(
            (g - w).abs() <= bound,
            "{what} {dtype:?}: element {i} is {g}, want {w} (bound {bound:e})"
        );
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rms_norm_matches_the_burn_ops() {
    let mut rng = Rng(0x5eed_0001);
    let eps = 1e-6;
    let props = cube(Tensor::<W, 1>::zeros([1], &Default::default()))
        .client
        .properties()
        .clone();
    println!(
        "plane features {:?}, plane sizes {}..={}",
        props.features.plane, props.hardware.plane_size_min, props.hardware.plane_size_max
    );
    for dtype in dtypes() {
        for (rows, dim) in [(1, 8), (3, 64), (17, 576), (3, 4104), (2, 7), (1, 4096)] {
            let what = format!("rms_norm {rows}x{dim}");
            let x = tensor(&rng.vec(rows * dim, 3.0), [1, rows, dim], dtype);
            let w: Vec<f32> = rng.vec(dim, 0.5).iter().map(|v| v + 1.0).collect();
            let w = tensor(&w, [dim], dtype);
            let want = values(rms_norm_reference(x.clone(), &w, eps));
            let got = super::rms_norm(x.clone(), &w, eps)
                .unwrap_or_else(|_| panic!("{what}: the kernel did not run"));
            check(&what, &values(got), &want, dtype, 2.0);
            for reduction in [Reduction::Auto, Reduction::Shared] {
                let out = poisoned([1, rows, dim], dtype);
                let run = super::norm::launch(
                    cube(x.clone()),
                    None,
                    cube(w.clone()),
                    &out,
                    None,
                    eps as f32,
                    reduction,
                );
                assert!(run.is_some(), "{what}: {reduction:?} did not launch");
                check(
                    &format!("{what} {reduction:?}"),
                    &values(uncube::<3>(out)),
                    &want,
                    dtype,
                    2.0,
                );
            }
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rms_norm_reads_strided_rows() {
    let mut rng = Rng(0x5eed_0002);
    let (rows, dim) = (5, 64);
    let wide = tensor(&rng.vec(rows * 2 * dim, 3.0), [rows, 2 * dim], DType::F32);
    let x = wide.narrow(1, 0, dim);
    assert!(!cube(x.clone()).is_contiguous(), "the slice was copied");
    let w = tensor(&rng.vec(dim, 1.0), [dim], DType::F32);
    let want = values(rms_norm_reference(x.clone(), &w, 1e-5));
    let got = super::rms_norm(x, &w, 1e-5).unwrap_or_else(|_| panic!("no kernel"));
    check("rms_norm strided", &values(got), &want, DType::F32, 0.0);
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn add_rms_norm_matches_the_burn_ops() {
    let mut rng = Rng(0x5eed_0003);
    let eps = 1e-5;
    for dtype in dtypes() {
        for (rows, dim) in [(1, 64), (17, 576), (3, 36)] {
            let what = format!("add_rms_norm {rows}x{dim}");
            let r = tensor(&rng.vec(rows * dim, 3.0), [rows, dim], dtype);
            let x = tensor(&rng.vec(rows * dim, 3.0), [rows, dim], dtype);
            let w = tensor(&rng.vec(dim, 1.0), [dim], dtype);
            let sum = r.clone() + x.clone();
            let want_normed = values(rms_norm_reference(sum.clone(), &w, eps));
            let want_sum = values(sum);
            let (got_sum, got_normed) = super::add_rms_norm(r.clone(), x.clone(), &w, eps)
                .unwrap_or_else(|_| panic!("{what}: the kernel did not run"));
            check(&what, &values(got_sum), &want_sum, dtype, 0.0);
            check(&what, &values(got_normed), &want_normed, dtype, 2.0);
            for reduction in [Reduction::Auto, Reduction::Shared] {
                let (out, sum_out) = (poisoned([rows, dim], dtype), poisoned([rows, dim], dtype));
                let run = super::norm::launch(
                    cube(x.clone()),
                    Some(cube(r.clone())),
                    cube(w.clone()),
                    &out,
                    Some(&sum_out),
                    eps as f32,
                    reduction,
                );
                assert!(run.is_some(), "{what}: {reduction:?} did not launch");
                check(&what, &values(uncube::<2>(sum_out)), &want_sum, dtype, 0.0);
                check(&what, &values(uncube::<2>(out)), &want_normed, dtype, 2.0);
            }
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rope_matches_the_burn_ops() {
    let mut rng = Rng(0x5eed_0004);
    for dtype in dtypes() {
        for (batch, heads, seq, dim, rows, swapped) in [
            (1, 3, 1, 64, 1, false),
            (2, 3, 5, 128, 2, true),
            (2, 2, 17, 64, 1, true),
            (1, 4, 7, 8, 1, false),
            (2, 1, 3, 6, 2, false),
        ] {
            let what = format!("rope b{batch} h{heads} s{seq} d{dim} rows{rows} swapped {swapped}");
            let n = batch * heads * seq * dim;
            let x = if swapped {
                // As attention produces it: [batch, seq, heads, dim] with heads and seq swapped.
                tensor(&rng.vec(n, 2.0), [batch, seq, heads, dim], dtype).swap_dims(1, 2)
            } else {
                tensor(&rng.vec(n, 2.0), [batch, heads, seq, dim], dtype)
            };
            let table = [rows, 1, seq, dim];
            let cos = tensor(&rng.vec(rows * seq * dim, 1.0), table, dtype);
            let sin = tensor(&rng.vec(rows * seq * dim, 1.0), table, dtype);
            let want = values(rope_reference(x.clone(), &cos, &sin));
            let got = super::rope(x.clone(), &cos, &sin)
                .unwrap_or_else(|_| panic!("{what}: the kernel did not run"));
            assert_eq!(got.dims(), [batch, heads, seq, dim]);
            // Every rounding the burn ops make, the kernel makes: equal in half types.
            check(&what, &values(got), &want, dtype, 0.0);
            let out = poisoned([batch, heads, seq, dim], dtype);
            let run = super::rope::launch(cube(x), cube(cos), cube(sin), &out);
            assert!(run.is_some(), "{what}: did not launch");
            check(&what, &values(uncube::<4>(out)), &want, dtype, 0.0);
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rope_append_equals_rope_and_slice_assign() {
    let mut rng = Rng(0x5eed_0006);
    for dtype in dtypes() {
        for (batch, heads, kv_heads, seq, dim, cap, start, rows) in [
            (1, 4, 2, 1, 64, 16, 5, 1),
            (2, 6, 2, 3, 32, 8, 4, 2),
            (1, 3, 3, 7, 8, 20, 0, 1),
            (2, 2, 1, 1, 6, 4, 3, 1),
        ] {
            let what = format!(
                "rope_append b{batch} h{heads}/{kv_heads} s{seq} d{dim} cap{cap} start{start}"
            );
            // As the fused Q/K/V projection gives them: views of one `[batch, seq, width]`.
            let (nq, nkv) = (heads * dim, kv_heads * dim);
            let width = nq + 2 * nkv;
            let y = tensor(
                &rng.vec(batch * seq * width, 2.0),
                [batch, seq, width],
                dtype,
            );
            let split = |from: usize, h: usize| {
                y.clone()
                    .narrow(2, from, h * dim)
                    .reshape([batch, seq, h, dim])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (
                split(0, heads),
                split(nq, kv_heads),
                split(nq + nkv, kv_heads),
            );
            let table = [rows, 1, seq, dim];
            let cos = tensor(&rng.vec(rows * seq * dim, 1.0), table, dtype);
            let sin = tensor(&rng.vec(rows * seq * dim, 1.0), table, dtype);
            let cache_shape = [batch, kv_heads, cap, dim];
            let n = batch * kv_heads * cap * dim;
            let kc = tensor(&rng.vec(n, 1.0), cache_shape, dtype);
            let vc = tensor(&rng.vec(n, 1.0), cache_shape, dtype);
            let range = [0..batch, 0..kv_heads, start..start + seq, 0..dim];
            let want_q = values(rope_reference(q.clone(), &cos, &sin));
            let want_k = values(
                kc.clone()
                    .slice_assign(range.clone(), rope_reference(k.clone(), &cos, &sin)),
            );
            let want_v = values(vc.clone().slice_assign(range, v.clone()));
            // Fresh copies: the kernel writes the caches in place only when it holds them alone.
            let (kc, vc) = (kc.clone() + 0.0, vc.clone() + 0.0);
            let Ok((got_q, got_k, got_v)) = super::rope_append(q, k, v, &cos, &sin, kc, vc, start)
            else {
                panic!("{what}: the kernel did not run");
            };
            assert_eq!(got_q.dims(), [batch, heads, seq, dim]);
            check(&what, &values(got_q), &want_q, dtype, 0.0);
            check(&what, &values(got_k), &want_k, dtype, 0.0);
            check(&what, &values(got_v), &want_v, dtype, 0.0);
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rope_append_leaves_shared_caches_alone() {
    let mut rng = Rng(0x5eed_0007);
    let mut x = || tensor(&rng.vec(2 * 64, 1.0), [1, 2, 1, 64], DType::F32);
    let (q, k, v) = (x(), x(), x());
    let table = tensor(&[1.0; 64], [1, 1, 1, 64], DType::F32);
    let kc = tensor(&[0.0; 2 * 4 * 64], [1, 2, 4, 64], DType::F32);
    let held = kc.clone();
    let vc = kc.clone() + 0.0;
    let Err((_, _, _, kc, _)) = super::rope_append(q, k, v, &table, &table, kc, vc, 1) else {
        panic!("a cache whose handle is shared must not be written in place");
    };
    assert_eq!(values(kc), values(held));
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn rope_casts_tables_of_another_dtype() {
    let mut rng = Rng(0x5eed_0005);
    let x = tensor(&rng.vec(2 * 4 * 64, 2.0), [1, 2, 4, 64], DType::F16);
    let cos = tensor(&rng.vec(4 * 64, 1.0), [1, 1, 4, 64], DType::F32);
    let sin = tensor(&rng.vec(4 * 64, 1.0), [1, 1, 4, 64], DType::F32);
    let want = values(rope_reference(x.clone(), &cos, &sin));
    let got = super::rope(x, &cos, &sin).unwrap_or_else(|_| panic!("no kernel"));
    assert_eq!(got.dtype(), DType::F16);
    check("rope mixed", &values(got), &want, DType::F16, 0.0);
}

/// The value of `v` in `dtype`, rounded to nearest even.
fn round_to(v: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        _ => v as f32 as f64,
    }
}

/// `act(gate)` in f64 rounded once to `dtype`, times `up` rounded to `dtype` (torch's half
/// semantics; burn's half op chain rounds after every step and, in `1 + tanh`, cancels).
fn gated_reference(activation: Activation, gate: &[f32], up: &[f32], dtype: DType) -> Vec<f32> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = g as f64;
            let act = match activation {
                Activation::Silu => g / (1.0 + (-g).exp()),
                Activation::GeluTanh => 0.5 * g * (1.0 + (c * (g + 0.044715 * g * g * g)).tanh()),
            };
            round_to(round_to(act, dtype) * u as f64, dtype) as f32
        })
        .collect()
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn gated_activation_matches_an_f64_reference() {
    let mut rng = Rng(0x5eed_0006);
    for dtype in dtypes() {
        for activation in [Activation::Silu, Activation::GeluTanh] {
            for (rows, cols) in [(1, 64), (3, 576), (17, 1000), (2, 7), (1, 4104)] {
                let what = format!("{activation:?} {rows}x{cols}");
                let gate = tensor(&rng.vec(rows * cols, 6.0), [1, rows, cols], dtype);
                let up = tensor(&rng.vec(rows * cols, 2.0), [1, rows, cols], dtype);
                // The inputs as the device holds them.
                let want = gated_reference(
                    activation,
                    &values(gate.clone()),
                    &values(up.clone()),
                    dtype,
                );
                let got = super::gated(activation, gate.clone(), up.clone())
                    .unwrap_or_else(|_| panic!("{what}: the kernel did not run"));
                let got = values(got);
                // The activation's f32 value may round to the neighbour of the f64 one's
                // rounding, which the product can turn into two spacings.
                check(&what, &got, &want, dtype, 2.0);
                if dtype == DType::F32 {
                    let ops = values(activation.forward(gate.clone()) * up.clone());
                    check(&format!("{what} vs burn ops"), &got, &ops, dtype, 0.0);
                }
                let out = poisoned([1, rows, cols], dtype);
                let run = super::gated::launch(activation, cube(gate), cube(up), &out);
                assert!(run.is_some(), "{what}: did not launch");
                check(&what, &values(uncube::<3>(out)), &want, dtype, 2.0);
            }
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn gated_activation_reads_the_halves_of_one_projection() {
    // A fused gate/up projection: both are slices of one [rows, 2 * cols] tensor.
    let mut rng = Rng(0x5eed_0007);
    let (rows, cols) = (3, 64);
    let both = tensor(&rng.vec(rows * 2 * cols, 4.0), [rows, 2 * cols], DType::F32);
    let (gate, up) = (both.clone().narrow(1, 0, cols), both.narrow(1, cols, cols));
    assert!(!cube(up.clone()).is_contiguous(), "the slice was copied");
    for activation in [Activation::Silu, Activation::GeluTanh] {
        let want = values(activation.forward(gate.clone()) * up.clone());
        let got = super::gated(activation, gate.clone(), up.clone())
            .unwrap_or_else(|_| panic!("no kernel"));
        check("gated halves", &values(got), &want, DType::F32, 0.0);
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn gated_activation_is_finite_at_the_extremes() {
    let gate = [-1e4f32, -300.0, -90.0, -20.0, 0.0, 20.0, 90.0, 300.0];
    let up = [1.0f32; 8];
    for dtype in dtypes() {
        for activation in [Activation::Silu, Activation::GeluTanh] {
            let got = super::gated(
                activation,
                tensor(&gate, [8], dtype),
                tensor(&up, [8], dtype),
            )
            .unwrap_or_else(|_| panic!("no kernel"));
            let got = values(got);
            let want: Vec<f32> = gate.iter().map(|&g| g.max(0.0)).collect();
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                // Far from zero both activations are relu; 20 in f16 rounds on the way in.
                assert!(
                    (g - w).abs() <= 1e-3 * w.max(1.0) + 1e-6,
                    "{activation:?} {dtype:?} at {}: {g}",
                    gate[i]
                );
            }
        }
    }
}

/// The first index of the largest value and whether a NaN is present, on the host.
fn argmax_reference(row: &[f32]) -> (u32, bool) {
    let nan = row.iter().any(|v| v.is_nan());
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    (best as u32, nan)
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn argmax_rows_matches_a_host_argmax() {
    let mut rng = Rng(0x5eed_0008);
    for dtype in dtypes() {
        // Odd and vector-friendly widths, more elements than units and fewer.
        for (rows, cols) in [(1, 7), (3, 1003), (2, 4096), (4, 49_159), (1, 128_256)] {
            let mut v = rng.vec(rows * cols, 8.0);
            // Ties: the row's maximum again, later in the row (the first must win).
            for r in 0..rows {
                let row = &mut v[r * cols..(r + 1) * cols];
                let at = (r * 31 + 5) % cols;
                row[at] = 9.0;
                row[cols - 1] = 9.0;
            }
            let t = tensor(&v, [rows, 1, cols], dtype);
            let host = values(t.clone());
            let got = super::argmax_rows(&t).expect("no kernel").unwrap();
            let want: Vec<(u32, bool)> = host.chunks(cols).map(argmax_reference).collect();
            assert_eq!(got, want, "{dtype:?} {rows}x{cols}");
        }
    }
}

#[test]
#[cfg_attr(not(feature = "wgpu"), ignore = "needs a CUDA device")]
fn argmax_rows_flags_nan_and_reads_views() {
    let inf = f32::NEG_INFINITY;
    for dtype in dtypes() {
        // Row 0: a NaN; row 1: all -inf (argmax 0, as torch); row 2: a plain row.
        let mut v = vec![0.5f32; 3 * 300];
        v[17] = f32::NAN;
        v[300..600].fill(inf);
        v[600 + 250] = 2.0;
        let t = tensor(&v, [3, 300], dtype);
        let got = super::argmax_rows(&t).expect("no kernel").unwrap();
        assert_eq!(got, vec![(0, true), (0, false), (250, false)], "{dtype:?}");
        // A slice of each row (strided, offset): indices count from the slice's start.
        let view = t.narrow(1, 200, 100);
        let got = super::argmax_rows(&view).expect("no kernel").unwrap();
        assert_eq!(got, vec![(0, false), (0, false), (50, false)], "{dtype:?}");
    }
}
