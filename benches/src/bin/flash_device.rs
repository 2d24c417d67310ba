//! kiln's flash attention kernels on a CUDA GPU: a correctness check against an f64 reference,
//! then timings of prefill and decoding, written as JSON.
//!
//! `flash_device [--out FILE] [--quick]` (built with `--features cuda`). Every check prints
//! PASS or FAIL with its largest errors; a case that panics (a kernel that fails to compile,
//! for instance) is reported and the run goes on. Timings: warm-up, then the median of several
//! batches of calls between device synchronizations; the last output of every setting is read
//! back and checked to be finite.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("flash_device needs the `cuda` feature: cargo build -p kiln-benches --features cuda");
    std::process::exit(2);
}

#[cfg(feature = "cuda")]
fn main() {
    device::main();
}

#[cfg(feature = "cuda")]
mod device {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Instant;

    use burn::backend::Cuda;
    use burn::backend::cuda::CudaDevice;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Distribution, Tensor, TensorData};
    use cubecl::config::cache::CacheConfig;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use kiln_attention::{FlashKernel, FlashParams, flash_attention, flash_attention_varlen};
    use serde_json::{Value, json};

    type B = Cuda;

    /// SplitMix64 with Box-Muller normals: reproducible inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normals(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let u = self.unit().max(1e-12);
                    let v = self.unit();
                    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
                })
                .collect()
        }
    }

    /// One attention problem for the check.
    #[derive(Debug, Clone)]
    struct Check {
        batch: usize,
        q_heads: usize,
        kv_heads: usize,
        q_len: usize,
        k_len: usize,
        d: usize,
        params: FlashParams,
        /// Packed (varlen) layout with these query/key lengths instead of the padded one.
        varlen: Option<(Vec<usize>, Vec<usize>)>,
    }

    fn key_range(p: &FlashParams, i: usize, q_len: usize, k_len: usize) -> (usize, usize) {
        let at = i as i64 + k_len as i64 - q_len as i64;
        let mut lo = 0i64;
        let mut hi = k_len as i64;
        if p.causal {
            hi = hi.min(at + 1);
        }
        if p.window_left >= 0 {
            lo = lo.max(at - p.window_left);
        }
        if p.window_right >= 0 {
            hi = hi.min(at + p.window_right + 1);
        }
        (lo.max(0) as usize, hi.max(lo).max(0) as usize)
    }

    /// f64 attention of one row; `key(j)` is the offset of key/value `j`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        p: &FlashParams,
        d: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        keys: std::ops::Range<usize>,
        key: impl Fn(usize) -> usize,
        out: &mut [f64],
    ) {
        out.iter_mut().for_each(|o| *o = 0.0);
        if keys.is_empty() {
            return;
        }
        let scale = p.scale.unwrap_or(1.0 / (d as f64).sqrt());
        let s: Vec<f64> = keys
            .clone()
            .map(|j| {
                let dot: f64 = (0..d).map(|c| q[c] as f64 * k[key(j) + c] as f64).sum();
                let x = dot * scale;
                if p.softcap > 0.0 {
                    p.softcap * (x / p.softcap).tanh()
                } else {
                    x
                }
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let total: f64 = w.iter().sum();
        for (j, wj) in keys.zip(w) {
            for c in 0..d {
                out[c] += wj / total * v[key(j) + c] as f64;
            }
        }
    }

    fn upload<const D: usize>(
        x: &[f32],
        shape: [usize; D],
        dtype: DType,
        dev: &CudaDevice,
    ) -> Tensor<B, D> {
        Tensor::<B, D>::from_data(TensorData::new(x.to_vec(), shape), dev).cast(dtype)
    }

    fn download<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.cast(DType::F32)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 data")
    }

    /// Runs one check; returns (max abs error, max error relative to the largest |reference|).
    fn run_check(
        c: &Check,
        kernel: FlashKernel,
        dtype: DType,
        dev: &CudaDevice,
        rng: &mut Rng,
    ) -> (f64, f64) {
        let params = FlashParams {
            kernel,
            ..c.params.clone()
        };
        let d = c.d;
        let group = c.q_heads / c.kv_heads;
        let (got, want) = match &c.varlen {
            None => {
                let qn = c.batch * c.q_heads * c.q_len * d;
                let kn = c.batch * c.kv_heads * c.k_len * d;
                let q = upload(
                    &rng.normals(qn),
                    [c.batch, c.q_heads, c.q_len, d],
                    dtype,
                    dev,
                );
                let k = upload(
                    &rng.normals(kn),
                    [c.batch, c.kv_heads, c.k_len, d],
                    dtype,
                    dev,
                );
                let v = upload(
                    &rng.normals(kn),
                    [c.batch, c.kv_heads, c.k_len, d],
                    dtype,
                    dev,
                );
                let (qh, kh, vh) = (
                    download(q.clone()),
                    download(k.clone()),
                    download(v.clone()),
                );
                let out = flash_attention(q, k, v, &params).expect("flash_attention");
                let mut want = vec![0.0f64; qn];
                for b in 0..c.batch {
                    let keys = params.key_lens.as_ref().map_or(c.k_len, |l| l[b]);
                    for h in 0..c.q_heads {
                        for i in 0..c.q_len {
                            let (lo, hi) = key_range(&params, i, c.q_len, keys);
                            let qo = ((b * c.q_heads + h) * c.q_len + i) * d;
                            let base = (b * c.kv_heads + h / group) * c.k_len * d;
                            attend(
                                &params,
                                d,
                                &qh[qo..qo + d],
                                &kh,
                                &vh,
                                lo..hi,
                                |j| base + j * d,
                                &mut want[qo..qo + d],
                            );
                        }
                    }
                }
                (download(out), want)
            }
            Some((ql, kl)) => {
                let cu = |l: &[usize]| {
                    let mut c = vec![0];
                    l.iter().for_each(|n| c.push(c[c.len() - 1] + n));
                    c
                };
                let (cq, ck) = (cu(ql), cu(kl));
                let (tq, tk) = (cq[ql.len()], ck[kl.len()]);
                let q = upload(
                    &rng.normals(tq * c.q_heads * d),
                    [tq, c.q_heads, d],
                    dtype,
                    dev,
                );
                let k = upload(
                    &rng.normals(tk * c.kv_heads * d),
                    [tk, c.kv_heads, d],
                    dtype,
                    dev,
                );
                let v = upload(
                    &rng.normals(tk * c.kv_heads * d),
                    [tk, c.kv_heads, d],
                    dtype,
                    dev,
                );
                let (qh, kh, vh) = (
                    download(q.clone()),
                    download(k.clone()),
                    download(v.clone()),
                );
                let out = flash_attention_varlen(q, k, v, &cq, &ck, &params).expect("varlen");
                let mut want = vec![0.0f64; tq * c.q_heads * d];
                for s in 0..ql.len() {
                    for h in 0..c.q_heads {
                        for i in 0..ql[s] {
                            let (lo, hi) = key_range(&params, i, ql[s], kl[s]);
                            let qo = ((cq[s] + i) * c.q_heads + h) * d;
                            let (k0, kvh, kvs) = (ck[s], h / group, c.kv_heads);
                            attend(
                                &params,
                                d,
                                &qh[qo..qo + d],
                                &kh,
                                &vh,
                                lo..hi,
                                |j| ((k0 + j) * kvs + kvh) * d,
                                &mut want[qo..qo + d],
                            );
                        }
                    }
                }
                (download(out), want)
            }
        };
        let scale = want.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        let mut abs = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            let e = if g.is_finite() {
                (*g as f64 - w).abs()
            } else {
                f64::INFINITY
            };
            abs = abs.max(e);
        }
        (abs, abs / scale)
    }

    fn checks() -> Vec<Check> {
        let base = FlashParams::default();
        let mk = |batch, q_heads, kv_heads, q_len, k_len, d, params: FlashParams| Check {
            batch,
            q_heads,
            kv_heads,
            q_len,
            k_len,
            d,
            params,
            varlen: None,
        };
        let causal = FlashParams::causal();
        let masked = FlashParams {
            causal: true,
            window_left: 77,
            softcap: 30.0,
            key_lens: Some(vec![300, 211]),
            ..base.clone()
        };
        let mut out = vec![];
        for d in [64, 128, 256] {
            out.push(mk(1, 8, 2, 300, 300, d, base.clone()));
            out.push(mk(2, 4, 1, 257, 300, d, causal.clone()));
            out.push(mk(2, 8, 2, 190, 300, d, masked.clone()));
        }
        // Decoding: one and four queries against long caches (split-KV), GQA 4:1.
        for q_len in [1, 4] {
            out.push(mk(2, 32, 8, q_len, 3000, 128, causal.clone()));
            out.push(mk(
                1,
                32,
                8,
                q_len,
                5000,
                128,
                FlashParams {
                    key_lens: Some(vec![4321]),
                    ..causal.clone()
                },
            ));
        }
        // Packed sequences of different lengths.
        out.push(Check {
            varlen: Some((vec![1, 130, 77, 300], vec![50, 130, 200, 300])),
            ..mk(4, 8, 2, 0, 0, 128, causal.clone())
        });
        out
    }

    /// Median seconds per call of `f`: `reps` batches of `per` calls between synchronizations.
    fn time(
        dev: &CudaDevice,
        per: usize,
        reps: usize,
        mut f: impl FnMut() -> Tensor<B, 4>,
    ) -> (f64, Tensor<B, 4>) {
        let mut last = f();
        B::sync(dev).expect("sync");
        let _ = f();
        B::sync(dev).expect("sync");
        let mut times = vec![];
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..per {
                last = f();
            }
            B::sync(dev).expect("sync");
            times.push(t.elapsed().as_secs_f64() / per as f64);
        }
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], last)
    }

    /// Visible (query, key) pairs of one head: `s` queries and keys, causal, left window.
    fn pairs(s: usize, causal: bool, window: i64) -> f64 {
        if !causal {
            return (s * s) as f64;
        }
        (0..s)
            .map(|i| {
                if window >= 0 {
                    (i as i64).min(window) as usize + 1
                } else {
                    i + 1
                }
            })
            .sum::<usize>() as f64
    }

    fn dtype_name(d: DType) -> &'static str {
        match d {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            _ => "f32",
        }
    }

    /// Runs every check on both kernels; returns the report entries and the failures per kernel.
    fn run_checks(dev: &CudaDevice, kernels: &[FlashKernel]) -> (Vec<Value>, usize, usize) {
        let mut rng = Rng(0x5eed);
        let mut entries = vec![];
        let (mut tc_fail, mut portable_fail) = (0, 0);
        println!(
            "== correctness (f64 reference; bound: 1e-2 (f16), 2e-2 (bf16) of the largest |reference|) =="
        );
        for &kernel in kernels {
            for dtype in [DType::F16, DType::BF16] {
                for c in checks() {
                    let label = format!(
                        "{} {:?} b{} h{}/{} q{} k{} d{} causal={} window={} softcap={} key_lens={:?} varlen={}",
                        dtype_name(dtype),
                        kernel,
                        c.batch,
                        c.q_heads,
                        c.kv_heads,
                        c.q_len,
                        c.k_len,
                        c.d,
                        c.params.causal,
                        c.params.window_left,
                        c.params.softcap,
                        c.params.key_lens,
                        c.varlen.is_some()
                    );
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        run_check(&c, kernel, dtype, dev, &mut rng)
                    }));
                    let (pass, entry) = match r {
                        Ok((abs, rel)) => {
                            let bound = if dtype == DType::BF16 { 2e-2 } else { 1e-2 };
                            let pass = rel <= bound;
                            println!(
                                "{} {label}: max abs {abs:.3e}, max rel {rel:.3e}",
                                if pass { "PASS" } else { "FAIL" }
                            );
                            (
                                pass,
                                json!({"case": label, "pass": pass, "max_abs": abs, "max_rel": rel}),
                            )
                        }
                        Err(e) => {
                            let msg = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            println!("FAIL {label}: panicked: {}", &msg[..msg.len().min(4000)]);
                            (false, json!({"case": label, "pass": false, "panic": msg}))
                        }
                    };
                    if !pass {
                        if kernel != FlashKernel::Portable {
                            tc_fail += 1;
                        } else {
                            portable_fail += 1;
                        }
                    }
                    entries.push(entry);
                }
            }
        }
        println!("correctness failures: tensor-core {tc_fail}, portable {portable_fail}");
        (entries, tc_fail, portable_fail)
    }

    /// Runs the checks in a child process (a kernel fault there cannot poison this process's
    /// CUDA context), with a time limit.
    fn checks_in_child(out_path: &str, pipelined: bool) -> (Value, bool) {
        let checks_path = if pipelined {
            format!("{out_path}.checks-pipelined.json")
        } else {
            format!("{out_path}.checks.json")
        };
        let _ = std::fs::remove_file(&checks_path);
        let exe = std::env::current_exe().expect("own path");
        let child = std::process::Command::new(exe)
            .args(["--checks-only", "--out", &checks_path])
            .args(pipelined.then_some("--pipelined"))
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return (json!({"error": format!("spawn: {e}")}), false),
        };
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed().as_secs() > 300 => {
                    let _ = child.kill();
                    break None;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(200)),
                Err(_) => break None,
            }
        };
        let report: Value = std::fs::read_to_string(&checks_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| json!({"error": format!("the check process ended with {status:?} and left no report")}));
        let tc_ok = report["tensor_core_failures"].as_u64() == Some(0);
        (report, tc_ok)
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let out_path = args
            .iter()
            .position(|a| a == "--out")
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| "flash_kiln.json".into());
        let quick = args.iter().any(|a| a == "--quick");
        // One kernel cache on disk for the check process and this one: each compiles once.
        let cache = std::env::temp_dir().join("kiln-flash-device-kernels");
        let mut config = CubeClRuntimeConfig::default();
        config.compilation.cache = Some(CacheConfig::File(cache));
        CubeClRuntimeConfig::set(config);
        let dev = CudaDevice::default();
        if args.iter().any(|a| a == "--checks-only") {
            let kernels: &[FlashKernel] = if args.iter().any(|a| a == "--pipelined") {
                &[FlashKernel::TensorCorePipelined]
            } else {
                &[FlashKernel::Portable, FlashKernel::TensorCore]
            };
            let (entries, tc, portable) = run_checks(&dev, kernels);
            let report = json!({"checks": entries, "tensor_core_failures": tc, "portable_failures": portable});
            std::fs::write(
                &out_path,
                serde_json::to_string_pretty(&report).expect("json"),
            )
            .expect("write the checks");
            std::process::exit(i32::from(tc + portable > 0));
        }
        let (mut checks, tc_ok) = checks_in_child(&out_path, false);
        // The pipelined variant (asynchronous copies) is checked apart: a fault or hang there
        // leaves the other kernels' results standing.
        let (pipe_checks, pipe_ok) = if tc_ok {
            checks_in_child(&out_path, true)
        } else {
            (
                json!({"skipped": "the tensor-core kernel failed its checks"}),
                false,
            )
        };
        if let (Some(all), Some(more)) = (
            checks["checks"].as_array().cloned(),
            pipe_checks["checks"].as_array(),
        ) {
            checks["checks"] = Value::from([all, more.clone()].concat());
        }
        println!("pipelined tensor-core kernel passed: {pipe_ok}");
        // Time the tensor-core kernel (what `Auto` picks on this GPU) only if it passed.
        let kernel = if tc_ok {
            FlashKernel::Auto
        } else {
            FlashKernel::Portable
        };
        println!("timing kernel: {kernel:?}");
        let mut report = json!({"tool": "kiln flash_device", "timed_kernel": format!("{kernel:?}"),
                                "pipelined_timed": pipe_ok,
                                "checks": checks["checks"].clone(), "check_report": checks,
                                "pipelined_check_report": pipe_checks,
                                "prefill": [], "decode": []});

        println!("== prefill (batch * seq = 16k tokens) ==");
        let seqs: &[usize] = if quick {
            &[1024, 8192]
        } else {
            &[512, 1024, 2048, 4096, 8192, 16384]
        };
        let mut settings: Vec<(DType, usize, bool, i64, f64)> = vec![];
        for dtype in [DType::F16, DType::BF16] {
            for d in [64, 128, 256] {
                for causal in [false, true] {
                    settings.push((dtype, d, causal, -1, 0.0));
                }
            }
            settings.push((dtype, 128, true, 4096, 0.0));
            settings.push((dtype, 128, true, -1, 50.0));
        }
        for &(dtype, d, causal, window, softcap) in &settings {
            let heads = if d == 64 { 32 } else { 16 };
            for &s in seqs {
                let batch = 16384 / s;
                let params = FlashParams {
                    causal,
                    window_left: window,
                    softcap,
                    kernel,
                    ..FlashParams::default()
                };
                let pipelined = FlashParams {
                    kernel: FlashKernel::TensorCorePipelined,
                    ..params.clone()
                };
                let with_pipelined = pipe_ok && d == 128;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let shape = [batch, heads, s, d];
                    let q = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &dev)
                        .cast(dtype);
                    let k = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &dev)
                        .cast(dtype);
                    let v = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &dev)
                        .cast(dtype);
                    let per = if s >= 4096 { 3 } else { 5 };
                    let run = |p: &FlashParams| {
                        let (secs, last) = time(&dev, per, 5, || {
                            flash_attention(q.clone(), k.clone(), v.clone(), p).expect("flash")
                        });
                        let finite = download(last.slice([0..1, 0..1]))
                            .iter()
                            .all(|x| x.is_finite());
                        (secs, finite)
                    };
                    let main = run(&params);
                    let pipe = with_pipelined.then(|| run(&pipelined));
                    (main, pipe)
                }));
                let flops = 4.0 * (batch * heads * d) as f64 * pairs(s, causal, window);
                let entry = match r {
                    Ok(((secs, finite), pipe)) => {
                        let tflops = flops / secs / 1e12;
                        let pipe_text = pipe.map_or(String::new(), |(ps, pf)| {
                            format!(
                                "; pipelined {:.3} ms, {:.1} TFLOP/s{}",
                                ps * 1e3,
                                flops / ps / 1e12,
                                if pf { "" } else { " (NON-FINITE OUTPUT)" }
                            )
                        });
                        println!(
                            "{} d{d} h{heads} b{batch} s{s} causal={causal} window={window} softcap={softcap}: {:.3} ms, {tflops:.1} TFLOP/s{}{pipe_text}",
                            dtype_name(dtype),
                            secs * 1e3,
                            if finite { "" } else { " (NON-FINITE OUTPUT)" }
                        );
                        let mut e = json!({"dtype": dtype_name(dtype), "head_dim": d, "heads": heads, "batch": batch, "seq": s,
                               "causal": causal, "window": window, "softcap": softcap, "ms": secs * 1e3,
                               "tflops": tflops, "finite": finite});
                        if let Some((ps, pf)) = pipe {
                            e["pipelined_ms"] = Value::from(ps * 1e3);
                            e["pipelined_tflops"] = Value::from(flops / ps / 1e12);
                            e["pipelined_finite"] = Value::from(pf);
                        }
                        e
                    }
                    Err(_) => {
                        println!(
                            "{} d{d} s{s} causal={causal} window={window} softcap={softcap}: panicked",
                            dtype_name(dtype)
                        );
                        json!({"dtype": dtype_name(dtype), "head_dim": d, "heads": heads, "batch": batch, "seq": s,
                               "causal": causal, "window": window, "softcap": softcap, "error": "panicked"})
                    }
                };
                report["prefill"].as_array_mut().expect("array").push(entry);
            }
        }

        println!("== decode (q_len 1, GQA 32:8, head dim 128) ==");
        let kvs: &[usize] = if quick {
            &[1024, 32768]
        } else {
            &[1024, 2048, 4096, 8192, 16384, 32768]
        };
        for dtype in [DType::F16, DType::BF16] {
            for batch in [1, 4, 16] {
                for &kv in kvs {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        let q = Tensor::<B, 4>::random(
                            [batch, 32, 1, 128],
                            Distribution::Normal(0.0, 1.0),
                            &dev,
                        )
                        .cast(dtype);
                        let k = Tensor::<B, 4>::random(
                            [batch, 8, kv, 128],
                            Distribution::Normal(0.0, 1.0),
                            &dev,
                        )
                        .cast(dtype);
                        let v = Tensor::<B, 4>::random(
                            [batch, 8, kv, 128],
                            Distribution::Normal(0.0, 1.0),
                            &dev,
                        )
                        .cast(dtype);
                        let run = |kernel| {
                            let params = FlashParams {
                                kernel,
                                ..FlashParams::causal()
                            };
                            let (secs, last) = time(&dev, 20, 7, || {
                                flash_attention(q.clone(), k.clone(), v.clone(), &params)
                                    .expect("flash")
                            });
                            let finite = download(last.slice([0..1, 0..1]))
                                .iter()
                                .all(|x| x.is_finite());
                            (secs, finite)
                        };
                        let main = run(kernel);
                        let pipe = pipe_ok.then(|| run(FlashKernel::TensorCorePipelined));
                        (main, pipe)
                    }));
                    let bytes = (2 * batch * 8 * kv * 128 * 2) as f64;
                    let entry = match r {
                        Ok(((secs, finite), pipe)) => {
                            let gbs = bytes / secs / 1e9;
                            let pipe_text = pipe.map_or(String::new(), |(ps, _)| {
                                format!(
                                    "; pipelined {:.1} us, {:.0} GB/s",
                                    ps * 1e6,
                                    bytes / ps / 1e9
                                )
                            });
                            println!(
                                "{} b{batch} kv{kv}: {:.1} us, {gbs:.0} GB/s of K/V{}{pipe_text}",
                                dtype_name(dtype),
                                secs * 1e6,
                                if finite { "" } else { " (NON-FINITE OUTPUT)" }
                            );
                            let mut e = json!({"dtype": dtype_name(dtype), "batch": batch, "kv": kv, "us": secs * 1e6, "gbs": gbs, "finite": finite});
                            if let Some((ps, pf)) = pipe {
                                e["pipelined_us"] = Value::from(ps * 1e6);
                                e["pipelined_gbs"] = Value::from(bytes / ps / 1e9);
                                e["pipelined_finite"] = Value::from(pf);
                            }
                            e
                        }
                        Err(_) => {
                            println!("{} b{batch} kv{kv}: panicked", dtype_name(dtype));
                            json!({"dtype": dtype_name(dtype), "batch": batch, "kv": kv, "error": "panicked"})
                        }
                    };
                    report["decode"].as_array_mut().expect("array").push(entry);
                }
            }
        }
        std::fs::write(
            &out_path,
            serde_json::to_string_pretty(&report).expect("json"),
        )
        .expect("write the report");
        println!("wrote {out_path}");
    }
}
