//! The CubeCL kernels against the CPU codecs, on fresh random inputs, through the wgpu runtime
//! (on a machine without a GPU: Mesa's lavapipe Vulkan driver).
//!
//! Outputs are poisoned with NaN before each launch, and NaN never passes a comparison.
#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used)]

use cubecl::prelude::*;
use cubecl::server::Handle;
use cubecl::wgpu::{WgpuDevice, WgpuRuntime};
use kiln_quant::codec::FloatDtype;
use kiln_quant::codec::{FourBitType, Quantized4bit};
use kiln_quant::gpu::{self, DeviceQuant4, GemvConfig, LutMode};
use kiln_quant::half::{bf16, f16};

type R = WgpuRuntime;

fn client() -> ComputeClient<R> {
    R::client(&WgpuDevice::default())
}

/// A small xorshift generator; the seed is printed so that a failure can be replayed with
/// `KILN_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Self {
        let seed = std::env::var("KILN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{test}: KILN_TEST_SEED={seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal, with occasional large values.
    fn weight(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        if self.next().is_multiple_of(97) {
            s * 8.0
        } else {
            s
        }
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.weight()).collect()
    }
}

/// A buffer of `bytes` bytes filled with NaN bit patterns (all ones).
fn poisoned(client: &ComputeClient<R>, bytes: usize) -> Handle {
    client.create_from_slice(&vec![0xFFu8; bytes.max(4)])
}

fn dtypes(client: &ComputeClient<R>) -> Vec<FloatDtype> {
    let mut d = vec![FloatDtype::F32];
    if gpu::check_dtype(client, FloatDtype::F16).is_ok() {
        d.push(FloatDtype::F16);
    }
    if gpu::check_dtype(client, FloatDtype::BF16).is_ok() {
        d.push(FloatDtype::BF16);
    }
    d
}

fn cpu_dequantize(q: &Quantized4bit, dtype: FloatDtype) -> Vec<f32> {
    match dtype {
        FloatDtype::F32 => q.dequantize::<f32>(),
        FloatDtype::F16 => q.dequantize::<f16>().iter().map(|v| v.to_f32()).collect(),
        FloatDtype::BF16 => q.dequantize::<bf16>().iter().map(|v| v.to_f32()).collect(),
    }
}

/// One unit in the last place of `v` in `dtype`.
fn ulp(v: f32, dtype: FloatDtype) -> f32 {
    let bits = match dtype {
        FloatDtype::F32 => 23,
        FloatDtype::F16 => 10,
        FloatDtype::BF16 => 7,
    };
    let e = v.abs().max(f32::MIN_POSITIVE).log2().floor();
    (e - bits as f32).exp2()
}

