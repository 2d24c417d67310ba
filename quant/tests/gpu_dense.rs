//! The dense GEMV (`gpu::DeviceDense`, `nn::dense_linear`) against an f64 host reference on
//! fresh random inputs (never zero), through the wgpu runtime (on a machine without a GPU:
//! Mesa's lavapipe) and, with the `cuda` feature, on the CUDA runtime too (the plane reduction
//! and bf16 only run there).
//!
//! Outputs are poisoned with NaN before each launch, and NaN never passes a comparison.
#![cfg(any(feature = "wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use burn::prelude::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use cubecl::prelude::*;
use cubecl::server::Handle;
use kiln_quant::codec::FloatDtype;
use kiln_quant::gpu::{self, DenseConfig, DeviceDense, MAX_GEMV_ROWS, MmaLaunch};
use kiln_quant::nn::dense_linear;

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
    /// Roughly normal, occasionally large, never within 1e-3 of zero.
    fn value(&mut self) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .sum();
        let s = if s.abs() < 1e-3 {
            1e-3f32.copysign(s)
        } else {
            s
        };
        if self.next().is_multiple_of(97) {
            s * 8.0
        } else {
            s
        }
    }
    fn vec(&mut self, n: usize, dtype: FloatDtype) -> Vec<f32> {
        (0..n).map(|_| dtype.round(self.value())).collect()
    }
}

/// The dtypes this device computes in.
fn dtypes<R: Runtime>(client: &ComputeClient<R>) -> Vec<FloatDtype> {
    [FloatDtype::F32, FloatDtype::F16, FloatDtype::BF16]
        .into_iter()
        .filter(|d| gpu::check_dtype(client, *d).is_ok())
        .collect()
}

/// `y = x W^T + bias` in f64, and the sum of the magnitudes of its terms per output.
fn reference(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    [m, n, k]: [usize; 3],
) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0f64; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let (mut s, mut a) = bias.map_or((0.0, 0.0), |b| (b[j] as f64, b[j].abs() as f64));
            for (xv, wv) in xr.iter().zip(wr) {
                let p = *xv as f64 * *wv as f64;
                s += p;
                a += p.abs();
            }
            y[i * n + j] = s;
            mag[i * n + j] = a;
        }
    }
    (y, mag)
}

/// One unit in the last place of `v` in `dtype`: bounds the final rounding.
fn ulp(v: f64, dtype: FloatDtype) -> f64 {
    let bits = match dtype {
        FloatDtype::F32 => 23,
        FloatDtype::F16 => 10,
        FloatDtype::BF16 => 7,
    };
    let e = v.abs().max(f32::MIN_POSITIVE as f64).log2().floor();
    (e - bits as f64).exp2()
}

/// Every output within the f32 accumulation error (relative to the magnitude of its terms) and
/// the one rounding to `dtype`.
fn check(got: &[f32], want: &[f64], mag: &[f64], dtype: FloatDtype, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, e), a)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = 1e-5 * a + ulp(*e, dtype);
        assert!(
            (*g as f64 - e).abs() <= tol,
            "{what}: y[{i}] = {g} vs {e} (tol {tol})"
        );
    }
}

/// `(m, n, k, bias)`: every `n` with every `k` (`k` = 4100 and 4101 leave a narrower vector,
/// 8 a row shorter than a plane's first step), then every `m` at one shape.
fn cases() -> Vec<(usize, usize, usize, bool)> {
    let ms = [1usize, 2, 3, 8, 16];
    let mut cases = Vec::new();
    for (i, n) in [1usize, 7, 300, 4096].into_iter().enumerate() {
        for (j, k) in [64usize, 4096, 4100, 8].into_iter().enumerate() {
            cases.push((ms[(i * 4 + j) % 5], n, k, (i + j) % 2 == 0));
        }
    }
    for (i, m) in ms.into_iter().enumerate() {
        cases.push((m, 300, 4100, i % 2 == 1));
    }
    cases.push((3, 37, 4101, true));
    cases
}

