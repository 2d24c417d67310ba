//! Checks every device kernel on CUDA against the CPU codecs, then times them at the
//! Llama-3.1-8B Linear shapes and writes JSON.
//!
//! `cargo build --release -p kiln-quant --example gpu_bench --features cuda`, then
//! `gpu_bench [OUT.json] [--quick] [--sweep]` on the GPU machine. `--quick` runs the checks and
//! one timing per table (a smoke test); `--sweep` also checks and times every GEMV launch
//! variant (slow: each one is compiled). `--variants` skips the checks and times only the default
//! GEMV and its launch variants at two shapes; `--dense [--sweep]` checks and times only the
//! dense GEMV (and its launch variants); `--ncu` launches each kernel of interest twice at a
//! large shape and exits (for a profiler's kernel filter). `benches/gpu/` holds the torch /
//! bitsandbytes counterpart and the script that merges both into a table.

use std::time::Instant;

use cubecl::prelude::*;
use cubecl::server::Handle;
use kiln_quant::codec::{FloatDtype, FourBitType, Int8Rowwise, Quantized4bit, int8_linear};
use kiln_quant::gpu::{
    self, DenseConfig, DeviceDense, DeviceInt8, DeviceQuant4, GemvConfig, Int8Config, LutMode,
    quantize_4bit_device,
};
use kiln_quant::half::{bf16, f16};
use serde_json::{Value, json};

/// Llama-3.1-8B Linear shapes, `[out, in]`.
const SHAPES: [(usize, usize); 4] = [(4096, 4096), (14336, 4096), (4096, 14336), (128256, 4096)];
const ROWS: [usize; 3] = [1, 4, 16];
/// Shapes for a smoke test of this harness on a small device.
const SMALL_SHAPES: [(usize, usize); 2] = [(256, 256), (1000, 512)];

static SMALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--small`: tiny shapes, for trying the harness on a device without a GPU.
fn small() -> bool {
    SMALL.load(std::sync::atomic::Ordering::Relaxed)
}

fn shapes() -> &'static [(usize, usize)] {
    if small() { &SMALL_SHAPES } else { &SHAPES }
}

/// Whether an error only says that this device cannot run a launch configuration.
fn unsupported(e: &kiln_quant::QuantError) -> bool {
    let s = e.to_string();
    s.contains("shared memory") || s.contains("plane reduction")
}
/// Weights smaller than this are rotated through several copies so that no call finds its
/// weight in the 50 MB L2.
const ROTATE_BYTES: usize = 160 << 20;

// ---------------------------------------------------------------------------------------------
// Helper kernels: copy bandwidth and pseudo-random fills.

#[cube(launch_unchecked)]
fn copy_kernel(
    input: &Array<Vector<u32, Const<4>>>,
    out: &mut Array<Vector<u32, Const<4>>>,
    n: u32,
) {
    let i = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if i < n as usize {
        out[i] = input[i];
    }
}

#[cube]
fn hash(i: u32, seed: u32) -> u32 {
    let mut h = i * 0x9E37_79B9u32 + seed;
    h ^= h >> 16;
    h *= 0x7FEB_352Du32;
    h ^= h >> 15;
    h *= 0x846C_A68Bu32;
    h ^= h >> 16;
    h
}

/// Roughly normal values (a sum of four uniforms, variance 1) in `F`.
#[cube(launch_unchecked)]
fn fill_normal_kernel<F: Float>(out: &mut Array<F>, n: u32, seed: u32) {
    let i = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if i < n as usize {
        let mut s = 0.0f32;
        #[unroll]
        for j in 0..4u32 {
            let h = hash(i as u32 * 4 + j, seed);
            s += f32::cast_from(h >> 8) * (1.0f32 / 16777216.0f32) - 0.5f32;
        }
        out[i] = F::cast_from(s * 1.7320508f32);
    }
}

#[cube(launch_unchecked)]
fn fill_words_kernel(out: &mut Array<u32>, n: u32, seed: u32) {
    let i = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if i < n as usize {
        // Bytes in -127..=127, as int8 weights hold.
        let h = hash(i as u32, seed);
        let mut w = 0u32;
        #[unroll]
        for b in 0..4u32 {
            let raw = (h >> (8 * b)) & 0xFF;
            let byte = select(raw == 0x80, 0x81u32, raw);
            w |= byte << (8 * b);
        }
        out[i] = w;
    }
}

fn launch_1d<R: Runtime>(client: &ComputeClient<R>, n: usize) -> (CubeCount, CubeDim) {
    let threads = 256usize;
    let cubes = n.div_ceil(threads);
    let max = 65535usize;
    let count = if cubes <= max {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        let y = cubes.div_ceil(max);
        CubeCount::Static(cubes.div_ceil(y) as u32, y as u32, 1)
    };
    let _ = client;
    (count, CubeDim::new_1d(threads as u32))
}

fn fill_normal<R: Runtime>(
    client: &ComputeClient<R>,
    n: usize,
    dtype: FloatDtype,
    seed: u32,
) -> Handle {
    let out = client.empty((n * dtype.size()).max(16));
    let (count, dim) = launch_1d(client, n);
    macro_rules! go {
        ($F:ty) => {
            unsafe {
                fill_normal_kernel::launch_unchecked::<$F, R>(
                    client,
                    count,
                    dim,
                    ArrayArg::from_raw_parts(out.clone(), n),
                    n as u32,
                    seed,
                )
            }
        };
    }
    match dtype {
        FloatDtype::F32 => go!(f32),
        FloatDtype::F16 => go!(f16),
        FloatDtype::BF16 => go!(bf16),
    }
    out
}

fn fill_words<R: Runtime>(client: &ComputeClient<R>, words: usize, seed: u32) -> Handle {
    let out = client.empty(words.max(4) * 4);
    let (count, dim) = launch_1d(client, words);
    unsafe {
        fill_words_kernel::launch_unchecked::<R>(
            client,
            count,
            dim,
            ArrayArg::from_raw_parts(out.clone(), words),
            words as u32,
            seed,
        )
    }
    out
}

fn sync<R: Runtime>(client: &ComputeClient<R>) {
    if let Err(e) = cubecl::future::block_on(client.sync()) {
        panic!("device sync failed: {e:?}");
    }
}

/// Reads 16 bytes at the start of `h` (what keeps a timed result observable).
fn touch<R: Runtime>(client: &ComputeClient<R>, h: &Handle) -> u32 {
    let size = h.size_in_used();
    let first = if size > 16 {
        h.clone().offset_end(size - 16)
    } else {
        h.clone()
    };
    let bytes = client
        .read_one(first)
        .unwrap_or_else(|e| panic!("read back: {e:?}"));
    bytes
        .iter()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(*b as u32))
}

// ---------------------------------------------------------------------------------------------
// Timing.

struct Timing {
    /// Median over repeats of (batch wall time / calls), back-to-back launches.
    per_call_us: f64,
    /// Median wall time of one synchronized call.
    single_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_calls<R: Runtime>(
    client: &ComputeClient<R>,
    calls: usize,
    repeats: usize,
    mut f: impl FnMut(usize),
    observe: impl Fn() -> u32,
) -> Timing {
    // Warm-up: compiles the kernel and fills caches of the runtime.
    for i in 0..3 {
        f(i);
    }
    sync(client);
    let mut batches = Vec::with_capacity(repeats);
    let mut singles = Vec::with_capacity(repeats);
    let mut check = 0u32;
    for r in 0..repeats {
        sync(client);
        let t = Instant::now();
        for i in 0..calls {
            f(r * calls + i);
        }
        sync(client);
        batches.push(t.elapsed().as_secs_f64() * 1e6 / calls as f64);
        check = check.wrapping_add(observe());
        let t = Instant::now();
        f(r);
        sync(client);
        singles.push(t.elapsed().as_secs_f64() * 1e6);
    }
    std::hint::black_box(check);
    Timing {
        per_call_us: median(batches),
        single_us: median(singles),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

struct Checks {
    results: Vec<Value>,
    failed: usize,
}

impl Checks {
    fn record(&mut self, name: String, pass: bool, max_abs: f64, max_rel: f64, detail: String) {
        println!(
            "{} {name}: max abs err {max_abs:.3e}, max rel err {max_rel:.3e} {detail}",
            if pass { "PASS" } else { "FAIL" }
        );
        if !pass {
            self.failed += 1;
        }
        self.results.push(json!({
            "name": name, "pass": pass, "max_abs_err": max_abs, "max_rel_err": max_rel,
            "detail": detail,
        }));
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
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

fn poisoned<R: Runtime>(client: &ComputeClient<R>, bytes: usize) -> Handle {
    client.create_from_slice(&vec![0xFFu8; bytes.max(16)])
}

fn ulp(v: f32, dtype: FloatDtype) -> f64 {
    let bits = match dtype {
        FloatDtype::F32 => 23,
        FloatDtype::F16 => 10,
        FloatDtype::BF16 => 7,
    };
    let e = v.abs().max(f32::MIN_POSITIVE).log2().floor();
    (e - bits as f32).exp2() as f64
}

fn cpu_dequantize(q: &Quantized4bit, dtype: FloatDtype) -> Vec<f32> {
    match dtype {
        FloatDtype::F32 => q.dequantize::<f32>(),
        FloatDtype::F16 => q.dequantize::<f16>().iter().map(|v| v.to_f32()).collect(),
        FloatDtype::BF16 => q.dequantize::<bf16>().iter().map(|v| v.to_f32()).collect(),
    }
}

fn cpu_quantize(
    v: &[f32],
    shape: &[usize],
    dtype: FloatDtype,
    qt: FourBitType,
    bs: usize,
    dq: bool,
) -> Quantized4bit {
    let r = match dtype {
        FloatDtype::F32 => Quantized4bit::quantize(v, shape, qt, bs, dq),
        FloatDtype::F16 => {
            let h: Vec<f16> = v.iter().map(|x| f16::from_f32(*x)).collect();
            Quantized4bit::quantize(&h, shape, qt, bs, dq)
        }
        FloatDtype::BF16 => {
            let h: Vec<bf16> = v.iter().map(|x| bf16::from_f32(*x)).collect();
            Quantized4bit::quantize(&h, shape, qt, bs, dq)
        }
    };
    r.unwrap_or_else(|e| panic!("CPU quantize: {e}"))
}

fn supported_dtypes<R: Runtime>(client: &ComputeClient<R>) -> Vec<FloatDtype> {
    [FloatDtype::F32, FloatDtype::F16, FloatDtype::BF16]
        .into_iter()
        .filter(|d| gpu::check_dtype(client, *d).is_ok())
        .collect()
}

static SWEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The GEMV launch variants beside the default one (checked, and timed at m = 1): only with
/// `--sweep` (each variant is a kernel of its own to compile; the default run keeps to the
/// configurations `Linear4bit` uses).
fn gemv_variants<R: Runtime>(client: &ComputeClient<R>) -> Vec<(String, GemvConfig)> {
    if !SWEEP.load(std::sync::atomic::Ordering::Relaxed) {
        return Vec::new();
    }
    let sms = client
        .properties()
        .hardware
        .num_streaming_multiprocessors
        .unwrap_or(132) as usize;
    let (c4, c8) = (sms * 4, sms * 8);
    let p16 = LutMode::Pairs(16);
    // (name, rows per plane, planes, table, depth, most cubes, plane reduction, split-K)
    [
        ("pairs16-r4-p4", 4, 4, p16, 2, c4, true, 1),
        ("pairs4-r4-p4", 4, 4, LutMode::Pairs(4), 2, c4, true, 1),
        ("pairs1-r4-p4", 4, 4, LutMode::Pairs(1), 2, c4, true, 1),
        ("single-r4-p4", 4, 4, LutMode::Single, 2, c4, true, 1),
        ("pairs16-r4-p4-s2", 4, 4, p16, 2, c8, true, 2),
        ("pairs16-r4-p4-s4", 4, 4, p16, 2, c8, true, 4),
        ("pairs16-r4-p8-s2", 4, 8, p16, 2, c8, true, 2),
        ("pairs16-r4-p8-s4", 4, 8, p16, 2, c8, true, 4),
        ("pairs16-r2-p8-s4", 2, 8, p16, 2, c8, true, 4),
        ("pairs16-r2-p8-s8", 2, 8, p16, 2, c8, true, 8),
        ("pairs16-r4-p4-d1", 4, 4, p16, 1, c4, true, 1),
        ("pairs16-r4-p4-d4", 4, 4, p16, 4, c4, true, 1),
        ("pairs16-r2-p4", 2, 4, p16, 2, c4, true, 1),
        ("pairs16-r2-p4-d4", 2, 4, p16, 4, c4, true, 1),
        ("pairs16-r4-p8", 4, 8, p16, 2, sms * 2, true, 1),
        ("pairs16-r8-p4", 8, 4, p16, 2, c4, true, 1),
        ("pairs16-r4-p4-nocap", 4, 4, p16, 2, 0, true, 1),
        ("pairs16-r2-p8-c8", 2, 8, p16, 2, c8, true, 1),
        ("pairs16-r1-p8-d4-c8", 1, 8, p16, 4, c8, true, 1),
        ("pairs16-r4-p4-smemreduce", 4, 4, p16, 2, c4, false, 1),
    ]
    .into_iter()
    .map(
        |(name, rows, planes, lut, depth, cubes, use_plane, split)| {
            (
                name.to_string(),
                GemvConfig {
                    rows_per_plane: rows,
                    planes,
                    lut,
                    use_plane,
                    depth,
                    max_cubes: cubes,
                    split_k: split,
                },
            )
        },
    )
    .collect()
}

fn new_rng() -> Rng {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    println!("checks: seed {seed}");
    Rng(seed | 1)
}

fn run_checks<R: Runtime>(client: &ComputeClient<R>, checks: &mut Checks, rng: &mut Rng) {
    let dtypes = supported_dtypes(client);

    // Dequantize: bit-exact with plain absmax, one rounding apart with nested absmax.
    let (shape, n) = if small() {
        ([77usize, 101usize], 77 * 101)
    } else {
        ([777usize, 1001usize], 777 * 1001)
    };
    let w = rng.vec(n);
    for qt in [FourBitType::Nf4, FourBitType::Fp4] {
        for dq in [false, true] {
            for bs in [64usize, 4096] {
                let q = Quantized4bit::quantize(&w, &shape, qt, bs, dq)
                    .unwrap_or_else(|e| panic!("{e}"));
                let dev = DeviceQuant4::upload(client, &q);
                for &dtype in &dtypes {
                    let out = poisoned(client, n * dtype.size());
                    let res = dev.dequantize_into(client, &out, dtype);
                    let name = format!(
                        "dequantize {qt} dq={dq} bs={bs} -> {dtype} [{}x{}]",
                        shape[0], shape[1]
                    );
                    let got = match res.and_then(|_| gpu::read_back_f32(client, out, n, dtype)) {
                        Ok(g) => g,
                        Err(e) => {
                            checks.record(name, false, f64::NAN, f64::NAN, e.to_string());
                            continue;
                        }
                    };
                    let want = cpu_dequantize(&q, dtype);
                    let (mut ma, mut mr, mut pass) = (0.0f64, 0.0f64, true);
                    for (g, e) in got.iter().zip(&want) {
                        let d = (*g as f64 - *e as f64).abs();
                        let tol = if dq {
                            ulp(*e, dtype).max(4.0 * ulp(*e, FloatDtype::F32))
                        } else {
                            0.0
                        };
                        pass &= d <= tol; // NaN fails
                        ma = ma.max(d);
                        mr = mr.max(d / (e.abs() as f64).max(1e-30));
                    }
                    checks.record(name, pass, ma, mr, String::new());
                }
            }
        }
    }

    // Quantize: bit-identical to the CPU codec.
    let qshapes = if small() {
        vec![
            ([51usize, 100usize], 64usize),
            ([3, 4097], 4096),
            ([11, 99], 32),
        ]
    } else {
        vec![
            ([513usize, 1000usize], 64usize),
            ([33, 4097], 4096),
            ([101, 99], 32),
        ]
    };
    for (shape, bs) in qshapes {
        let n = shape[0] * shape[1];
        let w = rng.vec(n);
        for qt in [FourBitType::Nf4, FourBitType::Fp4] {
            for &dtype in &dtypes {
                for dq in [false, true] {
                    let rounded: Vec<f32> = w.iter().map(|v| dtype.round(*v)).collect();
                    let h = gpu::upload_as(client, &rounded, dtype);
                    let name = format!("quantize {qt} bs={bs} dq={dq} from {dtype} {shape:?}");
                    let got = gpu::quantize_4bit(client, &h, dtype, &shape, qt, bs, dq);
                    let want = cpu_quantize(&rounded, &shape, dtype, qt, bs, dq);
                    match got {
                        Ok(g) => {
                            let diff = g
                                .packed()
                                .iter()
                                .zip(want.packed())
                                .filter(|(a, b)| a != b)
                                .count();
                            let same = g == want;
                            checks.record(
                                name,
                                same,
                                diff as f64,
                                0.0,
                                format!("{diff} packed bytes differ"),
                            );
                        }
                        Err(e) => checks.record(name, false, f64::NAN, f64::NAN, e.to_string()),
                    }
                }
            }
        }
    }

    // Fused GEMV, every variant that is timed, against f64 from the CPU-dequantized weight.
    let variants = gemv_variants(client);
    let gshapes: &[(usize, usize, usize)] = if small() {
        &[(37, 256, 64), (9, 512, 128)]
    } else {
        &[(1000, 4096, 64), (259, 14336, 64), (77, 512, 128)]
    };
    for &(n, k, bs) in gshapes {
        let w = rng.vec(n * k);
        for (qt, dq) in [
            (FourBitType::Nf4, false),
            (FourBitType::Nf4, true),
            (FourBitType::Fp4, false),
        ] {
            let q =
                Quantized4bit::quantize(&w, &[n, k], qt, bs, dq).unwrap_or_else(|e| panic!("{e}"));
            let wf = q.dequantize::<f32>();
            let dev = DeviceQuant4::upload(client, &q);
            for &dtype in &dtypes {
                for m in [1usize, 4, 16] {
                    let x: Vec<f32> = rng.vec(m * k).iter().map(|v| dtype.round(*v)).collect();
                    let bias: Vec<f32> = rng.vec(n).iter().map(|v| dtype.round(*v)).collect();
                    let xh = gpu::upload_as(client, &x, dtype);
                    let bh = gpu::upload_as(client, &bias, dtype);
                    let mut want = vec![0.0f64; m * n];
                    let mut mag = vec![0.0f64; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let (mut s, mut a) = (bias[j] as f64, bias[j].abs() as f64);
                            for l in 0..k {
                                let p = x[i * k + l] as f64 * wf[j * k + l] as f64;
                                s += p;
                                a += p.abs();
                            }
                            want[i * n + j] = s;
                            mag[i * n + j] = a;
                        }
                    }
                    let mut configs =
                        vec![("default".to_string(), GemvConfig::default_for(client, m, n))];
                    if dtype == FloatDtype::F16 {
                        configs.extend(variants.iter().cloned());
                    }
                    for (cname, config) in configs {
                        let out = poisoned(client, m * n * dtype.size());
                        let name = format!("gemv {qt} dq={dq} {dtype} [{n}x{k}] m={m} {cname}");
                        let res = dev.gemv_into(client, &xh, m, dtype, Some(&bh), &out, config);
                        let got =
                            match res.and_then(|_| gpu::read_back_f32(client, out, m * n, dtype)) {
                                Ok(g) => g,
                                Err(e) if unsupported(&e) => {
                                    println!("SKIP {name}: {e}");
                                    continue;
                                }
                                Err(e) => {
                                    checks.record(name, false, f64::NAN, f64::NAN, e.to_string());
                                    continue;
                                }
                            };
                        let (mut ma, mut mr, mut pass) = (0.0f64, 0.0f64, true);
                        for i in 0..m * n {
                            let d = (got[i] as f64 - want[i]).abs();
                            let tol = 1e-5 * mag[i] + ulp(want[i] as f32, dtype);
                            pass &= d <= tol;
                            ma = ma.max(d);
                            mr = mr.max(d / mag[i].max(1e-30));
                        }
                        checks.record(name, pass, ma, mr, "(rel: to sum |x w|)".into());
                    }
                }
            }
        }
    }

    check_dense(client, checks, rng, false);

    // LLM.int8 against the CPU codec.
    let ishapes: &[(usize, usize)] = if small() {
        &[(37, 100)]
    } else {
        &[(1000, 4096), (301, 1000)]
    };
    for &(n, k) in ishapes {
        let wq =
            Int8Rowwise::quantize_weight(&rng.vec(n * k), n, k).unwrap_or_else(|e| panic!("{e}"));
        let dev = DeviceInt8::upload(client, &wq);
        for &dtype in &dtypes {
            for m in [1usize, 4, 16] {
                for threshold in [6.0, 0.0] {
                    let mut x: Vec<f32> = rng
                        .vec(m * k)
                        .iter()
                        .map(|v| dtype.round(*v * 2.0))
                        .collect();
                    for c in [5usize, k / 3, k - 1] {
                        x[(c % m) * k + c] = if c == 5 { 6.0 } else { -11.5 };
                    }
                    let bias: Vec<f32> = rng.vec(n).iter().map(|v| dtype.round(*v)).collect();
                    let want: Vec<f32> = match dtype {
                        FloatDtype::F32 => {
                            int8_linear(&x, m, &wq, Some(&bias), threshold).unwrap_or_default()
                        }
                        FloatDtype::F16 => {
                            let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
                            let bh: Vec<f16> = bias.iter().map(|v| f16::from_f32(*v)).collect();
                            int8_linear(&xh, m, &wq, Some(&bh), threshold)
                                .unwrap_or_default()
                                .iter()
                                .map(|v| v.to_f32())
                                .collect()
                        }
                        FloatDtype::BF16 => {
                            let xh: Vec<bf16> = x.iter().map(|v| bf16::from_f32(*v)).collect();
                            let bh: Vec<bf16> = bias.iter().map(|v| bf16::from_f32(*v)).collect();
                            int8_linear(&xh, m, &wq, Some(&bh), threshold)
                                .unwrap_or_default()
                                .iter()
                                .map(|v| v.to_f32())
                                .collect()
                        }
                    };
                    let xh = gpu::upload_as(client, &x, dtype);
                    let bh = gpu::upload_as(client, &bias, dtype);
                    for (cname, config) in [
                        ("default", Int8Config::default_for(client, m, n)),
                        (
                            "r2-p4-d1",
                            Int8Config {
                                rows_per_plane: 2,
                                planes: 4,
                                use_plane: true,
                                depth: 1,
                                max_cubes: 0,
                                split_k: 2,
                            },
                        ),
                        (
                            "r4-p8-d3-smemreduce",
                            Int8Config {
                                rows_per_plane: 4,
                                planes: 8,
                                use_plane: false,
                                depth: 3,
                                max_cubes: 0,
                                split_k: 1,
                            },
                        ),
                    ] {
                        let out = poisoned(client, m * n * dtype.size());
                        let name =
                            format!("int8 {dtype} [{n}x{k}] m={m} threshold={threshold} {cname}");
                        let res = dev.linear_into(
                            client,
                            &xh,
                            m,
                            dtype,
                            Some(&bh),
                            threshold,
                            &out,
                            config,
                        );
                        let got =
                            match res.and_then(|_| gpu::read_back_f32(client, out, m * n, dtype)) {
                                Ok(g) => g,
                                Err(e) if unsupported(&e) => {
                                    println!("SKIP {name}: {e}");
                                    continue;
                                }
                                Err(e) => {
                                    checks.record(name, false, f64::NAN, f64::NAN, e.to_string());
                                    continue;
                                }
                            };
                        let (mut ma, mut mr, mut pass) = (0.0f64, 0.0f64, !want.is_empty());
                        for (g, e) in got.iter().zip(&want) {
                            let d = (*g as f64 - *e as f64).abs();
                            let tol = 2.0 * ulp(*e, dtype) + 1e-5 * (e.abs() as f64 + 40.0);
                            pass &= d <= tol;
                            ma = ma.max(d);
                            mr = mr.max(d / (e.abs() as f64).max(1e-6));
                        }
                        checks.record(name, pass, ma, mr, String::new());
                    }
                }
            }
        }
    }
}

/// The dense GEMV against f64, default launch (`in` = 4100: vectors narrower than 16 bytes);
/// with `sweep`, every launch variant of [`dense_variants`] in f16 too.
fn check_dense<R: Runtime>(
    client: &ComputeClient<R>,
    checks: &mut Checks,
    rng: &mut Rng,
    sweep: bool,
) {
    let dtypes = supported_dtypes(client);
    let dshapes: &[(usize, usize)] = if small() {
        &[(37, 256), (9, 100)]
    } else {
        &[(1000, 4096), (77, 4100)]
    };
    for &(n, k) in dshapes {
        let w = rng.vec(n * k);
        for &dtype in &dtypes {
            let w: Vec<f32> = w.iter().map(|v| dtype.round(*v)).collect();
            let layer =
                DeviceDense::upload(client, &w, n, k, dtype).unwrap_or_else(|e| panic!("{e}"));
            for m in [1usize, 4, 16] {
                let x: Vec<f32> = rng.vec(m * k).iter().map(|v| dtype.round(*v)).collect();
                let bias: Vec<f32> = rng.vec(n).iter().map(|v| dtype.round(*v)).collect();
                let (xh, bh) = (
                    gpu::upload_as(client, &x, dtype),
                    gpu::upload_as(client, &bias, dtype),
                );
                let mut want = vec![(0.0f64, 0.0f64); m * n];
                for i in 0..m {
                    for j in 0..n {
                        let (mut e, mut a) = (bias[j] as f64, bias[j].abs() as f64);
                        for l in 0..k {
                            let p = x[i * k + l] as f64 * w[j * k + l] as f64;
                            e += p;
                            a += p.abs();
                        }
                        want[i * n + j] = (e, a);
                    }
                }
                let mut configs = vec![(
                    "default".to_string(),
                    DenseConfig::default_for(client, m, n),
                )];
                if sweep && dtype == FloatDtype::F16 {
                    configs.extend(dense_variants(client, n));
                }
                for (cname, config) in configs {
                    let out = poisoned(client, m * n * dtype.size());
                    let name = format!("dense {dtype} [{n}x{k}] m={m} {cname}");
                    let res = layer.gemv_into(client, &xh, m, Some(&bh), &out, config);
                    let got = match res.and_then(|_| gpu::read_back_f32(client, out, m * n, dtype))
                    {
                        Ok(g) => g,
                        Err(e) => {
                            checks.record(name, false, f64::NAN, f64::NAN, e.to_string());
                            continue;
                        }
                    };
                    let (mut ma, mut mr, mut pass) = (0.0f64, 0.0f64, true);
                    for (g, (e, a)) in got.iter().zip(&want) {
                        let d = (*g as f64 - e).abs();
                        pass &= d <= 1e-5 * a + ulp(*e as f32, dtype); // NaN fails
                        ma = ma.max(d);
                        mr = mr.max(d / a.max(1e-30));
                    }
                    checks.record(
                        name,
                        pass,
                        ma,
                        mr,
                        format!("(rel: to sum |x w|) {config:?}"),
                    );
                }
            }
        }
    }
}

/// The burn modules on burn's CUDA backend take the kernels and agree with the codec.
fn check_burn_modules<B: burn::prelude::Backend>(
    checks: &mut Checks,
    rng: &mut Rng,
    device: &B::Device,
    label: &str,
    dtypes: &[FloatDtype],
) {
    use burn::tensor::{Tensor, TensorData};
    use kiln_quant::nn::{Linear4bit, Linear8bitLt};
    let device = device.clone();
    let (n, k) = if small() {
        (30usize, 256usize)
    } else {
        (300usize, 1024usize)
    };
    let w = rng.vec(n * k);
    let q = Quantized4bit::quantize(&w, &[n, k], FourBitType::Nf4, 64, true)
        .unwrap_or_else(|e| panic!("{e}"));
    let wf = q.dequantize::<f32>();
    for &compute in dtypes {
        let layer = match Linear4bit::<B>::from_quantized(&q, None, compute, &device) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        for tokens in [1usize, 5, 40] {
            let x = rng.vec(tokens * k);
            let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [tokens, k]), &device);
            let name =
                format!("burn Linear4bit ({label}) nf4-dq compute={compute} tokens={tokens}");
            match layer.forward_device(xt) {
                Ok(y) => {
                    let got: Vec<f32> = y.into_data().convert::<f32>().to_vec().unwrap_or_default();
                    let (mut ma, mut mr, mut pass) = (0.0f64, 0.0f64, got.len() == tokens * n);
                    for t in 0..tokens {
                        for o in 0..n {
                            let (mut e, mut mag) = (0.0f64, 0.0f64);
                            for i in 0..k {
                                let p = x[t * k + i] as f64 * wf[o * k + i] as f64;
                                e += p;
                                mag += p.abs();
                            }
                            let g = got.get(t * n + o).copied().unwrap_or(f32::NAN) as f64;
                            let d = (g - e).abs();
                            // The compute dtype rounds x (and the weight on the matmul path).
                            // burn-cuda's f32 matmul (the path past MAX_GEMV_ROWS tokens) rounds
                            // its inputs like TF32 (10-bit mantissa): 1e-3 there.
                            let matmul = tokens > gpu::MAX_GEMV_ROWS;
                            let tol = match compute {
                                FloatDtype::F32 if matmul && label == "Cuda" => 1e-3 * mag,
                                FloatDtype::F32 => 1e-5 * mag,
                                FloatDtype::F16 => 2e-3 * mag,
                                FloatDtype::BF16 => 1.6e-2 * mag,
                            } + 1e-6;
                            pass &= d <= tol;
                            ma = ma.max(d);
                            mr = mr.max(d / mag.max(1e-30));
                        }
                    }
                    checks.record(name, pass, ma, mr, String::new());
                }
                Err(_) => checks.record(name, false, f64::NAN, f64::NAN, "no device path".into()),
            }
        }
    }
    let wq = Int8Rowwise::quantize_weight(&w, n, k).unwrap_or_else(|e| panic!("{e}"));
    let layer = match Linear8bitLt::<B>::from_quantized(&wq, None, 6.0, &device) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    for tokens in [1usize, 7] {
        let mut x = rng.vec(tokens * k);
        x[3] = 9.0;
        let want = int8_linear(&x, tokens, &wq, None, 6.0).unwrap_or_default();
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [tokens, k]), &device);
        let name = format!("burn Linear8bitLt ({label}) f32 tokens={tokens}");
        match layer.forward_device(xt) {
            Ok(y) => {
                let got: Vec<f32> = y.into_data().convert::<f32>().to_vec().unwrap_or_default();
                let (mut ma, mut pass) = (0.0f64, got.len() == want.len());
                for (g, e) in got.iter().zip(&want) {
                    let d = (*g as f64 - *e as f64).abs();
                    pass &= d <= 1e-5 * (1.0 + e.abs() as f64);
                    ma = ma.max(d);
                }
                checks.record(name, pass, ma, 0.0, String::new());
            }
            Err(_) => checks.record(name, false, f64::NAN, f64::NAN, "no device path".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

fn bench_copy<R: Runtime>(client: &ComputeClient<R>, quick: bool) -> Value {
    let bytes = if small() { 1usize << 24 } else { 1usize << 30 };
    let vectors = bytes / 16;
    let a = fill_words(client, bytes / 4, 1);
    let b = client.empty(bytes);
    let (count, dim) = launch_1d(client, vectors);
    let t = time_calls(
        client,
        if quick { 2 } else { 20 },
        if quick { 3 } else { 9 },
        |_| unsafe {
            copy_kernel::launch_unchecked::<R>(
                client,
                count.clone(),
                dim,
                ArrayArg::from_raw_parts(a.clone(), vectors),
                ArrayArg::from_raw_parts(b.clone(), vectors),
                vectors as u32,
            )
        },
        || touch(client, &b),
    );
    let gbps = 2.0 * bytes as f64 / (t.per_call_us * 1e3);
    println!(
        "copy {} MiB: {:.1} us, {gbps:.0} GB/s (read + write)",
        bytes >> 20,
        t.per_call_us
    );
    json!({"bytes": bytes, "us": t.per_call_us, "us_single": t.single_us, "gbps": gbps})
}

fn bench_launch_floor<R: Runtime>(client: &ComputeClient<R>) -> Value {
    let a = fill_words(client, 1024, 2);
    let b = client.empty(4096);
    let (count, dim) = launch_1d(client, 64);
    let t = time_calls(
        client,
        200,
        9,
        |_| unsafe {
            copy_kernel::launch_unchecked::<R>(
                client,
                count.clone(),
                dim,
                ArrayArg::from_raw_parts(a.clone(), 64),
                ArrayArg::from_raw_parts(b.clone(), 64),
                64,
            )
        },
        || touch(client, &b),
    );
    println!(
        "empty-ish launch: {:.2} us per call back to back, {:.1} us synchronized",
        t.per_call_us, t.single_us
    );
    json!({"us": t.per_call_us, "us_single": t.single_us})
}

/// Quantizes a random `[n, k]` f16 weight on the device.
fn random_q4<R: Runtime>(
    client: &ComputeClient<R>,
    n: usize,
    k: usize,
    qt: FourBitType,
    dq: bool,
    seed: u32,
) -> DeviceQuant4 {
    let w = fill_normal(client, n * k, FloatDtype::F16, seed);
    quantize_4bit_device(client, &w, FloatDtype::F16, &[n, k], qt, 64, dq)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn q4_bytes(n: usize, k: usize, dq: bool) -> usize {
    let blocks = (n * k).div_ceil(64);
    (n * k).div_ceil(2)
        + if dq {
            blocks + 4 * blocks.div_ceil(256)
        } else {
            4 * blocks
        }
}

fn bench_dequant<R: Runtime>(client: &ComputeClient<R>, quick: bool) -> Vec<Value> {
    let (n, k) = if small() {
        (512usize, 512usize)
    } else {
        (8192usize, 8192usize)
    };
    let mut out = Vec::new();
    for (qt, dq) in [(FourBitType::Nf4, false), (FourBitType::Nf4, true)] {
        let q = random_q4(client, n, k, qt, dq, 11);
        for dtype in supported_dtypes(client) {
            let o = client.empty(n * k * dtype.size());
            let t = time_calls(
                client,
                if quick { 2 } else { 20 },
                if quick { 3 } else { 9 },
                |_| {
                    if let Err(e) = q.dequantize_into(client, &o, dtype) {
                        panic!("{e}")
                    }
                },
                || touch(client, &o),
            );
            let bytes = q4_bytes(n, k, dq) + n * k * dtype.size();
            let tbps = bytes as f64 / (t.per_call_us * 1e6);
            println!(
                "dequantize {qt} dq={dq} {n}x{k} -> {dtype}: {:.1} us, {tbps:.2} TB/s moved",
                t.per_call_us
            );
            out.push(
                json!({"quant": qt.name(), "dq": dq, "dtype": dtype.torch_name(), "shape": [n, k],
                "us": t.per_call_us, "us_single": t.single_us, "bytes": bytes, "tbps": tbps}),
            );
        }
    }
    out
}

fn bench_quantize<R: Runtime>(client: &ComputeClient<R>, quick: bool) -> Vec<Value> {
    let (n, k) = if small() {
        (512usize, 512usize)
    } else {
        (8192usize, 8192usize)
    };
    let w = fill_normal(client, n * k, FloatDtype::F16, 5);
    let mut out = Vec::new();
    let t = time_calls(
        client,
        if quick { 1 } else { 5 },
        if quick { 3 } else { 7 },
        |_| {
            // Includes reading back the absmax (the non-finite check).
            if let Err(e) = quantize_4bit_device(
                client,
                &w,
                FloatDtype::F16,
                &[n, k],
                FourBitType::Nf4,
                64,
                false,
            ) {
                panic!("{e}")
            }
        },
        || 0,
    );
    println!("quantize nf4 {n}x{k} from f16: {:.1} us", t.per_call_us);
    out.push(json!({"quant": "nf4", "dq": false, "dtype": "float16", "shape": [n, k], "us": t.per_call_us, "us_single": t.single_us}));
    out
}

struct Layer4 {
    copies: Vec<DeviceQuant4>,
    n: usize,
    k: usize,
    dq: bool,
}

fn layer4<R: Runtime>(
    client: &ComputeClient<R>,
    n: usize,
    k: usize,
    qt: FourBitType,
    dq: bool,
) -> Layer4 {
    let bytes = q4_bytes(n, k, dq);
    let copies = ROTATE_BYTES.div_ceil(bytes).clamp(1, 32);
    let copies = (0..copies)
        .map(|i| random_q4(client, n, k, qt, dq, 100 + i as u32))
        .collect();
    Layer4 { copies, n, k, dq }
}

fn bench_gemv4<R: Runtime>(
    client: &ComputeClient<R>,
    layer: &Layer4,
    qt: FourBitType,
    m: usize,
    config: GemvConfig,
    quick: bool,
) -> Timing {
    let (n, k) = (layer.n, layer.k);
    let xs: Vec<Handle> = (0..4)
        .map(|i| fill_normal(client, m * k, FloatDtype::F16, 900 + i))
        .collect();
    let out = client.empty(m * n * 2);
    let big = n * k >= 100_000_000;
    let calls = if quick {
        3
    } else if big {
        20
    } else {
        100
    };
    let _ = qt;
    time_calls(
        client,
        calls,
        if quick { 3 } else { 11 },
        |i| {
            let w = &layer.copies[i % layer.copies.len()];
            if let Err(e) = w.gemv_into(
                client,
                &xs[i % xs.len()],
                m,
                FloatDtype::F16,
                None,
                &out,
                config,
            ) {
                panic!("{e}")
            }
        },
        || touch(client, &out),
    )
}

fn bench_gemv<R: Runtime>(client: &ComputeClient<R>, quick: bool) -> (Vec<Value>, Vec<Value>) {
    let mut rows = Vec::new();
    let mut variants = Vec::new();
    let shapes: &[(usize, usize)] = if quick { &shapes()[..1] } else { shapes() };
    for &(n, k) in shapes {
        for (qt, dq, label) in [
            (FourBitType::Nf4, false, "nf4"),
            (FourBitType::Nf4, true, "nf4-dq"),
            (FourBitType::Fp4, false, "fp4"),
        ] {
            let layer = layer4(client, n, k, qt, dq);
            for &m in &ROWS {
                let config = GemvConfig::default_for(client, m, n);
                let t = bench_gemv4(client, &layer, qt, m, config, quick);
                let bytes = q4_bytes(n, k, layer.dq) + 2 * m * (n + k);
                let gbps = bytes as f64 / (t.per_call_us * 1e3);
                println!(
                    "gemv {label} [{n}x{k}] m={m}: {:.2} us ({:.1} us synchronized), {gbps:.0} GB/s, {} copies",
                    t.per_call_us,
                    t.single_us,
                    layer.copies.len()
                );
                rows.push(json!({"kind": label, "shape": [n, k], "m": m, "us": t.per_call_us,
                    "us_single": t.single_us, "bytes": bytes, "gbps": gbps, "config": format!("{config:?}")}));
                if m == 1 && qt == FourBitType::Nf4 && !quick {
                    for (vname, vconfig) in gemv_variants(client) {
                        let probe = client.empty(2 * n);
                        let x1 = client.empty(2 * k);
                        if let Err(e) = layer.copies[0].gemv_into(
                            client,
                            &x1,
                            1,
                            FloatDtype::F16,
                            None,
                            &probe,
                            vconfig,
                        ) {
                            println!("  variant {vname}: skipped ({e})");
                            continue;
                        }
                        let t = bench_gemv4(client, &layer, qt, m, vconfig, quick);
                        let gbps = bytes as f64 / (t.per_call_us * 1e3);
                        println!("  variant {vname}: {:.2} us, {gbps:.0} GB/s", t.per_call_us);
                        variants.push(
                            json!({"kind": label, "shape": [n, k], "m": m, "variant": vname,
                            "us": t.per_call_us, "us_single": t.single_us, "gbps": gbps}),
                        );
                    }
                }
            }
        }
    }
    (rows, variants)
}

/// The dense GEMV on f16 weights (torch's `F.linear` in f16 is the reference), weights rotated
/// past L2 as for the 4-bit GEMV. With `sweep`, every launch variant of [`dense_variants`] too.
fn bench_dense<R: Runtime>(client: &ComputeClient<R>, quick: bool, sweep: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    let shapes: &[(usize, usize)] = if quick { &shapes()[..1] } else { shapes() };
    for &(n, k) in shapes {
        let wbytes = 2 * n * k;
        let copies: Vec<DeviceDense> = (0..ROTATE_BYTES.div_ceil(wbytes).clamp(1, 32))
            .map(|i| DeviceDense {
                weight: fill_normal(client, n * k, FloatDtype::F16, 500 + i as u32),
                rows: n,
                cols: k,
                row_stride: k,
                dtype: FloatDtype::F16,
            })
            .collect();
        for &m in &ROWS {
            let xs: Vec<Handle> = (0..4)
                .map(|i| fill_normal(client, m * k, FloatDtype::F16, 950 + i))
                .collect();
            let out = client.empty(m * n * 2);
            let calls = if quick {
                3
            } else if n * k >= 100_000_000 {
                20
            } else {
                100
            };
            let mut configs = vec![(
                "default".to_string(),
                DenseConfig::default_for(client, m, n),
            )];
            if sweep {
                configs.extend(dense_variants(client, n));
            }
            for (name, config) in configs {
                let t = time_calls(
                    client,
                    calls,
                    if quick || name != "default" { 3 } else { 11 },
                    |i| {
                        let w = &copies[i % copies.len()];
                        if let Err(e) =
                            w.gemv_into(client, &xs[i % xs.len()], m, None, &out, config)
                        {
                            panic!("{e}")
                        }
                    },
                    || touch(client, &out),
                );
                let bytes = wbytes + 2 * m * (n + k);
                let gbps = bytes as f64 / (t.per_call_us * 1e3);
                println!(
                    "dense f16 [{n}x{k}] m={m} {name}: {:.2} us ({:.1} us synchronized), {gbps:.0} GB/s, {} copies",
                    t.per_call_us,
                    t.single_us,
                    copies.len()
                );
                rows.push(
                    json!({"kind": "dense-f16", "shape": [n, k], "m": m, "variant": name,
                    "us": t.per_call_us, "us_single": t.single_us, "bytes": bytes, "gbps": gbps,
                    "config": format!("{config:?}")}),
                );
            }
        }
    }
    rows
}

/// Launch variants of the dense GEMV (with plane reductions only): rows per plane, vectors in
/// flight, planes per cube, with and without split-K.
fn dense_variants<R: Runtime>(client: &ComputeClient<R>, n: usize) -> Vec<(String, DenseConfig)> {
    if !gpu::planes_of_32(client) {
        return Vec::new();
    }
    let sms = client
        .properties()
        .hardware
        .num_streaming_multiprocessors
        .unwrap_or(0) as usize;
    let mut v = Vec::new();
    for rows in [1usize, 2, 4] {
        for depth in [1usize, 2, 4] {
            for planes in [4usize, 8] {
                let mut split = 1;
                while split * 2 <= planes && n.div_ceil(rows) * split < sms * 32 {
                    split *= 2;
                }
                for split_k in if split > 1 { vec![1, split] } else { vec![1] } {
                    v.push((
                        format!("r{rows}-d{depth}-p{planes}-s{split_k}"),
                        DenseConfig {
                            rows_per_plane: rows,
                            planes,
                            use_plane: true,
                            depth,
                            max_cubes: 0,
                            split_k,
                            tensor_cores: None,
                        },
                    ));
                }
            }
        }
    }
    // The tensor-core kernel: planes per cube, blocks in flight, split-K.
    for planes in [4usize, 8] {
        for depth in [1usize, 2, 4] {
            for split_k in [1usize, 2, 4] {
                let mut config = DenseConfig::default_for(client, 2, n);
                config.tensor_cores = Some(gpu::MmaLaunch {
                    planes,
                    depth,
                    split_k,
                });
                v.push((format!("mma-d{depth}-p{planes}-s{split_k}"), config));
            }
        }
    }
    v
}

/// `Linear4bit::forward_device` with f16 compute: the fused GEMV up to `MAX_GEMV_ROWS` tokens,
/// dequantize + burn's matmul beyond, so that the two paths meet at 16 / 17 tokens.
fn bench_linear4bit<R: Runtime, B: burn::prelude::Backend>(
    client: &ComputeClient<R>,
    device: &B::Device,
    quick: bool,
) -> Vec<Value> {
    use burn::tensor::{Distribution, Tensor};
    use kiln_quant::nn::Linear4bit;
    let mut rows = Vec::new();
    if quick || small() {
        return rows;
    }
    for (n, k) in [(14336usize, 4096usize), (4096, 14336)] {
        let mut rng = Rng(0x5EED ^ (n as u64));
        let w = rng.vec(n * k);
        let q = Quantized4bit::quantize(&w, &[n, k], FourBitType::Nf4, 64, false)
            .unwrap_or_else(|e| panic!("{e}"));
        drop(w);
        let layer = Linear4bit::<B>::from_quantized(&q, None, FloatDtype::F16, device)
            .unwrap_or_else(|e| panic!("{e}"));
        for tokens in [1usize, 4, 16, 17, 32, 64] {
            let x = Tensor::<B, 2>::random([tokens, k], Distribution::Normal(0.0, 1.0), device)
                .cast(burn::tensor::DType::F16);
            let t = time_calls(
                client,
                50,
                9,
                |_| {
                    let y = layer
                        .forward_device(x.clone())
                        .unwrap_or_else(|_| panic!("no device path"));
                    drop(y);
                },
                || 0,
            );
            let path = if tokens <= gpu::MAX_GEMV_ROWS {
                "fused GEMV"
            } else {
                "dequantize + matmul"
            };
            println!(
                "Linear4bit nf4 f16 [{n}x{k}] tokens={tokens} ({path}): {:.2} us ({:.1} us synchronized)",
                t.per_call_us, t.single_us
            );
            rows.push(json!({"shape": [n, k], "tokens": tokens, "path": path,
                "us": t.per_call_us, "us_single": t.single_us}));
        }
    }
    rows
}

fn bench_int8<R: Runtime>(client: &ComputeClient<R>, quick: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    let shapes: &[(usize, usize)] = if quick { &shapes()[..1] } else { shapes() };
    for &(n, k) in shapes {
        let row_bytes = k.div_ceil(16) * 16;
        let bytes_w = n * row_bytes;
        let copies = ROTATE_BYTES.div_ceil(bytes_w).clamp(1, 32);
        let layers: Vec<DeviceInt8> = (0..copies)
            .map(|i| {
                let scb: Vec<f32> = (0..n).map(|j| 0.02 + (j % 7) as f32 * 0.003).collect();
                DeviceInt8 {
                    weight: fill_words(client, bytes_w / 4, 300 + i as u32),
                    scb: gpu::upload_as(client, &scb, FloatDtype::F32),
                    rows: n,
                    cols: k,
                }
            })
            .collect();
        for &m in &ROWS {
            let xs: Vec<Handle> = (0..4)
                .map(|i| fill_normal(client, m * k, FloatDtype::F16, 700 + i))
                .collect();
            let out = client.empty(m * n * 2);
            let config = Int8Config::default_for(client, m, n);
            let calls = if quick {
                3
            } else if n * k >= 100_000_000 {
                20
            } else {
                100
            };
            let t = time_calls(
                client,
                calls,
                if quick { 3 } else { 11 },
                |i| {
                    let l = &layers[i % layers.len()];
                    if let Err(e) = l.linear_into(
                        client,
                        &xs[i % xs.len()],
                        m,
                        FloatDtype::F16,
                        None,
                        6.0,
                        &out,
                        config,
                    ) {
                        panic!("{e}")
                    }
                },
                || touch(client, &out),
            );
            let bytes = bytes_w + 4 * n + 2 * m * (n + k);
            let gbps = bytes as f64 / (t.per_call_us * 1e3);
            println!(
                "int8 [{n}x{k}] m={m} threshold=6: {:.2} us ({:.1} us synchronized), {gbps:.0} GB/s, {copies} copies",
                t.per_call_us, t.single_us
            );
            rows.push(json!({"kind": "int8", "shape": [n, k], "m": m, "us": t.per_call_us,
                "us_single": t.single_us, "bytes": bytes, "gbps": gbps, "config": format!("{config:?}")}));
        }
    }
    rows
}

fn run<R: Runtime, B: burn::prelude::Backend>(
    client: ComputeClient<R>,
    burn_device: &B::Device,
    label: &str,
    quick: bool,
    out_path: &str,
) {
    let client = &client;
    let props = client.properties();
    let device = json!({
        "runtime": R::name(client),
        "sms": props.hardware.num_streaming_multiprocessors,
        "plane_size": [props.hardware.plane_size_min, props.hardware.plane_size_max],
        "max_shared_memory": props.hardware.max_shared_memory_size,
        "planes_of_32": gpu::planes_of_32(client),
    });
    println!("device: {device}");

    let t0 = Instant::now();
    let mut checks = Checks {
        results: Vec::new(),
        failed: 0,
    };
    let mut rng = new_rng();
    run_checks(client, &mut checks, &mut rng);
    let dtypes = supported_dtypes(client);
    check_burn_modules::<B>(&mut checks, &mut rng, burn_device, label, &dtypes);
    println!(
        "checks: {} run, {} failed ({:.0} s)",
        checks.results.len(),
        checks.failed,
        t0.elapsed().as_secs_f64()
    );

    let launch = bench_launch_floor(client);
    let copy = bench_copy(client, quick);
    let dequant = bench_dequant(client, quick);
    let quantize = bench_quantize(client, quick);
    let (gemv, variants) = bench_gemv(client, quick);
    let int8 = bench_int8(client, quick);
    let dense = bench_dense(client, quick, false);
    let linear4bit = bench_linear4bit::<R, B>(client, burn_device, quick);

    let report = json!({
        "tool": "kiln-quant gpu_bench",
        "device": device,
        "checks": {"failed": checks.failed, "total": checks.results.len(), "results": checks.results},
        "launch": launch,
        "copy": copy,
        "dequantize": dequant,
        "quantize": quantize,
        "gemv": gemv,
        "gemv_variants": variants,
        "int8": int8,
        "dense": dense,
        "linear4bit": linear4bit,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    match serde_json::to_string_pretty(&report) {
        Ok(s) => {
            if let Err(e) = std::fs::write(out_path, s) {
                eprintln!("writing {out_path}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("serializing the report: {e}");
            std::process::exit(1);
        }
    }
    println!("wrote {out_path} ({:.0} s)", t0.elapsed().as_secs_f64());
    if checks.failed > 0 {
        std::process::exit(3);
    }
}

/// `--variants`: the default GEMV and every launch variant, timed at m = 1 (no checks).
fn variants_run<R: Runtime>(client: &ComputeClient<R>) {
    SWEEP.store(true, std::sync::atomic::Ordering::Relaxed);
    for (n, k) in [(128256usize, 4096usize), (4096, 4096), (4096, 14336)] {
        let layer = layer4(client, n, k, FourBitType::Nf4, false);
        let bytes = q4_bytes(n, k, false) + 2 * (n + k);
        let mut all = vec![("default".to_string(), GemvConfig::default_for(client, 1, n))];
        all.extend(gemv_variants(client));
        for (name, config) in all {
            let t = bench_gemv4(client, &layer, FourBitType::Nf4, 1, config, false);
            let gbps = bytes as f64 / (t.per_call_us * 1e3);
            println!(
                "variant nf4 [{n}x{k}] m=1 {name}: {:.2} us ({:.1} us synchronized), {gbps:.0} GB/s",
                t.per_call_us, t.single_us
            );
        }
    }
}

/// `--dense [--sweep]`: the dense GEMV's checks and timings only (with `--sweep`, of every
/// launch variant too).
fn dense_run<R: Runtime>(client: &ComputeClient<R>, sweep: bool) {
    let mut checks = Checks {
        results: Vec::new(),
        failed: 0,
    };
    check_dense(client, &mut checks, &mut new_rng(), sweep);
    println!(
        "checks: {} run, {} failed",
        checks.results.len(),
        checks.failed
    );
    bench_dense(client, false, sweep);
    if checks.failed > 0 {
        std::process::exit(3);
    }
}

/// `--ncu`: each kernel of interest launched twice (the first compiles it) at a large shape.
fn ncu_run<R: Runtime>(client: &ComputeClient<R>) {
    for (n, k, m) in [
        (128256usize, 4096usize, 1usize),
        (4096, 4096, 1),
        (4096, 14336, 16),
    ] {
        let w = random_q4(client, n, k, FourBitType::Nf4, false, 12);
        let x = fill_normal(client, m * k, FloatDtype::F16, 13);
        let out = client.empty(m * n * 2);
        for _ in 0..2 {
            w.gemv_into(
                client,
                &x,
                m,
                FloatDtype::F16,
                None,
                &out,
                GemvConfig::default_for(client, m, n),
            )
            .expect("gemv");
        }
        sync(client);
    }
    let (n, k) = (128256usize, 4096usize);
    let scb: Vec<f32> = (0..n).map(|j| 0.02 + (j % 7) as f32 * 0.003).collect();
    let layer = DeviceInt8 {
        weight: fill_words(client, n * k / 4, 300),
        scb: gpu::upload_as(client, &scb, FloatDtype::F32),
        rows: n,
        cols: k,
    };
    let x = fill_normal(client, k, FloatDtype::F16, 14);
    let out = client.empty(n * 2);
    for _ in 0..2 {
        layer
            .linear_into(
                client,
                &x,
                1,
                FloatDtype::F16,
                None,
                6.0,
                &out,
                Int8Config::default_for(client, 1, n),
            )
            .expect("int8");
    }
    sync(client);
    // Last: the profiler once failed on the large f32 dequantization.
    let q = random_q4(client, 8192, 8192, FourBitType::Nf4, false, 11);
    for dtype in [FloatDtype::F16, FloatDtype::F32] {
        let o = client.empty(8192 * 8192 * dtype.size());
        for _ in 0..2 {
            q.dequantize_into(client, &o, dtype).expect("dequantize");
        }
        sync(client);
    }
    println!("ncu launches done");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    #[cfg(feature = "cuda")]
    if args
        .iter()
        .any(|a| a == "--variants" || a == "--ncu" || a == "--dense")
    {
        use cubecl::cuda::{CudaDevice, CudaRuntime};
        let client = CudaRuntime::client(&CudaDevice::new(0));
        if args.iter().any(|a| a == "--ncu") {
            ncu_run(&client);
        } else if args.iter().any(|a| a == "--dense") {
            dense_run(&client, args.iter().any(|a| a == "--sweep"));
        } else {
            variants_run(&client);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    SWEEP.store(
        args.iter().any(|a| a == "--sweep"),
        std::sync::atomic::Ordering::Relaxed,
    );
    SMALL.store(
        args.iter().any(|a| a == "--small"),
        std::sync::atomic::Ordering::Relaxed,
    );
    let out_path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "kiln_gpu_bench.json".into());
    #[cfg(feature = "wgpu")]
    if args.iter().any(|a| a == "--wgpu") {
        use cubecl::wgpu::{WgpuDevice, WgpuRuntime};
        let device = WgpuDevice::default();
        let client = WgpuRuntime::client(&device);
        run::<WgpuRuntime, burn::backend::Wgpu>(client, &device, "Wgpu", quick, &out_path);
        return;
    }
    #[cfg(feature = "cuda")]
    {
        use cubecl::cuda::{CudaDevice, CudaRuntime};
        let device = CudaDevice::new(0);
        let client = CudaRuntime::client(&device);
        run::<CudaRuntime, burn::backend::Cuda>(client, &device, "Cuda", quick, &out_path);
        return;
    }
    #[allow(unreachable_code)]
    {
        eprintln!("gpu_bench: build with --features cuda (or wgpu and pass --wgpu)");
        std::process::exit(2);
    }
}