#[test]
fn dequantize_matches_cpu_codec() {
    let client = client();
    let mut rng = Rng::new("dequantize");
    // Element counts that are not multiples of the vector or block sizes, odd ones included.
    let cases: [(&[usize], usize); 5] = [
        (&[37, 100], 64),
        (&[3, 1001], 32),
        (&[129, 64], 128),
        (&[5000], 4096),
        (&[7, 7], 256),
    ];
    for (shape, bs) in cases {
        let n: usize = shape.iter().product();
        let w = rng.vec(n);
        for qt in [FourBitType::Nf4, FourBitType::Fp4] {
            for dq in [false, true] {
                let q = Quantized4bit::quantize(&w, shape, qt, bs, dq).unwrap();
                let dev = DeviceQuant4::upload(&client, &q);
                for dtype in dtypes(&client) {
                    let out = poisoned(&client, n * dtype.size());
                    dev.dequantize_into(&client, &out, dtype).unwrap();
                    let got = gpu::read_back_f32(&client, out, n, dtype).unwrap();
                    let want = cpu_dequantize(&q, dtype);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        // Plain absmax: bit-exact. Nested: the device may fuse the absmax's
                        // multiply-add, one f32 rounding apart.
                        let tol = if dq {
                            ulp(*e, dtype).max(ulp(*e, FloatDtype::F32) * 4.0)
                        } else {
                            0.0
                        };
                        assert!(
                            (g - e).abs() <= tol,
                            "{qt} bs {bs} dq {dq} {dtype} shape {shape:?}: element {i}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}

/// `y = x W^T` in f64 from the CPU-dequantized weight, and the sum of |x w| per output.
fn reference_gemv(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0f64; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for l in 0..k {
                let p = x[i * k + l] as f64 * w[j * k + l] as f64;
                s += p;
                a += p.abs();
            }
            y[i * n + j] = s;
            mag[i * n + j] = a;
        }
    }
    (y, mag)
}

fn round_to(v: f32, dtype: FloatDtype) -> f32 {
    dtype.round(v)
}

/// Launch parameters covering both table modes, 1 to 3 chunks in flight and a capped grid;
/// shared memory on lavapipe is 32 KiB, so the shared-memory reduction stays small.
fn gemv_configs() -> [GemvConfig; 3] {
    [
        GemvConfig {
            rows_per_plane: 2,
            planes: 2,
            lut: LutMode::Pairs(1),
            use_plane: false,
            depth: 2,
            max_cubes: 0,
            split_k: 2,
        },
        GemvConfig {
            rows_per_plane: 1,
            planes: 4,
            lut: LutMode::Single,
            use_plane: false,
            depth: 1,
            max_cubes: 3,
            split_k: 4,
        },
        GemvConfig {
            rows_per_plane: 3,
            planes: 1,
            lut: LutMode::Pairs(8),
            use_plane: false,
            depth: 3,
            max_cubes: 0,
            split_k: 1,
        },
    ]
}

#[test]
fn fused_gemv_matches_dequantized_matmul() {
    let client = client();
    let mut rng = Rng::new("gemv");
    let configs = gemv_configs();
    let (f32_, f16_) = (FloatDtype::F32, FloatDtype::F16);
    let half = if dtypes(&client).contains(&f16_) {
        f16_
    } else {
        f32_
    };
    // (out, in, blocksize, type, double quant, dtype, rows of x, config, bias): odd row counts,
    // rows that are not multiples of the row groups, rows shorter than a plane's first step.
    let cases = [
        (
            37usize,
            192usize,
            64usize,
            FourBitType::Nf4,
            false,
            f32_,
            1usize,
            0usize,
            true,
        ),
        (37, 192, 64, FourBitType::Fp4, true, half, 3, 1, false),
        (70, 320, 32, FourBitType::Nf4, true, f32_, 16, 1, true),
        (9, 4096, 4096, FourBitType::Fp4, false, half, 1, 2, true),
        (131, 256, 128, FourBitType::Nf4, false, half, 3, 0, false),
        (131, 2048, 128, FourBitType::Fp4, true, f32_, 2, 2, false),
    ];
    for (n, k, bs, qt, dq, dtype, m, ci, with_bias) in cases {
        let config = configs[ci];
        let w = rng.vec(n * k);
        let q = Quantized4bit::quantize(&w, &[n, k], qt, bs, dq).unwrap();
        let wf = q.dequantize::<f32>();
        let dev = DeviceQuant4::upload(&client, &q);
        let x: Vec<f32> = rng.vec(m * k).iter().map(|v| round_to(*v, dtype)).collect();
        let bias: Vec<f32> = rng.vec(n).iter().map(|v| round_to(*v, dtype)).collect();
        let xh = gpu::upload_as(&client, &x, dtype);
        let bh = gpu::upload_as(&client, &bias, dtype);
        let (want, mag) = reference_gemv(&x, &wf, m, n, k);
        let out = poisoned(&client, m * n * dtype.size());
        dev.gemv_into(
            &client,
            &xh,
            m,
            dtype,
            with_bias.then_some(&bh),
            &out,
            config,
        )
        .unwrap();
        let got = gpu::read_back_f32(&client, out, m * n, dtype).unwrap();
        for i in 0..m * n {
            let e = want[i] + if with_bias { bias[i % n] as f64 } else { 0.0 };
            let tol = 1e-5 * (mag[i] + bias[i % n].abs() as f64) + ulp(e as f32, dtype) as f64;
            assert!(
                (got[i] as f64 - e).abs() <= tol,
                "{qt} dq {dq} {dtype} [{n}x{k}] bs {bs} m {m} {config:?}: y[{i}] = {} vs {e} (tol {tol})",
                got[i]
            );
        }
    }
}

#[test]
fn gemv_default_config_and_rejections() {
    let client = client();
    let mut rng = Rng::new("gemv_default");
    let (n, k) = (45usize, 128usize);
    let q = Quantized4bit::quantize(&rng.vec(n * k), &[n, k], FourBitType::Nf4, 64, false).unwrap();
    let dev = DeviceQuant4::upload(&client, &q);
    let x = rng.vec(k);
    let xh = gpu::upload_as(&client, &x, FloatDtype::F32);
    let y = dev.gemv(&client, &xh, 1, FloatDtype::F32, None).unwrap();
    let got = gpu::read_back_f32(&client, y, n, FloatDtype::F32).unwrap();
    let (want, mag) = reference_gemv(&x, &q.dequantize::<f32>(), 1, n, k);
    for i in 0..n {
        assert!((got[i] as f64 - want[i]).abs() <= 1e-5 * mag[i], "y[{i}]");
    }
    // 17 rows, rows that straddle blocks, plane reductions on a device without planes.
    assert!(dev.gemv(&client, &xh, 17, FloatDtype::F32, None).is_err());
    let odd =
        Quantized4bit::quantize(&rng.vec(5 * 100), &[5, 100], FourBitType::Nf4, 64, false).unwrap();
    assert!(!DeviceQuant4::upload(&client, &odd).gemv_supported());
    let mut planes = gemv_configs()[0];
    planes.use_plane = true;
    let out = poisoned(&client, n * 4);
    assert!(
        dev.gemv_into(&client, &xh, 1, FloatDtype::F32, None, &out, planes)
            .is_err()
    );
}

fn upload_dtype(
    client: &ComputeClient<R>,
    values: &[f32],
    dtype: FloatDtype,
) -> (Handle, Vec<f32>) {
    let rounded: Vec<f32> = values.iter().map(|v| dtype.round(*v)).collect();
    (gpu::upload_as(client, &rounded, dtype), rounded)
}

fn cpu_quantize(
    values: &[f32],
    shape: &[usize],
    dtype: FloatDtype,
    qt: FourBitType,
    bs: usize,
    dq: bool,
) -> Quantized4bit {
    match dtype {
        FloatDtype::F32 => Quantized4bit::quantize(values, shape, qt, bs, dq),
        FloatDtype::F16 => {
            let v: Vec<f16> = values.iter().map(|x| f16::from_f32(*x)).collect();
            Quantized4bit::quantize(&v, shape, qt, bs, dq)
        }
        FloatDtype::BF16 => {
            let v: Vec<bf16> = values.iter().map(|x| bf16::from_f32(*x)).collect();
            Quantized4bit::quantize(&v, shape, qt, bs, dq)
        }
    }
    .unwrap()
}

#[test]
fn quantize_is_bit_identical_to_cpu_codec() {
    let client = client();
    let mut rng = Rng::new("quantize");
    let cases: [(&[usize], usize); 5] = [
        (&[37, 100], 64),
        (&[3, 1001], 32),
        (&[129, 64], 128),
        (&[5001], 4096),
        (&[9, 9], 256),
    ];
    for (shape, bs) in cases {
        let n: usize = shape.iter().product();
        for qt in [FourBitType::Nf4, FourBitType::Fp4] {
            let mut w = rng.vec(n);
            // A block whose absmax is 1 with values exactly on the midpoints between codes (ties
            // go to the lower code), an all-zero block, and signed zeros.
            let (bounds, _, _) = (qt.code(), 0, 0);
            let mut sorted: Vec<f32> = bounds.to_vec();
            sorted.sort_by(f32::total_cmp);
            if n >= 2 * bs {
                w[0] = 1.0;
                for i in 1..bs.min(16) {
                    w[i] = (sorted[i - 1] + sorted[i]) / 2.0;
                }
                for v in &mut w[bs..2 * bs] {
                    *v = 0.0;
                }
                w[bs + 1] = -0.0;
            }
            for dtype in dtypes(&client) {
                for dq in [false, true] {
                    let (h, rounded) = upload_dtype(&client, &w, dtype);
                    let got = gpu::quantize_4bit(&client, &h, dtype, shape, qt, bs, dq).unwrap();
                    let want = cpu_quantize(&rounded, shape, dtype, qt, bs, dq);
                    if let Some(i) = got
                        .packed()
                        .iter()
                        .zip(want.packed())
                        .position(|(a, b)| a != b)
                    {
                        panic!(
                            "{qt} bs {bs} {dtype} dq {dq} shape {shape:?}: packed byte {i}: {:#04x} vs {:#04x} (values {:?})",
                            got.packed()[i],
                            want.packed()[i],
                            &rounded[2 * i..(2 * i + 2).min(n)]
                        );
                    }
                    assert_eq!(got.packed().len(), want.packed().len());
                    let (ga, wa) = (got.absmax().to_f32(), want.absmax().to_f32());
                    assert!(
                        ga.iter()
                            .zip(wa.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{qt} bs {bs} {dtype} dq {dq}: absmax differs"
                    );
                    assert_eq!(got, want, "{qt} bs {bs} {dtype} dq {dq} shape {shape:?}");
                }
            }
        }
    }
}

#[test]
fn quantize_rejects_non_finite_input() {
    let client = client();
    let mut rng = Rng::new("quantize_nan");
    let mut w = rng.vec(300);
    w[201] = f32::NAN;
    let h = gpu::upload_as(&client, &w, FloatDtype::F32);
    let err = gpu::quantize_4bit(
        &client,
        &h,
        FloatDtype::F32,
        &[300],
        FourBitType::Nf4,
        64,
        false,
    )
    .expect_err("NaN must be rejected");
    assert!(
        matches!(err, kiln_quant::QuantError::NonFinite { index: 201, .. }),
        "{err}"
    );
    w[201] = f32::INFINITY;
    let h = gpu::upload_as(&client, &w, FloatDtype::F32);
    let err = gpu::quantize_4bit(
        &client,
        &h,
        FloatDtype::F32,
        &[300],
        FourBitType::Fp4,
        32,
        true,
    )
    .expect_err("inf must be rejected");
    assert!(
        matches!(err, kiln_quant::QuantError::NonFinite { index: 201, .. }),
        "{err}"
    );
}

fn cpu_int8_linear(
    x: &[f32],
    m: usize,
    w: &kiln_quant::codec::Int8Rowwise,
    bias: Option<&[f32]>,
    threshold: f64,
    dtype: FloatDtype,
) -> Vec<f32> {
    use kiln_quant::codec::int8_linear;
    fn conv<T: kiln_quant::codec::Element>(v: &[f32]) -> Vec<T> {
        v.iter().map(|x| T::from_f32(*x)).collect()
    }
    match dtype {
        FloatDtype::F32 => int8_linear(x, m, w, bias, threshold).unwrap(),
        FloatDtype::F16 => {
            let b = bias.map(conv::<f16>);
            int8_linear(&conv::<f16>(x), m, w, b.as_deref(), threshold)
                .unwrap()
                .iter()
                .map(|v| v.to_f32())
                .collect()
        }
        FloatDtype::BF16 => {
            let b = bias.map(conv::<bf16>);
            int8_linear(&conv::<bf16>(x), m, w, b.as_deref(), threshold)
                .unwrap()
                .iter()
                .map(|v| v.to_f32())
                .collect()
        }
    }
}

#[test]
fn int8_linear_matches_cpu_codec() {
    use kiln_quant::codec::Int8Rowwise;
    use kiln_quant::gpu::{DeviceInt8, Int8Config};
    let client = client();
    let mut rng = Rng::new("int8");
    let configs = [
        Int8Config {
            rows_per_plane: 2,
            planes: 2,
            use_plane: false,
            depth: 2,
            max_cubes: 0,
            split_k: 2,
        },
        Int8Config {
            rows_per_plane: 1,
            planes: 3,
            use_plane: false,
            depth: 1,
            max_cubes: 5,
            split_k: 1,
        },
    ];
    let (f32_, f16_) = (FloatDtype::F32, FloatDtype::F16);
    let half = if dtypes(&client).contains(&f16_) {
        f16_
    } else {
        f32_
    };
    // (out, in, dtype, rows of x, threshold, config, bias): `in` not a multiple of 16.
    let cases = [
        (37usize, 100usize, f32_, 1usize, 6.0, 0usize, true),
        (70, 333, half, 5, 6.0, 1, false),
        (5, 1024, f32_, 16, 0.0, 1, true),
        (70, 333, f32_, 3, 6.0, 0, false),
        (37, 100, half, 1, 0.0, 0, true),
    ];
    for (n, k, dtype, m, threshold, ci, with_bias) in cases {
        let config = configs[ci];
        let w = Int8Rowwise::quantize_weight(&rng.vec(n * k), n, k).unwrap();
        let dev = DeviceInt8::upload(&client, &w);
        let mut x: Vec<f32> = rng.vec(m * k).iter().map(|v| dtype.round(*v)).collect();
        // A few outlier columns, in one row only, and a value right at the threshold.
        let cols = [3usize, k / 2, k - 1];
        for c in cols {
            x[(c % m) * k + c] = if c == 3 { 6.0 } else { -9.5 };
        }
        let bias: Vec<f32> = rng.vec(n).iter().map(|v| dtype.round(*v)).collect();
        let want = cpu_int8_linear(&x, m, &w, with_bias.then_some(&bias[..]), threshold, dtype);
        let xh = gpu::upload_as(&client, &x, dtype);
        let bh = gpu::upload_as(&client, &bias, dtype);
        let out = poisoned(&client, m * n * dtype.size());
        dev.linear_into(
            &client,
            &xh,
            m,
            dtype,
            with_bias.then_some(&bh),
            threshold,
            &out,
            config,
        )
        .unwrap();
        let got = gpu::read_back_f32(&client, out, m * n, dtype).unwrap();
        // The int8 part is exact; the outlier sum runs in another order.
        for i in 0..m * n {
            let e = want[i];
            let outliers: f32 = cols.iter().map(|&c| x[(i / n) * k + c].abs()).sum();
            let tol = 2.0 * ulp(e, dtype) + 1e-5 * (outliers + e.abs() + 1.0);
            assert!(
                (got[i] - e).abs() <= tol,
                "{dtype} [{n}x{k}] m {m} threshold {threshold} {config:?}: y[{i}] = {} vs {e}",
                got[i]
            );
        }
    }
}