/// Launch parameters besides the default: split-K, several rows per plane, a capped grid,
/// 1 to 3 vectors in flight, the tensor-core kernel; the plane reduction where the device has
/// planes of 32.
fn configs<R: Runtime>(client: &ComputeClient<R>) -> Vec<DenseConfig> {
    let mut c = vec![
        DenseConfig {
            rows_per_plane: 2,
            planes: 2,
            use_plane: false,
            depth: 3,
            max_cubes: 0,
            split_k: 2,
            tensor_cores: None,
        },
        DenseConfig {
            rows_per_plane: 1,
            planes: 4,
            use_plane: false,
            depth: 1,
            max_cubes: 3,
            split_k: 4,
            tensor_cores: None,
        },
        DenseConfig {
            rows_per_plane: 3,
            planes: 1,
            use_plane: false,
            depth: 2,
            max_cubes: 0,
            split_k: 1,
            tensor_cores: None,
        },
    ];
    // The tensor-core kernel where it applies (CUDA, f16/bf16, `in` a multiple of 64): split-K
    // 2 and 4, one plane per cube, 1 to 4 blocks in flight; elsewhere the fields above.
    for (i, (planes, depth, split_k)) in [(2, 1, 2), (8, 3, 4), (1, 4, 1)].into_iter().enumerate() {
        let mut config = c[i];
        config.tensor_cores = Some(MmaLaunch {
            planes,
            depth,
            split_k,
        });
        c.push(config);
    }
    if gpu::planes_of_32(client) {
        c.push(DenseConfig {
            rows_per_plane: 4,
            planes: 8,
            use_plane: true,
            depth: 4,
            max_cubes: 5,
            split_k: 8,
            tensor_cores: None,
        });
    }
    c
}

/// A buffer of `bytes` bytes filled with NaN bit patterns (all ones).
fn poisoned<R: Runtime>(client: &ComputeClient<R>, bytes: usize) -> Handle {
    client.create_from_slice(&vec![0xFFu8; bytes.max(4)])
}

fn device_gemv_matches_f64<R: Runtime>(device: &R::Device) {
    let client = R::client(device);
    let mut rng = Rng::new("dense_gemv");
    let configs = configs(&client);
    for dtype in dtypes(&client) {
        for (ci, (m, n, k, with_bias)) in cases().into_iter().enumerate() {
            let w = rng.vec(n * k, dtype);
            let x = rng.vec(m * k, dtype);
            let b = rng.vec(n, dtype);
            let bias = with_bias.then_some(&b[..]);
            let (want, mag) = reference(&x, &w, bias, [m, n, k]);
            let layer = DeviceDense::upload(&client, &w, n, k, dtype).unwrap();
            let xh = gpu::upload_as(&client, &x, dtype);
            let bh = gpu::upload_as(&client, &b, dtype);
            let bh = with_bias.then_some(&bh);
            let default = DenseConfig::default_for(&client, m, n);
            for config in [default, configs[ci % configs.len()]] {
                let out = poisoned(&client, m * n * dtype.size());
                layer
                    .gemv_into(&client, &xh, m, bh, &out, config)
                    .unwrap_or_else(|e| panic!("{dtype} m {m} [{n}x{k}] {config:?}: {e}"));
                let got = gpu::read_back_f32(&client, out, m * n, dtype).unwrap();
                let what = format!("{dtype} m {m} [{n}x{k}] bias {with_bias} {config:?}");
                check(&got, &want, &mag, dtype, &what);
            }
        }
    }
}

/// A weight that starts past the buffer's start and has padded rows; the padding and the
/// prefix hold NaN, so that any read of them shows.
fn device_gemv_strided_rows<R: Runtime>(device: &R::Device) {
    let client = R::client(device);
    let mut rng = Rng::new("dense_gemv_strided");
    // Views start at multiples of the runtime's buffer alignment (wgpu rejects others).
    let align = client.properties().memory.alignment as usize;
    // (m, n, k, row stride, offset): 16-byte vectors with padded rows, 8-byte ones for f32 at
    // a stride of 4102, single elements at an odd stride.
    let cases = [
        (3usize, 37usize, 64usize, 72usize, true),
        (2, 5, 4100, 4102, true),
        (16, 9, 100, 101, false),
    ];
    for dtype in dtypes(&client) {
        for (m, n, k, ld, offset) in cases {
            let pre = if offset { align / dtype.size() } else { 0 };
            let w = rng.vec(n * k, dtype);
            let mut stored = vec![f32::NAN; pre + (n - 1) * ld + k];
            for (row, values) in w.chunks(k).enumerate() {
                stored[pre + row * ld..pre + row * ld + k].copy_from_slice(values);
            }
            let handle = gpu::upload_as(&client, &stored, dtype);
            let layer = DeviceDense {
                weight: handle.offset_start((pre * dtype.size()) as u64),
                rows: n,
                cols: k,
                row_stride: ld,
                dtype,
            };
            let x = rng.vec(m * k, dtype);
            let (want, mag) = reference(&x, &w, None, [m, n, k]);
            let xh = gpu::upload_as(&client, &x, dtype);
            for config in [DenseConfig::default_for(&client, m, n), configs(&client)[0]] {
                let out = poisoned(&client, m * n * dtype.size());
                layer
                    .gemv_into(&client, &xh, m, None, &out, config)
                    .unwrap();
                let got = gpu::read_back_f32(&client, out, m * n, dtype).unwrap();
                let what = format!("{dtype} m {m} [{n}x{k}] stride {ld} offset {pre} {config:?}");
                check(&got, &want, &mag, dtype, &what);
            }
        }
    }
}

fn device_gemv_rejects<R: Runtime>(device: &R::Device) {
    let client = R::client(device);
    let mut rng = Rng::new("dense_gemv_rejects");
    let (n, k) = (9usize, 64usize);
    let dtype = FloatDtype::F32;
    let layer = DeviceDense::upload(&client, &rng.vec(n * k, dtype), n, k, dtype).unwrap();
    let x = gpu::upload_as(&client, &rng.vec(17 * k, dtype), dtype);
    assert!(layer.gemv(&client, &x, 17, None).is_err(), "17 rows");
    assert!(layer.gemv(&client, &x, 0, None).is_err(), "0 rows");
    assert!(DeviceDense::upload(&client, &[1.0; 5], 2, 3, dtype).is_err());
    // A bias shorter than the output, an x shorter than m rows, a split that does not divide
    // the planes.
    let short = gpu::upload_as(&client, &[1.0; 3], dtype);
    assert!(layer.gemv(&client, &x, 1, Some(&short)).is_err());
    let x1 = gpu::upload_as(&client, &rng.vec(k, dtype), dtype);
    assert!(layer.gemv(&client, &x1, 2, None).is_err());
    // Rows closer together than their length.
    let mut overlapping = layer.clone();
    overlapping.row_stride = k - 1;
    assert!(overlapping.gemv(&client, &x1, 1, None).is_err());
    let mut config = DenseConfig::default_for(&client, 1, n);
    config.planes = 3;
    config.split_k = 2;
    let out = poisoned(&client, n * 4);
    assert!(
        layer
            .gemv_into(&client, &x1, 1, None, &out, config)
            .is_err()
    );
}

/// The burn dtypes this backend holds and the device computes in.
fn burn_dtypes<B: Backend>(device: &B::Device) -> Vec<(FloatDtype, FloatDType)> {
    [
        (FloatDtype::F32, FloatDType::F32),
        (FloatDtype::F16, FloatDType::F16),
        (FloatDtype::BF16, FloatDType::BF16),
    ]
    .into_iter()
    .filter(|(_, b)| B::supports_dtype(device, DType::from(*b)))
    .collect()
}

fn tensor<B: Backend, const D: usize>(
    values: &[f32],
    shape: [usize; D],
    dtype: FloatDType,
    device: &B::Device,
) -> Tensor<B, D> {
    let t = Tensor::<B, D>::from_data(TensorData::new(values.to_vec(), shape), device);
    if t.dtype() == DType::from(dtype) {
        t
    } else {
        t.cast(dtype)
    }
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// How a test weight is cut from the tensor it is made in.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Whole,
    Rows,
    Columns,
}

fn dense_linear_matches_f64<B: Backend>(device: &B::Device) {
    let mut rng = Rng::new("dense_linear");
    for (dtype, bdtype) in burn_dtypes::<B>(device) {
        // (leading dims of x, n, k, bias, how the weight is cut from a larger tensor)
        let cases: [([usize; 2], usize, usize, bool, Cut); 5] = [
            ([1, 1], 300, 4096, true, Cut::Whole),
            ([2, 4], 7, 4100, false, Cut::Rows),
            ([4, 4], 4096, 64, true, Cut::Rows),
            ([3, 1], 37, 4101, false, Cut::Rows),
            ([1, 2], 33, 200, true, Cut::Columns),
        ];
        for ([b0, b1], n, k, with_bias, cut) in cases {
            let m = b0 * b1;
            // Rows 1.. of a larger tensor: row-major at an offset of one row (or copied, where
            // the backend does not keep a view at that offset); the first `k` columns of a
            // wider one: rows further apart than their length (or copied).
            let [rows, cols] = match cut {
                Cut::Whole => [n, k],
                Cut::Rows => [n + 1, k],
                Cut::Columns => [n, k + 128],
            };
            let wfull = tensor::<B, 2>(&rng.vec(rows * cols, dtype), [rows, cols], bdtype, device);
            let weight = match cut {
                Cut::Whole => wfull,
                Cut::Rows => wfull.slice([1..rows, 0..k]),
                Cut::Columns => wfull.slice([0..n, 0..k]),
            };
            let x = tensor::<B, 3>(&rng.vec(m * k, dtype), [b0, b1, k], bdtype, device);
            let bias = tensor::<B, 1>(&rng.vec(n, dtype), [n], bdtype, device);
            let (xh, wh, bh) = (
                values(x.clone()),
                values(weight.clone()),
                values(bias.clone()),
            );
            let (want, mag) = reference(&xh, &wh, with_bias.then_some(&bh[..]), [m, n, k]);
            let what =
                format!("{dtype} x [{b0}, {b1}, {k}] weight [{n}, {k}] {cut:?} bias {with_bias}");
            let y = dense_linear(x, &weight, with_bias.then_some(&bias))
                .unwrap_or_else(|_| panic!("{what}: handed back"));
            assert_eq!(y.dims(), [b0, b1, n], "{what}");
            assert_eq!(y.dtype(), DType::from(bdtype), "{what}");
            check(&values(y), &want, &mag, dtype, &what);
        }
    }
}

/// More than [`MAX_GEMV_ROWS`] rows (prefill): on CUDA cuBLAS takes them (`taken`), on wgpu
/// they are handed back for the caller's matmul.
fn dense_linear_many_rows<B: Backend>(device: &B::Device, taken: bool) {
    let mut rng = Rng::new("dense_linear_many_rows");
    for (dtype, bdtype) in burn_dtypes::<B>(device) {
        let cases: [([usize; 2], usize, usize, bool, Cut); 4] = [
            ([1, 17], 300, 4096, true, Cut::Whole),
            ([2, 40], 7, 4100, false, Cut::Rows),
            ([1, 512], 1024, 64, true, Cut::Rows),
            ([3, 33], 96, 200, true, Cut::Columns),
        ];
        for ([b0, b1], n, k, with_bias, cut) in cases {
            let m = b0 * b1;
            let [rows, cols] = match cut {
                Cut::Whole => [n, k],
                Cut::Rows => [n + 1, k],
                Cut::Columns => [n, k + 128],
            };
            let wfull = tensor::<B, 2>(&rng.vec(rows * cols, dtype), [rows, cols], bdtype, device);
            let weight = match cut {
                Cut::Whole => wfull,
                Cut::Rows => wfull.slice([1..rows, 0..k]),
                Cut::Columns => wfull.slice([0..n, 0..k]),
            };
            let x = tensor::<B, 3>(&rng.vec(m * k, dtype), [b0, b1, k], bdtype, device);
            let bias = tensor::<B, 1>(&rng.vec(n, dtype), [n], bdtype, device);
            let what =
                format!("{dtype} x [{b0}, {b1}, {k}] weight [{n}, {k}] {cut:?} bias {with_bias}");
            let before = values(x.clone());
            let y = match dense_linear(x, &weight, with_bias.then_some(&bias)) {
                Ok(y) => y,
                Err(back) => {
                    assert!(!taken, "{what}: handed back");
                    assert_eq!(values(back), before, "{what}: handed back changed");
                    continue;
                }
            };
            assert!(taken, "{what}: taken where no kernel should apply");
            let (wh, bh) = (values(weight.clone()), values(bias.clone()));
            let (want, mag) = reference(&before, &wh, with_bias.then_some(&bh[..]), [m, n, k]);
            assert_eq!(y.dims(), [b0, b1, n], "{what}");
            assert_eq!(y.dtype(), DType::from(bdtype), "{what}");
            check(&values(y), &want, &mag, dtype, &what);
        }
    }
}

fn dense_linear_hands_back<B: Backend>(device: &B::Device) {
    let mut rng = Rng::new("dense_linear_hands_back");
    let (n, k) = (5usize, 32usize);
    let f32_ = FloatDtype::F32;
    let weight = tensor::<B, 2>(&rng.vec(n * k, f32_), [n, k], FloatDType::F32, device);
    let handed_back = |x: Tensor<B, 2>, w: &Tensor<B, 2>, b: Option<&Tensor<B, 1>>, what: &str| {
        let before = values(x.clone());
        let dims = x.dims();
        let back = dense_linear(x, w, b)
            .err()
            .unwrap_or_else(|| panic!("{what}: took the kernel"));
        assert_eq!(back.dims(), dims, "{what}");
        assert_eq!(values(back), before, "{what}");
    };
    let x1 = tensor::<B, 2>(&rng.vec(k, f32_), [1, k], FloatDType::F32, device);
    // A weight `[in, out]` seen through a transpose is not row-major `[out, in]`.
    let wt = tensor::<B, 2>(&rng.vec(n * k, f32_), [k, n], FloatDType::F32, device).transpose();
    handed_back(x1.clone(), &wt, None, "transposed weight");
    let wide = tensor::<B, 2>(
        &rng.vec(n * 2 * k, f32_),
        [n, 2 * k],
        FloatDType::F32,
        device,
    );
    handed_back(x1.clone(), &wide, None, "in features differ");
    let b4 = tensor::<B, 1>(&rng.vec(4, f32_), [4], FloatDType::F32, device);
    handed_back(x1.clone(), &weight, Some(&b4), "bias of the wrong length");
    if B::supports_dtype(device, DType::F16) {
        let w16 = weight.clone().cast(FloatDType::F16);
        handed_back(x1.clone(), &w16, None, "f16 weight, f32 x");
        let b16 = tensor::<B, 1>(&rng.vec(n, f32_), [n], FloatDType::F16, device);
        handed_back(
            x1.clone(),
            &weight,
            Some(&b16),
            "f16 bias, f32 x and weight",
        );
    }
    // And the kernel does take the well-formed call.
    assert!(dense_linear(x1, &weight, None).is_ok());
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::Wgpu;
    use cubecl::wgpu::{WgpuDevice, WgpuRuntime};

    #[test]
    fn device_gemv_matches_f64() {
        super::device_gemv_matches_f64::<WgpuRuntime>(&WgpuDevice::default());
    }

    #[test]
    fn device_gemv_strided_rows() {
        super::device_gemv_strided_rows::<WgpuRuntime>(&WgpuDevice::default());
    }

    #[test]
    fn device_gemv_rejects() {
        super::device_gemv_rejects::<WgpuRuntime>(&WgpuDevice::default());
    }

    #[test]
    fn dense_linear_matches_f64() {
        super::dense_linear_matches_f64::<Wgpu>(&WgpuDevice::default());
    }

    #[test]
    fn dense_linear_hands_back() {
        super::dense_linear_hands_back::<Wgpu>(&WgpuDevice::default());
    }

    #[test]
    fn dense_linear_many_rows() {
        super::dense_linear_many_rows::<Wgpu>(&WgpuDevice::default(), false);
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use burn::backend::Cuda;
    use cubecl::cuda::{CudaDevice, CudaRuntime};

    #[test]
    fn device_gemv_matches_f64() {
        super::device_gemv_matches_f64::<CudaRuntime>(&CudaDevice::new(0));
    }

    #[test]
    fn device_gemv_strided_rows() {
        super::device_gemv_strided_rows::<CudaRuntime>(&CudaDevice::new(0));
    }

    #[test]
    fn device_gemv_rejects() {
        super::device_gemv_rejects::<CudaRuntime>(&CudaDevice::new(0));
    }

    #[test]
    fn dense_linear_matches_f64() {
        super::dense_linear_matches_f64::<Cuda>(&CudaDevice::new(0));
    }

    #[test]
    fn dense_linear_hands_back() {
        super::dense_linear_hands_back::<Cuda>(&CudaDevice::new(0));
    }

    /// Needs cuBLAS on the library path (a CUDA toolkit or the `nvidia-cublas` wheel): the
    /// test fails rather than pass without it.
    #[test]
    fn dense_linear_many_rows() {
        assert!(
            kiln_quant::gpu::cuda::cublas_available(0),
            "cuBLAS not found (put libcublas on LD_LIBRARY_PATH)"
        );
        super::dense_linear_many_rows::<Cuda>(&CudaDevice::new(0), true);
    }
}
