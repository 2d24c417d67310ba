//! The GPU section of the bench report, from the folder that the pack's `run.sh` writes
//! (`cargo xtask bench --gpu-results OUT`, or the suite run on this machine).
//!
//! Reads `run.txt` (card, driver, versions, date, the pack's commit), `status.txt` (each step's
//! exit status), `quant/kiln.json` (`gpu_bench`) with `quant/torch_bnb.json`
//! (`bench_torch_bnb.py`), and `flash/flash_kiln.json` (`flash_device`) with
//! `flash/flash_torch.json` (`flash_torch.py`); a folder with these files at its top (as
//! `benches/results/` keeps them, with `gpu.txt` for the card) reads as well. The tables and
//! ratios are those of `benches/gpu/merge_report.py` and `benches/scripts/flash_merge.py`:
//! speedups of kiln over torch f16 and bitsandbytes (reference time / kiln time), and kiln /
//! torch SDPA throughput. Two plots: GEMV time by shape and format, attention TFLOP/s by
//! sequence length.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::svg::{self, Bar, Line};

/// Speedup targets over torch f16 at m = 1, as `merge_report.py` has them.
const TARGETS: &[(&str, f64)] = &[("nf4", 2.5), ("nf4-dq", 2.5), ("int8", 1.6)];

/// The quantized formats: kiln's kind, bitsandbytes' kind, table title, short label.
const FORMATS: &[(&str, &str, &str, &str)] = &[
    ("nf4", "bnb-nf4", "NF4", "NF4"),
    ("nf4-dq", "bnb-nf4-dq", "NF4 + double quant", "NF4+DQ"),
    ("fp4", "bnb-fp4", "FP4", "FP4"),
    ("int8", "bnb-int8", "LLM.int8 (threshold 6.0)", "int8"),
];

/// The plots, in the report's folder.
pub const GEMV_SVG: &str = "gpu_gemv.svg";
pub const ATTENTION_SVG: &str = "gpu_attention.svg";

/// Everything the GPU section shows.
#[derive(Debug)]
pub struct GpuResults {
    /// The folder read.
    pub source: PathBuf,
    /// `run.txt`'s `key=value`s, completed from `gpu.txt` and the references' JSON.
    pub meta: BTreeMap<String, String>,
    /// `status.txt`: (step, status).
    pub steps: Vec<(String, String)>,
    pub quant: Option<Quant>,
    pub flash: Option<Flash>,
    pub notes: Vec<String>,
}

/// The quant suite: `gpu_bench` against `bench_torch_bnb.py`.
#[derive(Debug, Default)]
pub struct Quant {
    runtime: Option<String>,
    checks_total: u64,
    checks_failed: u64,
    /// The first failed checks, one line each.
    failures: Vec<String>,
    /// Device copy bandwidth: kiln, torch.
    copy_gbps: (Option<f64>, Option<f64>),
    launch_us: Option<f64>,
    dequantize: Vec<Dequant>,
    /// (what, kiln us, bnb us).
    quantize: Vec<(String, f64, Option<f64>)>,
    gemv: Vec<Gemv>,
    variants: Vec<Variant>,
}

#[derive(Debug)]
struct Dequant {
    label: String,
    quant: String,
    dq: bool,
    dtype: String,
    shape: (u64, u64),
    kiln_us: f64,
    kiln_tbps: Option<f64>,
    bnb_us: Option<f64>,
    bnb_tbps: Option<f64>,
}

#[derive(Debug)]
struct Gemv {
    kind: String,
    shape: (u64, u64),
    m: u64,
    kiln_us: f64,
    kiln_gbps: Option<f64>,
    torch_us: Option<f64>,
    bnb_us: Option<f64>,
}

#[derive(Debug)]
struct Variant {
    shape: (u64, u64),
    variant: String,
    us: f64,
    gbps: Option<f64>,
}

/// The flash suite: `flash_device` against `flash_torch.py`.
#[derive(Debug, Default)]
pub struct Flash {
    timed_kernel: Option<String>,
    checks: Vec<FlashCheck>,
    /// Why there are no checks, when the check process left an error.
    checks_error: Option<String>,
    torch: Option<String>,
    prefill: Vec<Prefill>,
    decode: Vec<Decode>,
}

#[derive(Debug)]
struct FlashCheck {
    case: String,
    pass: bool,
    max_rel: Option<f64>,
    panic: Option<String>,
}

#[derive(Debug)]
struct Prefill {
    dtype: String,
    head_dim: i64,
    heads: i64,
    batch: i64,
    seq: i64,
    causal: bool,
    window: i64,
    softcap: f64,
    ms: Option<f64>,
    tflops: Option<f64>,
    finite: bool,
    pipelined_tflops: Option<f64>,
    pipelined_finite: bool,
    error: Option<String>,
    torch_impl: Option<String>,
    torch_ms: Option<f64>,
    torch_tflops: Option<f64>,
    torch_sdpa_mask_tflops: Option<f64>,
}

#[derive(Debug)]
struct Decode {
    dtype: String,
    batch: i64,
    kv: i64,
    us: Option<f64>,
    gbs: Option<f64>,
    finite: bool,
    pipelined_gbs: Option<f64>,
    error: Option<String>,
    torch_us: Option<f64>,
    torch_gbs: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Reading JSON with errors that name the file and the key.

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn field<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v Value> {
    match v.get(key) {
        Some(x) if !x.is_null() => Ok(x),
        _ => bail!("{at}: no key `{key}`"),
    }
}

fn num(v: &Value, key: &str, at: &str) -> Result<f64> {
    let x = field(v, key, at)?;
    x.as_f64()
        .with_context(|| format!("{at}: `{key}` is not a number ({})", brief(x)))
}

fn int(v: &Value, key: &str, at: &str) -> Result<i64> {
    let x = field(v, key, at)?;
    x.as_i64()
        .with_context(|| format!("{at}: `{key}` is not an integer ({})", brief(x)))
}

fn uint(v: &Value, key: &str, at: &str) -> Result<u64> {
    let x = field(v, key, at)?;
    x.as_u64()
        .with_context(|| format!("{at}: `{key}` is not a count ({})", brief(x)))
}

fn text(v: &Value, key: &str, at: &str) -> Result<String> {
    let x = field(v, key, at)?;
    x.as_str()
        .map(str::to_owned)
        .with_context(|| format!("{at}: `{key}` is not a string ({})", brief(x)))
}

fn boolean(v: &Value, key: &str, at: &str) -> Result<bool> {
    let x = field(v, key, at)?;
    x.as_bool()
        .with_context(|| format!("{at}: `{key}` is not true or false ({})", brief(x)))
}

/// An array under `key`; a missing (or null) key reads as empty when `required` is false.
fn array<'v>(v: &'v Value, key: &str, at: &str, required: bool) -> Result<&'v [Value]> {
    match v.get(key) {
        Some(Value::Array(a)) => Ok(a),
        None | Some(Value::Null) if !required => Ok(&[]),
        None | Some(Value::Null) => bail!("{at}: no key `{key}`"),
        Some(x) => bail!("{at}: `{key}` is not a list ({})", brief(x)),
    }
}

fn shape(v: &Value, key: &str, at: &str) -> Result<(u64, u64)> {
    let x = field(v, key, at)?;
    match x.as_array().map(Vec::as_slice) {
        Some([a, b]) => match (a.as_u64(), b.as_u64()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => bail!("{at}: `{key}` is not [out, in] ({})", brief(x)),
        },
        _ => bail!("{at}: `{key}` is not [out, in] ({})", brief(x)),
    }
}

fn opt_num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The object under `key`, or an empty one.
fn object<'v>(v: &'v Value, key: &str) -> &'v Value {
    static EMPTY: Value = Value::Null;
    v.get(key).filter(|x| x.is_object()).unwrap_or(&EMPTY)
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// `dir/sub/name`, else `dir/name`, whichever exists.
fn locate(dir: &Path, sub: &str, name: &str) -> Option<PathBuf> {
    [dir.join(sub).join(name), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

/// `name, driver, memory` from `nvidia-smi --query-gpu=name,driver_version,memory.total
/// --format=csv` (with or without its header).
fn gpu_csv(text: &str) -> Option<(String, String, String)> {
    text.lines()
        .filter(|l| !l.starts_with("name,"))
        .find_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            (f.len() == 3 && f.iter().all(|s| !s.is_empty()))
                .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
}

fn describe_status(status: &str) -> String {
    match status {
        "124" | "137" => format!("timed out (exit {status})"),
        s if s.parse::<i32>().is_ok() => format!("exit {s}"),
        s => s.to_owned(),
    }
}

/// Reads the results folder `dir`.
pub fn load(dir: &Path) -> Result<GpuResults> {
    if !dir.is_dir() {
        bail!(
            "{}: no such folder (give the OUT that the pack's run.sh wrote)",
            dir.display()
        );
    }
    let mut steps = Vec::new();
    if let Ok(t) = std::fs::read_to_string(dir.join("status.txt")) {
        for line in t.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (step, status) = line.split_once(' ').unwrap_or((line, "?"));
            steps.push((step.to_owned(), status.trim().to_owned()));
        }
    }
    let mut meta = std::fs::read_to_string(dir.join("run.txt"))
        .map(|t| key_values(&t))
        .unwrap_or_default();
    if !meta.contains_key("gpu")
        && let Some((name, driver, memory)) = std::fs::read_to_string(dir.join("gpu.txt"))
            .ok()
            .and_then(|t| gpu_csv(&t))
    {
        meta.insert("gpu".into(), name);
        meta.entry("driver".into()).or_insert(driver);
        meta.entry("memory".into()).or_insert(memory);
    }

    let quant_kiln = locate(dir, "quant", "kiln.json");
    let flash_kiln = locate(dir, "flash", "flash_kiln.json");
    let failed: Vec<String> = steps
        .iter()
        .filter(|(_, s)| s != "0")
        .map(|(step, s)| format!("{step}: {}", describe_status(s)))
        .collect();
    if quant_kiln.is_none() && flash_kiln.is_none() {
        bail!(
            "{}: no GPU results (neither quant/kiln.json nor flash/flash_kiln.json){}",
            dir.display(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; steps: {}", failed.join(", "))
            }
        );
    }
    let mut notes: Vec<String> = steps
        .iter()
        .filter(|(_, s)| s != "0")
        .map(|(step, s)| {
            if s.starts_with("skipped") {
                format!("step {step}: {s}.")
            } else {
                format!("step {step} failed: {} (see its log).", describe_status(s))
            }
        })
        .collect();

    let quant = match quant_kiln {
        Some(k) => {
            let r = locate(dir, "quant", "torch_bnb.json");
            if r.is_none() {
                notes.push(
                    "quant suite: no torch_bnb.json, so no torch f16 / bitsandbytes columns."
                        .into(),
                );
            }
            let kiln = read_json(&k)?;
            let reference = r.as_deref().map(read_json).transpose()?;
            if let Some(rv) = &reference {
                let d = object(rv, "device");
                for (key, from) in [
                    ("gpu", "name"),
                    ("driver", "driver"),
                    ("torch", "torch"),
                    ("torch_cuda", "cuda"),
                    ("bitsandbytes", "bitsandbytes"),
                ] {
                    if let Some(v) = opt_text(d, from) {
                        meta.entry(key.into()).or_insert(v);
                    }
                }
            }
            Some(Quant::parse(
                &kiln,
                &k.display().to_string(),
                reference.as_ref(),
                &r.map(|p| p.display().to_string()).unwrap_or_default(),
            )?)
        }
        None => {
            notes.push("quant suite: no kiln.json (not run, or gpu_bench failed).".into());
            None
        }
    };
    let flash = match flash_kiln {
        Some(k) => {
            let t = locate(dir, "flash", "flash_torch.json");
            if t.is_none() {
                notes.push("flash suite: no flash_torch.json, so no torch columns.".into());
            }
            let kiln = read_json(&k)?;
            let torch = t.as_deref().map(read_json).transpose()?;
            if let Some(tv) = &torch {
                for (key, from) in [
                    ("gpu", "device"),
                    ("torch", "torch"),
                    ("torch_cuda", "cuda"),
                ] {
                    if let Some(v) = opt_text(tv, from) {
                        meta.entry(key.into()).or_insert(v);
                    }
                }
            }
            Some(Flash::parse(
                &kiln,
                &k.display().to_string(),
                torch.as_ref(),
                &t.map(|p| p.display().to_string()).unwrap_or_default(),
            )?)
        }
        None => {
            notes.push("flash suite: no flash_kiln.json (not run, or flash_device failed).".into());
            None
        }
    };
    Ok(GpuResults {
        source: dir.to_path_buf(),
        meta,
        steps,
        quant,
        flash,
        notes,
    })
}

impl Quant {
    fn parse(kiln: &Value, kpath: &str, reference: Option<&Value>, rpath: &str) -> Result<Self> {
        let checks = field(kiln, "checks", kpath)?;
        let at = format!("{kpath}: checks");
        let mut q = Quant {
            runtime: opt_text(object(kiln, "device"), "runtime"),
            checks_total: uint(checks, "total", &at)?,
            checks_failed: uint(checks, "failed", &at)?,
            launch_us: opt_num(object(kiln, "launch"), "us"),
            copy_gbps: (opt_num(object(kiln, "copy"), "gbps"), None),
            ..Quant::default()
        };
        for (i, r) in array(checks, "results", &at, false)?.iter().enumerate() {
            let at = format!("{at}.results[{i}]");
            if !boolean(r, "pass", &at)? && q.failures.len() < 20 {
                q.failures.push(format!(
                    "{}: max abs err {} {}",
                    text(r, "name", &at)?,
                    r.get("max_abs_err").map_or("?".into(), Value::to_string),
                    opt_text(r, "detail").unwrap_or_default()
                ));
            }
        }

        // The references, by (kind, shape, m).
        let empty = Value::Null;
        let reference = reference.unwrap_or(&empty);
        let mut linear: HashMap<(String, (u64, u64), u64), f64> = HashMap::new();
        for (i, r) in array(reference, "linear", rpath, false)?.iter().enumerate() {
            let at = format!("{rpath}: linear[{i}]");
            linear.insert(
                (
                    text(r, "kind", &at)?,
                    shape(r, "shape", &at)?,
                    uint(r, "m", &at)?,
                ),
                num(r, "us", &at)?,
            );
        }
        q.copy_gbps.1 = opt_num(object(reference, "copy"), "gbps");
        let mut bnb_dequant: HashMap<(bool, String), (f64, Option<f64>)> = HashMap::new();
        let mut bnb_quantize = None;
        for (i, r) in array(reference, "dequantize", rpath, false)?
            .iter()
            .enumerate()
        {
            let at = format!("{rpath}: dequantize[{i}]");
            match text(r, "kind", &at)?.as_str() {
                "bnb-dequantize" => {
                    bnb_dequant.insert(
                        (boolean(r, "dq", &at)?, text(r, "dtype", &at)?),
                        (num(r, "us", &at)?, opt_num(r, "tbps")),
                    );
                }
                "bnb-quantize" => bnb_quantize = Some(num(r, "us", &at)?),
                _ => {}
            }
        }

        for (i, r) in array(kiln, "dequantize", kpath, false)?.iter().enumerate() {
            let at = format!("{kpath}: dequantize[{i}]");
            let (quant, dq, dtype) = (
                text(r, "quant", &at)?,
                boolean(r, "dq", &at)?,
                text(r, "dtype", &at)?,
            );
            let b = bnb_dequant.get(&(dq, dtype.clone()));
            q.dequantize.push(Dequant {
                label: format!("{quant}{}", if dq { "+DQ" } else { "" }),
                quant,
                dq,
                shape: shape(r, "shape", &at)?,
                kiln_us: num(r, "us", &at)?,
                kiln_tbps: opt_num(r, "tbps"),
                bnb_us: b.map(|b| b.0),
                bnb_tbps: b.and_then(|b| b.1),
                dtype,
            });
        }
        for (i, r) in array(kiln, "quantize", kpath, false)?.iter().enumerate() {
            let at = format!("{kpath}: quantize[{i}]");
            q.quantize.push((
                format!(
                    "quantize {} from {}",
                    text(r, "quant", &at)?,
                    text(r, "dtype", &at)?
                ),
                num(r, "us", &at)?,
                bnb_quantize,
            ));
        }
        for key in ["gemv", "int8"] {
            for (i, r) in array(kiln, key, kpath, true)?.iter().enumerate() {
                let at = format!("{kpath}: {key}[{i}]");
                let kind = text(r, "kind", &at)?;
                let (shape, m) = (shape(r, "shape", &at)?, uint(r, "m", &at)?);
                let bnb_kind = FORMATS
                    .iter()
                    .find(|f| f.0 == kind)
                    .map_or_else(|| format!("bnb-{kind}"), |f| f.1.to_owned());
                q.gemv.push(Gemv {
                    torch_us: linear.get(&("torch-f16".into(), shape, m)).copied(),
                    bnb_us: linear.get(&(bnb_kind, shape, m)).copied(),
                    kind,
                    shape,
                    m,
                    kiln_us: num(r, "us", &at)?,
                    kiln_gbps: opt_num(r, "gbps"),
                });
            }
        }
        for (i, r) in array(kiln, "gemv_variants", kpath, false)?
            .iter()
            .enumerate()
        {
            let at = format!("{kpath}: gemv_variants[{i}]");
            q.variants.push(Variant {
                shape: shape(r, "shape", &at)?,
                variant: text(r, "variant", &at)?,
                us: num(r, "us", &at)?,
                gbps: opt_num(r, "gbps"),
            });
        }
        Ok(q)
    }
}

type PrefillKey = (String, i64, bool, i64, u64, i64);

fn prefill_key(e: &Value, at: &str) -> Result<PrefillKey> {
    Ok((
        text(e, "dtype", at)?,
        int(e, "head_dim", at)?,
        boolean(e, "causal", at)?,
        int(e, "window", at)?,
        num(e, "softcap", at)?.to_bits(),
        int(e, "seq", at)?,
    ))
}

impl Flash {
    fn parse(kiln: &Value, kpath: &str, torch: Option<&Value>, tpath: &str) -> Result<Self> {
        let mut f = Flash {
            timed_kernel: opt_text(kiln, "timed_kernel"),
            checks_error: opt_text(object(kiln, "check_report"), "error"),
            ..Flash::default()
        };
        for (i, c) in array(kiln, "checks", kpath, false)?.iter().enumerate() {
            let at = format!("{kpath}: checks[{i}]");
            f.checks.push(FlashCheck {
                case: text(c, "case", &at)?,
                pass: boolean(c, "pass", &at)?,
                max_rel: opt_num(c, "max_rel"),
                panic: opt_text(c, "panic"),
            });
        }
        let empty = Value::Null;
        let torch = torch.unwrap_or(&empty);
        f.torch = opt_text(torch, "torch");
        let mut tp: HashMap<PrefillKey, &Value> = HashMap::new();
        for (i, e) in array(torch, "prefill", tpath, false)?.iter().enumerate() {
            tp.insert(prefill_key(e, &format!("{tpath}: prefill[{i}]"))?, e);
        }
        let mut td: HashMap<(String, i64, i64), &Value> = HashMap::new();
        for (i, e) in array(torch, "decode", tpath, false)?.iter().enumerate() {
            let at = format!("{tpath}: decode[{i}]");
            td.insert(
                (
                    text(e, "dtype", &at)?,
                    int(e, "batch", &at)?,
                    int(e, "kv", &at)?,
                ),
                e,
            );
        }
        for (i, e) in array(kiln, "prefill", kpath, true)?.iter().enumerate() {
            let at = format!("{kpath}: prefill[{i}]");
            let key = prefill_key(e, &at)?;
            let t = tp.get(&key).copied().unwrap_or(&empty);
            f.prefill.push(Prefill {
                heads: int(e, "heads", &at)?,
                batch: int(e, "batch", &at)?,
                ms: opt_num(e, "ms"),
                tflops: opt_num(e, "tflops"),
                finite: e.get("finite").and_then(Value::as_bool).unwrap_or(true),
                pipelined_tflops: opt_num(e, "pipelined_tflops"),
                pipelined_finite: e
                    .get("pipelined_finite")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                error: opt_text(e, "error"),
                torch_impl: opt_text(t, "impl"),
                torch_ms: opt_num(t, "ms"),
                torch_tflops: opt_num(t, "tflops"),
                torch_sdpa_mask_tflops: opt_num(t, "sdpa_mask_tflops"),
                dtype: key.0,
                head_dim: key.1,
                causal: key.2,
                window: key.3,
                softcap: f64::from_bits(key.4),
                seq: key.5,
            });
        }
        for (i, e) in array(kiln, "decode", kpath, true)?.iter().enumerate() {
            let at = format!("{kpath}: decode[{i}]");
            let (dtype, batch, kv) = (
                text(e, "dtype", &at)?,
                int(e, "batch", &at)?,
                int(e, "kv", &at)?,
            );
            let t = td
                .get(&(dtype.clone(), batch, kv))
                .copied()
                .unwrap_or(&empty);
            f.decode.push(Decode {
                dtype,
                batch,
                kv,
                us: opt_num(e, "us"),
                gbs: opt_num(e, "gbs"),
                finite: e.get("finite").and_then(Value::as_bool).unwrap_or(true),
                pipelined_gbs: opt_num(e, "pipelined_gbs"),
                error: opt_text(e, "error"),
                torch_us: opt_num(t, "us"),
                torch_gbs: opt_num(t, "gbs"),
            });
        }
        Ok(f)
    }

    /// The largest relative error per (dtype, kernel), from the check names.
    fn worst(&self) -> Vec<(String, String, f64)> {
        let mut worst: BTreeMap<(String, String), f64> = BTreeMap::new();
        for c in &self.checks {
            let mut words = c.case.split_whitespace();
            if let (Some(dtype), Some(kernel), Some(rel)) = (words.next(), words.next(), c.max_rel)
            {
                let w = worst
                    .entry((dtype.to_owned(), kernel.to_owned()))
                    .or_insert(0.0);
                *w = w.max(rel);
            }
        }
        worst.into_iter().map(|((d, k), v)| (d, k, v)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// `a / b` when both are positive and finite.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// `1.23e-04`, as Python's `{:.2e}` writes it.
fn sci(v: f64) -> String {
    let s = format!("{v:.2e}");
    match s.split_once('e').map(|(m, e)| (m, e.parse::<i32>())) {
        Some((m, Ok(e))) => format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()),
        _ => s,
    }
}

/// Python's `str()` of a bool, as the merge scripts print it.
fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn fmt_x(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v:.2}x"))
}

fn target_of(kind: &str) -> Option<f64> {
    TARGETS.iter().find(|t| t.0 == kind).map(|t| t.1)
}

impl Gemv {
    fn vs_torch(&self) -> Option<f64> {
        ratio(self.torch_us, Some(self.kiln_us))
    }
    fn vs_bnb(&self) -> Option<f64> {
        ratio(self.bnb_us, Some(self.kiln_us))
    }
    /// `ok` or `MISS` against the target over torch f16, at m = 1.
    fn mark(&self) -> Option<&'static str> {
        let target = target_of(&self.kind)?;
        let vs = self.vs_torch()?;
        (self.m == 1).then_some(if vs >= target { "ok" } else { "MISS" })
    }
}

impl Prefill {
    fn ratio(&self) -> Option<f64> {
        ratio(self.tflops, self.torch_tflops)
    }
    fn pipelined_ratio(&self) -> Option<f64> {
        ratio(self.pipelined_tflops, self.torch_tflops)
    }
}

impl GpuResults {
    fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    /// The device's copy bandwidth, measured by the quant suite (kiln's, else torch's).
    fn copy_gbps(&self) -> Option<f64> {
        let q = self.quant.as_ref()?;
        q.copy_gbps.0.or(q.copy_gbps.1).filter(|g| *g > 0.0)
    }

    fn gemv_plot(&self) -> Option<Vec<(String, Vec<Bar>)>> {
        let q = self.quant.as_ref()?;
        let mut shapes: Vec<(u64, u64)> = Vec::new();
        for g in q.gemv.iter().filter(|g| g.m == 1) {
            if !shapes.contains(&g.shape) {
                shapes.push(g.shape);
            }
        }
        let groups: Vec<(String, Vec<Bar>)> = shapes
            .into_iter()
            .map(|shape| {
                let rows: Vec<&Gemv> = q
                    .gemv
                    .iter()
                    .filter(|g| g.m == 1 && g.shape == shape)
                    .collect();
                let mut bars = Vec::new();
                if let Some(t) = rows.iter().find_map(|g| g.torch_us) {
                    bars.push(Bar {
                        label: "torch f16".into(),
                        value: t,
                        color: svg::TORCH,
                    });
                }
                for (kind, _, _, label) in FORMATS {
                    for g in rows.iter().filter(|g| g.kind == *kind) {
                        if let Some(b) = g.bnb_us {
                            bars.push(Bar {
                                label: format!("bnb {label}"),
                                value: b,
                                color: svg::BNB,
                            });
                        }
                        bars.push(Bar {
                            label: format!("kiln {label}"),
                            value: g.kiln_us,
                            color: svg::KILN,
                        });
                    }
                }
                (format!("{} x {} (out x in)", shape.0, shape.1), bars)
            })
            .collect();
        (!groups.is_empty()).then_some(groups)
    }

    fn attention_plot(&self) -> Option<Vec<Line>> {
        let f = self.flash.as_ref()?;
        let plain = |p: &&Prefill| p.dtype == "f16" && p.causal && p.window < 0 && p.softcap == 0.0;
        let mut dims: Vec<i64> = f.prefill.iter().filter(plain).map(|p| p.head_dim).collect();
        dims.sort_unstable();
        dims.dedup();
        let mut lines = Vec::new();
        for (i, &d) in dims.iter().enumerate() {
            let rows: Vec<&Prefill> = f
                .prefill
                .iter()
                .filter(plain)
                .filter(|p| p.head_dim == d)
                .collect();
            let color = svg::COLORS[i % svg::COLORS.len()];
            let series = |pick: &dyn Fn(&Prefill) -> Option<f64>| -> Vec<(f64, f64)> {
                rows.iter()
                    .filter_map(|p| pick(p).map(|v| (p.seq as f64, v)))
                    .collect()
            };
            let kiln = series(&|p| p.tflops.filter(|_| p.finite));
            if !kiln.is_empty() {
                lines.push(Line {
                    label: format!("kiln d{d}"),
                    points: kiln,
                    color,
                    dashed: false,
                });
            }
            let pipelined = series(&|p| p.pipelined_tflops.filter(|_| p.pipelined_finite));
            if !pipelined.is_empty() {
                lines.push(Line {
                    label: format!("kiln pipelined d{d}"),
                    points: pipelined,
                    color: svg::COLORS[(i + dims.len()) % svg::COLORS.len()],
                    dashed: false,
                });
            }
            let torch = series(&|p| p.torch_tflops);
            if !torch.is_empty() {
                lines.push(Line {
                    label: format!("torch SDPA d{d}"),
                    points: torch,
                    color,
                    dashed: true,
                });
            }
        }
        lines
            .iter()
            .any(|l| l.label.starts_with("kiln"))
            .then_some(lines)
    }

    /// The `## GPU` section of `report.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = |k: &str| self.meta(k).unwrap_or("unknown");
        let _ = writeln!(md, "## GPU\n");
        let _ = write!(md, "Card: {}", m("gpu"));
        if let Some(mem) = self.meta("memory") {
            let _ = write!(md, " ({mem})");
        }
        if let Some(n) = self.meta("gpu_count").filter(|n| *n != "1") {
            let _ = write!(md, ", {n} devices (the first is used)");
        }
        let _ = writeln!(
            md,
            ", driver {} - run {} - commit {}{} - torch {} (CUDA {}), bitsandbytes {}{}.",
            m("driver"),
            m("date"),
            m("commit"),
            if self.meta("commit_dirty") == Some("yes") {
                " (with uncommitted changes)"
            } else {
                ""
            },
            m("torch"),
            m("torch_cuda"),
            m("bitsandbytes"),
            self.meta("python")
                .map(|p| format!(", Python {p}"))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            md,
            "Results from `{}`{}.\n",
            self.source.display(),
            if self.meta("quick") == Some("yes") {
                " (`--quick`: one timing per table, a smoke test)"
            } else {
                ""
            }
        );
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() {
            md.push('\n');
        }
        if let Some(q) = &self.quant {
            self.quant_markdown(q, &mut md);
        }
        if let Some(f) = &self.flash {
            self.flash_markdown(f, &mut md);
        }
        md
    }

    fn quant_markdown(&self, q: &Quant, md: &mut String) {
        let _ = writeln!(
            md,
            "### Quantized kernels (kiln-quant) vs torch f16 / bitsandbytes\n\n\
             Medians of back-to-back calls (wall clock per call, weights rotated past L2), f16 \
             activations; speedups are reference time / kiln time (above 1: kiln is faster){}.\n",
            q.runtime
                .as_deref()
                .map(|r| format!("; kiln runtime {r}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            md,
            "Correctness checks (kiln on the device vs the CPU codec): {}/{} passed.",
            q.checks_total.saturating_sub(q.checks_failed),
            q.checks_total
        );
        for f in &q.failures {
            let _ = writeln!(md, "- FAIL {f}");
        }
        md.push('\n');
        let _ = writeln!(md, "| bandwidth | kiln | torch |\n|---|---|---|");
        let _ = writeln!(
            md,
            "| device copy 1 GiB (read + write) | {} GB/s | {} GB/s |",
            fmt(q.copy_gbps.0, 0),
            fmt(q.copy_gbps.1, 0)
        );
        let _ = writeln!(
            md,
            "| kiln launch floor (tiny kernel, back to back) | {} us/call | |\n",
            fmt(q.launch_us, 2)
        );
        if !q.dequantize.is_empty() || !q.quantize.is_empty() {
            let _ = writeln!(
                md,
                "| dequantize / quantize | kiln us | kiln TB/s | bnb us | bnb TB/s | speedup |\n\
                 |---|---|---|---|---|---|"
            );
            for d in &q.dequantize {
                let _ = writeln!(
                    md,
                    "| {} {}x{} -> {} | {:.1} | {} | {} | {} | {} |",
                    d.label,
                    d.shape.0,
                    d.shape.1,
                    d.dtype,
                    d.kiln_us,
                    fmt(d.kiln_tbps, 2),
                    fmt(d.bnb_us, 1),
                    fmt(d.bnb_tbps, 2),
                    fmt_x(ratio(d.bnb_us, Some(d.kiln_us)))
                );
            }
            for (what, kiln, bnb) in &q.quantize {
                let _ = writeln!(
                    md,
                    "| {what} | {kiln:.1} | | {} | | {} |",
                    fmt(*bnb, 1),
                    fmt_x(ratio(*bnb, Some(*kiln)))
                );
            }
            md.push('\n');
        }
        let mut kinds: Vec<&str> = FORMATS.iter().map(|f| f.0).collect();
        for g in &q.gemv {
            if !kinds.contains(&g.kind.as_str()) {
                kinds.push(&g.kind);
            }
        }
        for kind in kinds {
            let rows: Vec<&Gemv> = q.gemv.iter().filter(|g| g.kind == kind).collect();
            if rows.is_empty() {
                continue;
            }
            let title = FORMATS.iter().find(|f| f.0 == kind).map_or(kind, |f| f.2);
            let _ = writeln!(
                md,
                "#### {title}{}\n\n\
                 | out x in | m | torch f16 us | bnb us | kiln us | kiln GB/s | vs torch f16 | vs bnb |\n\
                 |---|---|---|---|---|---|---|---|",
                target_of(kind)
                    .map(|t| format!(" (target at m=1: >= {t}x torch f16)"))
                    .unwrap_or_default()
            );
            for g in rows {
                let _ = writeln!(
                    md,
                    "| {}x{} | {} | {} | {} | {:.2} | {} | {}{} | {} |",
                    g.shape.0,
                    g.shape.1,
                    g.m,
                    fmt(g.torch_us, 2),
                    fmt(g.bnb_us, 2),
                    g.kiln_us,
                    fmt(g.kiln_gbps, 0),
                    fmt_x(g.vs_torch()),
                    g.mark().map(|m| format!(" {m}")).unwrap_or_default(),
                    fmt_x(g.vs_bnb()),
                );
            }
            md.push('\n');
        }
        if !q.variants.is_empty() {
            let _ = writeln!(
                md,
                "#### kiln NF4 GEMV launch variants (m = 1)\n\n| out x in | variant | us | GB/s |\n|---|---|---|---|"
            );
            for v in &q.variants {
                let _ = writeln!(
                    md,
                    "| {}x{} | {} | {:.2} | {} |",
                    v.shape.0,
                    v.shape.1,
                    v.variant,
                    v.us,
                    fmt(v.gbps, 0)
                );
            }
            md.push('\n');
        }
        if self.gemv_plot().is_some() {
            let _ = writeln!(md, "![GEMV time by shape and format]({GEMV_SVG})\n");
        }
    }

    fn flash_markdown(&self, f: &Flash, md: &mut String) {
        let _ = writeln!(
            md,
            "### Flash attention vs torch SDPA\n\n\
             kiln timed kernel: {}; torch {}. Ratios are kiln / torch throughput (above 1: kiln \
             is faster).\n",
            f.timed_kernel.as_deref().unwrap_or("unknown"),
            f.torch.as_deref().unwrap_or("not run")
        );
        let passed = f.checks.iter().filter(|c| c.pass).count();
        let _ = writeln!(
            md,
            "Correctness (f64 reference): {passed}/{} checks pass.",
            f.checks.len()
        );
        if let Some(e) = &f.checks_error {
            let _ = writeln!(md, "- the check process: {e}");
        }
        for c in f.checks.iter().filter(|c| !c.pass) {
            let detail: String = c
                .panic
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
                .replace('\n', " ");
            let _ = writeln!(
                md,
                "- FAIL {}: max rel {} {detail}",
                c.case,
                fmt(c.max_rel, 3)
            );
        }
        for (dtype, kernel, rel) in f.worst() {
            let _ = writeln!(
                md,
                "- {dtype} {kernel}: largest relative error {}",
                sci(rel)
            );
        }
        md.push('\n');

        let pipelined = f.prefill.iter().any(|p| p.pipelined_tflops.is_some());
        let _ = writeln!(
            md,
            "#### Prefill (batch x seq = 16k tokens), TFLOP/s\n\n\
             | dtype | d | heads | causal | window | softcap | seq | batch | kiln ms | kiln TFLOP/s |{} torch impl | torch ms | torch TFLOP/s | kiln/torch |{}\n\
             |---|---|---|---|---|---|---|---|---|---|{}---|---|---|---|{}",
            if pipelined {
                " kiln pipelined TFLOP/s |"
            } else {
                ""
            },
            if pipelined { " pipelined/torch |" } else { "" },
            if pipelined { "---|" } else { "" },
            if pipelined { "---|" } else { "" },
        );
        for p in &f.prefill {
            let bad = |finite: bool| if finite { "" } else { " NaN!" };
            let kiln_tf = match &p.error {
                Some(e) if p.tflops.is_none() => e.clone(),
                _ => format!("{}{}", fmt(p.tflops, 1), bad(p.finite)),
            };
            let _ = write!(
                md,
                "| {} | {} | {} | {} | {} | {:?} | {} | {} | {} | {kiln_tf} |",
                p.dtype,
                p.head_dim,
                p.heads,
                py_bool(p.causal),
                p.window,
                p.softcap,
                p.seq,
                p.batch,
                fmt(p.ms, 3),
            );
            if pipelined {
                let _ = write!(
                    md,
                    " {}{} |",
                    fmt(p.pipelined_tflops, 1),
                    bad(p.pipelined_finite)
                );
            }
            let _ = write!(
                md,
                " {} | {} | {}{} | {} |",
                p.torch_impl.as_deref().unwrap_or("-"),
                fmt(p.torch_ms, 3),
                fmt(p.torch_tflops, 1),
                p.torch_sdpa_mask_tflops
                    .map(|t| format!(" (sdpa+mask {t:.1})"))
                    .unwrap_or_default(),
                fmt(p.ratio(), 2)
            );
            if pipelined {
                let _ = write!(md, " {} |", fmt(p.pipelined_ratio(), 2));
            }
            md.push('\n');
        }
        md.push('\n');

        let find = |dtype: &str, window: i64, softcap: f64, seq: i64| {
            f.prefill.iter().find(|p| {
                p.dtype == dtype
                    && p.head_dim == 128
                    && p.causal
                    && p.window == window
                    && p.softcap == softcap
                    && p.seq == seq
            })
        };
        let mut rel_rows = String::new();
        for e in f.prefill.iter().filter(|p| {
            p.head_dim == 128 && p.causal && p.window < 0 && p.softcap == 0.0 && p.ms.is_some()
        }) {
            let rw = ratio(find(&e.dtype, 4096, 0.0, e.seq).and_then(|w| w.ms), e.ms);
            let rc = ratio(find(&e.dtype, -1, 50.0, e.seq).and_then(|c| c.ms), e.ms);
            let _ = writeln!(
                rel_rows,
                "| {} | {} | {} | {} |",
                e.dtype,
                e.seq,
                fmt(rw, 2),
                fmt(rc, 2)
            );
        }
        if !rel_rows.is_empty() {
            let _ = writeln!(
                md,
                "#### kiln: sliding window / softcap time relative to plain causal (d 128)\n\n\
                 | dtype | seq | window 4096 ms / causal ms | softcap 50 ms / causal ms |\n|---|---|---|---|\n{rel_rows}"
            );
        }

        if !f.decode.is_empty() {
            let copy = self.copy_gbps();
            let pipelined = f.decode.iter().any(|d| d.pipelined_gbs.is_some());
            let _ = writeln!(
                md,
                "#### Decode (q_len 1, GQA 32:8, head dim 128), K/V read\n\n\
                 | dtype | batch | kv | kiln us | kiln GB/s |{}{} torch us | torch GB/s | kiln/torch |{}\n\
                 |---|---|---|---|---|{}{}---|---|---|{}",
                copy.map(|c| format!(" % of copy bandwidth ({c:.0} GB/s) |"))
                    .unwrap_or_default(),
                if pipelined {
                    " kiln pipelined GB/s |"
                } else {
                    ""
                },
                if pipelined { " pipelined/torch |" } else { "" },
                if copy.is_some() { "---|" } else { "" },
                if pipelined { "---|" } else { "" },
                if pipelined { "---|" } else { "" },
            );
            for d in &f.decode {
                let gbs = match &d.error {
                    Some(e) if d.gbs.is_none() => e.clone(),
                    _ => format!("{}{}", fmt(d.gbs, 0), if d.finite { "" } else { " NaN!" }),
                };
                let _ = write!(
                    md,
                    "| {} | {} | {} | {} | {gbs} |",
                    d.dtype,
                    d.batch,
                    d.kv,
                    fmt(d.us, 1)
                );
                if let Some(c) = copy {
                    let _ = write!(md, " {} |", fmt(d.gbs.map(|g| 100.0 * g / c), 0));
                }
                if pipelined {
                    let _ = write!(md, " {} |", fmt(d.pipelined_gbs, 0));
                }
                let _ = write!(
                    md,
                    " {} | {} | {} |",
                    fmt(d.torch_us, 1),
                    fmt(d.torch_gbs, 0),
                    fmt(ratio(d.gbs, d.torch_gbs), 2)
                );
                if pipelined {
                    let _ = write!(md, " {} |", fmt(ratio(d.pipelined_gbs, d.torch_gbs), 2));
                }
                md.push('\n');
            }
            md.push('\n');
        }
        if self.attention_plot().is_some() {
            let _ = writeln!(
                md,
                "![attention TFLOP/s by sequence length]({ATTENTION_SVG})\n"
            );
        }
    }

    /// The `gpu` entry of `report.json`: every number the section shows, ratios included.
    pub fn json(&self) -> Value {
        let quant = self.quant.as_ref().map(|q| {
            json!({
                "runtime": q.runtime,
                "checks": {"total": q.checks_total, "failed": q.checks_failed, "failures": q.failures},
                "copy_gbps": {"kiln": q.copy_gbps.0, "torch": q.copy_gbps.1},
                "launch_us": q.launch_us,
                "dequantize": q.dequantize.iter().map(|d| json!({
                    "quant": d.quant, "dq": d.dq, "dtype": d.dtype, "shape": [d.shape.0, d.shape.1],
                    "kiln_us": d.kiln_us, "kiln_tbps": d.kiln_tbps, "bnb_us": d.bnb_us,
                    "bnb_tbps": d.bnb_tbps, "speedup_vs_bnb": ratio(d.bnb_us, Some(d.kiln_us)),
                })).collect::<Vec<_>>(),
                "quantize": q.quantize.iter().map(|(what, k, b)| json!({
                    "what": what, "kiln_us": k, "bnb_us": b, "speedup_vs_bnb": ratio(*b, Some(*k)),
                })).collect::<Vec<_>>(),
                "gemv": q.gemv.iter().map(|g| json!({
                    "kind": g.kind, "shape": [g.shape.0, g.shape.1], "m": g.m,
                    "kiln_us": g.kiln_us, "kiln_gbps": g.kiln_gbps,
                    "torch_f16_us": g.torch_us, "bnb_us": g.bnb_us,
                    "speedup_vs_torch_f16": g.vs_torch(), "speedup_vs_bnb": g.vs_bnb(),
                    "target_vs_torch_f16": if g.m == 1 { target_of(&g.kind) } else { None },
                    "target_met": g.mark().map(|m| m == "ok"),
                })).collect::<Vec<_>>(),
                "gemv_variants": q.variants.iter().map(|v| json!({
                    "shape": [v.shape.0, v.shape.1], "variant": v.variant, "us": v.us, "gbps": v.gbps,
                })).collect::<Vec<_>>(),
            })
        });
        let flash = self.flash.as_ref().map(|f| {
            let copy = self.copy_gbps();
            json!({
                "timed_kernel": f.timed_kernel,
                "torch": f.torch,
                "checks": {
                    "total": f.checks.len(),
                    "passed": f.checks.iter().filter(|c| c.pass).count(),
                    "error": f.checks_error,
                    "failures": f.checks.iter().filter(|c| !c.pass).map(|c| &c.case).collect::<Vec<_>>(),
                    "largest_relative_error": f.worst().into_iter().map(|(d, k, v)| json!({
                        "dtype": d, "kernel": k, "max_rel": v,
                    })).collect::<Vec<_>>(),
                },
                "prefill": f.prefill.iter().map(|p| json!({
                    "dtype": p.dtype, "head_dim": p.head_dim, "heads": p.heads, "batch": p.batch,
                    "seq": p.seq, "causal": p.causal, "window": p.window, "softcap": p.softcap,
                    "kiln_ms": p.ms, "kiln_tflops": p.tflops, "kiln_finite": p.finite,
                    "kiln_pipelined_tflops": p.pipelined_tflops, "error": p.error,
                    "torch_impl": p.torch_impl, "torch_ms": p.torch_ms,
                    "torch_tflops": p.torch_tflops, "torch_sdpa_mask_tflops": p.torch_sdpa_mask_tflops,
                    "kiln_over_torch": p.ratio(), "pipelined_over_torch": p.pipelined_ratio(),
                })).collect::<Vec<_>>(),
                "decode": f.decode.iter().map(|d| json!({
                    "dtype": d.dtype, "batch": d.batch, "kv": d.kv, "kiln_us": d.us,
                    "kiln_gbs": d.gbs, "kiln_finite": d.finite, "kiln_pipelined_gbs": d.pipelined_gbs,
                    "error": d.error, "torch_us": d.torch_us, "torch_gbs": d.torch_gbs,
                    "kiln_over_torch": ratio(d.gbs, d.torch_gbs),
                    "share_of_copy_bandwidth": copy.and_then(|c| d.gbs.map(|g| g / c)),
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "source": self.source.display().to_string(),
            "meta": self.meta,
            "steps": self.steps.iter().map(|(s, st)| json!({"step": s, "status": st})).collect::<Vec<_>>(),
            "notes": self.notes,
            "quant": quant,
            "flash": flash,
        })
    }

    /// Writes the plots the section links into `out` (and removes those of an earlier report
    /// that this one has no data for).
    pub fn write_svgs(&self, out: &Path) -> Result<()> {
        for name in [GEMV_SVG, ATTENTION_SVG] {
            let _ = std::fs::remove_file(out.join(name));
        }
        if let Some(groups) = self.gemv_plot() {
            let p = out.join(GEMV_SVG);
            std::fs::write(
                &p,
                svg::grouped_bar_chart(
                    &format!(
                        "GEMV, m = 1, f16 activations, {}: us per call (lower is better)",
                        self.meta("gpu").unwrap_or("GPU")
                    ),
                    "us",
                    &groups,
                ),
            )
            .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(lines) = self.attention_plot() {
            let p = out.join(ATTENTION_SVG);
            std::fs::write(
                &p,
                svg::line_chart(
                    &format!(
                        "Attention prefill, f16, causal, {}: TFLOP/s (higher is better)",
                        self.meta("gpu").unwrap_or("GPU")
                    ),
                    "sequence length (batch x seq = 16k tokens)",
                    "TFLOP/s",
                    &lines,
                ),
            )
            .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-gpu-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn put(dir: &Path, rel: &str, v: &Value) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    }

    /// What `gpu_bench` writes (`quant/examples/gpu_bench.rs`, `run`), at two shapes.
    fn kiln_quant() -> Value {
        let gemv = |kind: &str, n: u64, k: u64, m: u64, us: f64, gbps: f64| {
            json!({"kind": kind, "shape": [n, k], "m": m, "us": us, "us_single": us + 12.0,
                   "bytes": 9_000_000, "gbps": gbps,
                   "config": "GemvConfig { rows_per_plane: 4, planes: 4, lut: Pairs(16), use_plane: true, depth: 2, max_cubes: 528 }"})
        };
        json!({
            "tool": "kiln-quant gpu_bench",
            "device": {"runtime": "cuda", "sms": 132, "plane_size": [32, 32],
                       "max_shared_memory": 232448, "planes_of_32": true},
            "checks": {"failed": 1, "total": 3, "results": [
                {"name": "dequantize nf4 dq=false bs=64 -> float16 [777x1001]", "pass": true,
                 "max_abs_err": 0.0, "max_rel_err": 0.0, "detail": ""},
                {"name": "quantize fp4 dq=true bs=32 float16 [101x99]", "pass": false,
                 "max_abs_err": 0.5, "max_rel_err": 0.25, "detail": "3 bytes differ"},
                {"name": "Linear4bit nf4 Cuda float16", "pass": true, "max_abs_err": 1e-3,
                 "max_rel_err": 1e-4, "detail": ""},
            ]},
            "launch": {"us": 2.5, "us_single": 9.0},
            "copy": {"bytes": 1_073_741_824u64, "us": 800.0, "us_single": 820.0, "gbps": 2684.4},
            "dequantize": [
                {"quant": "nf4", "dq": false, "dtype": "float32", "shape": [8192, 8192], "us": 90.0,
                 "us_single": 99.0, "bytes": 306_184_192, "tbps": 3.4},
                {"quant": "nf4", "dq": false, "dtype": "float16", "shape": [8192, 8192], "us": 60.0,
                 "us_single": 70.0, "bytes": 168_820_736, "tbps": 2.81},
                {"quant": "nf4", "dq": true, "dtype": "float16", "shape": [8192, 8192], "us": 64.0,
                 "us_single": 71.0, "bytes": 169_000_000, "tbps": 2.64},
            ],
            "quantize": [{"quant": "nf4", "dq": false, "dtype": "float16", "shape": [8192, 8192],
                          "us": 150.0, "us_single": 160.0}],
            "gemv": [
                gemv("nf4", 4096, 4096, 1, 8.0, 1100.0),
                gemv("nf4", 4096, 4096, 4, 10.0, 900.0),
                gemv("nf4-dq", 4096, 4096, 1, 9.0, 950.0),
                gemv("fp4", 4096, 4096, 1, 8.5, 1000.0),
                gemv("nf4", 128256, 4096, 1, 160.0, 1700.0),
                gemv("nf4-dq", 128256, 4096, 1, 170.0, 1600.0),
                gemv("fp4", 128256, 4096, 1, 165.0, 1650.0),
            ],
            "gemv_variants": [{"kind": "nf4", "shape": [4096, 4096], "m": 1,
                               "variant": "pairs16-r4-p4", "us": 8.1, "us_single": 20.0, "gbps": 1090.0}],
            "int8": [
                gemv("int8", 4096, 4096, 1, 16.0, 1050.0),
                gemv("int8", 128256, 4096, 1, 250.0, 2100.0),
            ],
            "seconds": 120.0,
        })
    }

    /// What `bench_torch_bnb.py` writes (`benches/gpu/bench_torch_bnb.py`, `main`).
    fn torch_bnb() -> Value {
        let lin = |kind: &str, n: u64, k: u64, m: u64, us: f64| {
            json!({"us": us, "us_events": us - 1.0, "us_single": us + 20.0, "sink": 0.5,
                   "kind": kind, "shape": [n, k], "m": m, "copies": 4, "gbps": 1000.0})
        };
        json!({
            "tool": "benches/gpu/bench_torch_bnb.py",
            "device": {"name": "NVIDIA H100 80GB HBM3", "sms": 132, "memory_gib": 79.1,
                       "driver": "580.159.04", "torch": "2.11.0+cu130", "cuda": "13.0",
                       "bitsandbytes": "0.48.2"},
            "copy": {"us": 810.0, "us_events": 805.0, "us_single": 830.0, "sink": 0.0,
                     "bytes": 1_073_741_824u64, "gbps": 2651.2},
            "dequantize": [
                {"us": 50.0, "us_events": 49.0, "us_single": 60.0, "sink": 0.0,
                 "kind": "bnb-dequantize", "quant": "nf4", "dq": false, "dtype": "float16",
                 "shape": [8192, 8192], "bytes": 168_820_736, "tbps": 3.36},
                {"us": 300.0, "us_events": 299.0, "us_single": 310.0, "sink": 0.0,
                 "kind": "bnb-quantize", "quant": "nf4", "dq": false, "dtype": "float16",
                 "shape": [8192, 8192]},
                {"us": 80.0, "us_events": 79.0, "us_single": 90.0, "sink": 0.0,
                 "kind": "bnb-dequantize", "quant": "nf4", "dq": true, "dtype": "float16",
                 "shape": [8192, 8192], "bytes": 169_000_000, "tbps": 2.11},
            ],
            "linear": [
                lin("torch-f16", 4096, 4096, 1, 20.0),
                lin("torch-f16", 4096, 4096, 4, 21.0),
                lin("bnb-nf4", 4096, 4096, 1, 30.0),
                lin("bnb-nf4", 4096, 4096, 4, 80.0),
                lin("bnb-nf4-dq", 4096, 4096, 1, 33.0),
                lin("bnb-fp4", 4096, 4096, 1, 31.0),
                lin("bnb-int8", 4096, 4096, 1, 40.0),
                lin("torch-f16", 128256, 4096, 1, 400.0),
                lin("bnb-nf4", 128256, 4096, 1, 450.0),
                lin("bnb-int8", 128256, 4096, 1, 520.0),
            ],
            "seconds": 300.0,
        })
    }

    /// What `flash_device` writes (`benches/src/bin/flash_device.rs`, `device::main`).
    fn flash_kiln() -> Value {
        let pre = |d: i64, causal: bool, window: i64, softcap: f64, seq: i64, ms: f64, tf: f64| {
            json!({"dtype": "f16", "head_dim": d, "heads": if d == 64 { 32 } else { 16 },
                   "batch": 16384 / seq, "seq": seq, "causal": causal, "window": window,
                   "softcap": softcap, "ms": ms, "tflops": tf, "finite": true,
                   "pipelined_ms": ms * 0.9, "pipelined_tflops": tf / 0.9, "pipelined_finite": true})
        };
        json!({
            "tool": "kiln flash_device", "timed_kernel": "Auto", "pipelined_timed": true,
            "checks": [
                {"case": "f16 Portable b1 h8/2 q300 k300 d64 causal=false window=-1 softcap=0 key_lens=None varlen=false",
                 "pass": true, "max_abs": 2.4e-4, "max_rel": 3.9e-4},
                {"case": "f16 TensorCore b1 h8/2 q300 k300 d64 causal=false window=-1 softcap=0 key_lens=None varlen=false",
                 "pass": true, "max_abs": 2.5e-4, "max_rel": 4.2e-4},
                {"case": "bf16 TensorCorePipelined b2 h4/1 q257 k300 d128 causal=true window=-1 softcap=0 key_lens=None varlen=false",
                 "pass": false, "panic": "kernel failed to compile\nat line 3"},
            ],
            "check_report": {"checks": [], "tensor_core_failures": 0, "portable_failures": 0},
            "pipelined_check_report": {"checks": [], "tensor_core_failures": 1, "portable_failures": 0},
            "prefill": [
                pre(128, true, -1, 0.0, 1024, 1.0, 150.0),
                pre(128, true, -1, 0.0, 8192, 30.0, 170.0),
                pre(128, true, 4096, 0.0, 8192, 24.0, 160.0),
                pre(128, true, -1, 50.0, 8192, 36.0, 140.0),
                pre(64, true, -1, 0.0, 1024, 0.6, 116.4),
                {"dtype": "bf16", "head_dim": 256, "heads": 16, "batch": 16, "seq": 1024,
                 "causal": false, "window": -1, "softcap": 0.0, "error": "panicked"},
            ],
            "decode": [
                {"dtype": "f16", "batch": 1, "kv": 1024, "us": 24.4, "gbs": 171.8, "finite": true,
                 "pipelined_us": 22.0, "pipelined_gbs": 190.6, "pipelined_finite": true},
                {"dtype": "f16", "batch": 16, "kv": 32768, "error": "panicked"},
            ],
        })
    }

    /// What `flash_torch.py` writes (`benches/scripts/flash_torch.py`, `main`).
    fn flash_torch() -> Value {
        let pre = |d: i64, window: i64, softcap: f64, seq: i64, imp: &str, ms: f64, tf: f64| {
            json!({"dtype": "f16", "head_dim": d, "heads": if d == 64 { 32 } else { 16 },
                   "batch": 16384 / seq, "seq": seq, "causal": true, "window": window,
                   "softcap": softcap, "impl": imp, "ms": ms, "tflops": tf})
        };
        let mut windowed = pre(128, 4096, 0.0, 8192, "eager", 90.0, 40.0);
        windowed["sdpa_mask_ms"] = json!(20.0);
        windowed["sdpa_mask_tflops"] = json!(190.0);
        json!({
            "tool": "torch", "torch": "2.11.0+cu130", "cuda": "13.0",
            "device": "NVIDIA H100 80GB HBM3",
            "prefill": [
                pre(128, -1, 0.0, 1024, "sdpa", 0.5, 300.0),
                pre(128, -1, 0.0, 8192, "sdpa", 12.0, 420.0),
                windowed,
                pre(128, -1, 50.0, 8192, "eager", 100.0, 50.0),
                pre(64, -1, 0.0, 1024, "sdpa", 0.2, 332.7),
            ],
            "decode": [{"dtype": "f16", "batch": 1, "kv": 1024, "impl": "sdpa", "us": 21.9,
                        "gbs": 191.2}],
        })
    }

    fn full_run(name: &str) -> PathBuf {
        let dir = temp(name);
        std::fs::write(
            dir.join("run.txt"),
            "date=2026-11-29 10:00 UTC\ngpu=NVIDIA H100 80GB HBM3\ndriver=580.159.04\n\
             memory=81559 MiB\ngpu_count=1\npython=3.12.3\ntorch=2.11.0+cu130\ntorch_cuda=13.0\n\
             bitsandbytes=\nquick=\ncommit=0123456789abcdef\ncommit_dirty=no\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("status.txt"),
            "quant/kiln 3\nquant/torch_bnb 0\nquant/merge 0\nflash/kiln 0\nflash/torch 124\n\
             flash/merge skipped: needs flash_kiln.json, flash_torch.json and Python\n",
        )
        .unwrap();
        put(&dir, "quant/kiln.json", &kiln_quant());
        put(&dir, "quant/torch_bnb.json", &torch_bnb());
        put(&dir, "flash/flash_kiln.json", &flash_kiln());
        put(&dir, "flash/flash_torch.json", &flash_torch());
        dir
    }

    #[test]
    fn renders_a_full_run_with_ratios() {
        let dir = full_run("full");
        let g = load(&dir).unwrap();
        let md = g.markdown();
        assert!(md.starts_with("## GPU\n"));
        assert!(md.contains("Card: NVIDIA H100 80GB HBM3 (81559 MiB), driver 580.159.04 - run 2026-11-29 10:00 UTC - commit 0123456789abcdef - torch 2.11.0+cu130 (CUDA 13.0), bitsandbytes 0.48.2, Python 3.12.3."), "{md}");
        assert!(md.contains("- step quant/kiln failed: exit 3 (see its log)."));
        assert!(md.contains("- step flash/torch failed: timed out (exit 124)"));
        assert!(md.contains(
            "- step flash/merge: skipped: needs flash_kiln.json, flash_torch.json and Python.\n"
        ));
        assert!(
            md.contains("Correctness checks (kiln on the device vs the CPU codec): 2/3 passed.")
        );
        assert!(md.contains(
            "- FAIL quantize fp4 dq=true bs=32 float16 [101x99]: max abs err 0.5 3 bytes differ"
        ));
        assert!(md.contains("| device copy 1 GiB (read + write) | 2684 GB/s | 2651 GB/s |"));
        assert!(md.contains("| nf4 8192x8192 -> float16 | 60.0 | 2.81 | 50.0 | 3.36 | 0.83x |"));
        assert!(
            md.contains("| nf4 8192x8192 -> float32 | 90.0 | 3.40 | - | - |  |"),
            "{md}"
        );
        assert!(md.contains("| quantize nf4 from float16 | 150.0 | | 300.0 | | 2.00x |"));
        assert!(md.contains("#### NF4 (target at m=1: >= 2.5x torch f16)"));
        assert!(md.contains("| 4096x4096 | 1 | 20.00 | 30.00 | 8.00 | 1100 | 2.50x ok | 3.75x |"));
        assert!(md.contains("| 4096x4096 | 4 | 21.00 | 80.00 | 10.00 | 900 | 2.10x | 8.00x |"));
        assert!(md.contains("| 128256x4096 | 1 | 400.00 | - | 170.00 | 1600 | 2.35x MISS |  |"));
        assert!(
            md.contains("| 4096x4096 | 1 | 20.00 | 40.00 | 16.00 | 1050 | 1.25x MISS | 2.50x |")
        );
        assert!(md.contains("| 4096x4096 | pairs16-r4-p4 | 8.10 | 1090 |"));
        assert!(md.contains(&format!("![GEMV time by shape and format]({GEMV_SVG})")));
        // Flash: ratios of throughput, pipelined columns, failures, errors, window/softcap.
        assert!(md.contains("kiln timed kernel: Auto; torch 2.11.0+cu130."));
        assert!(md.contains("Correctness (f64 reference): 2/3 checks pass."));
        assert!(md.contains("- FAIL bf16 TensorCorePipelined b2 h4/1 q257 k300 d128 causal=true window=-1 softcap=0 key_lens=None varlen=false: max rel - kernel failed to compile at line 3"));
        assert!(md.contains("- f16 TensorCore: largest relative error 4.20e-04"));
        assert!(md.contains("| f16 | 128 | 16 | True | -1 | 0.0 | 1024 | 16 | 1.000 | 150.0 | 166.7 | sdpa | 0.500 | 300.0 | 0.50 | 0.56 |"), "{md}");
        assert!(md.contains("| eager | 90.000 | 40.0 (sdpa+mask 190.0) | 4.00 | 4.44 |"));
        assert!(md.contains("| bf16 | 256 | 16 | False | -1 | 0.0 | 1024 | 16 | - | panicked | - | - | - | - | - | - |"));
        assert!(md.contains("| f16 | 8192 | 0.80 | 1.20 |"));
        assert!(md.contains("% of copy bandwidth (2684 GB/s)"));
        assert!(
            md.contains("| f16 | 1 | 1024 | 24.4 | 172 | 6 | 191 | 21.9 | 191 | 0.90 | 1.00 |"),
            "{md}"
        );
        assert!(md.contains("| f16 | 16 | 32768 | - | panicked | - | - | - | - | - | - |"));
        assert!(md.contains(&format!("({ATTENTION_SVG})")));

        let j = g.json();
        assert_eq!(j["meta"]["commit"], "0123456789abcdef");
        assert_eq!(j["steps"][0]["status"], "3");
        let row = &j["quant"]["gemv"][0];
        assert_eq!(
            (row["kind"].as_str(), row["m"].as_u64()),
            (Some("nf4"), Some(1))
        );
        assert_eq!(row["speedup_vs_torch_f16"], 2.5);
        assert_eq!(row["speedup_vs_bnb"], 3.75);
        assert_eq!(row["target_met"], true);
        assert_eq!(j["quant"]["dequantize"][0]["speedup_vs_bnb"], Value::Null);
        assert_eq!(j["flash"]["prefill"][0]["kiln_over_torch"], 0.5);
        assert_eq!(j["flash"]["checks"]["passed"], 2);
        assert!(
            j["flash"]["decode"][0]["share_of_copy_bandwidth"]
                .as_f64()
                .unwrap()
                > 0.06
        );

        let out = dir.join("report");
        std::fs::create_dir_all(&out).unwrap();
        g.write_svgs(&out).unwrap();
        let gemv = std::fs::read_to_string(out.join(GEMV_SVG)).unwrap();
        for label in [
            ">torch f16<",
            ">bnb NF4<",
            ">kiln NF4+DQ<",
            ">kiln int8<",
            ">128256 x 4096 (out x in)<",
        ] {
            assert!(gemv.contains(label), "{label}");
        }
        let att = std::fs::read_to_string(out.join(ATTENTION_SVG)).unwrap();
        for label in [
            ">kiln d128<",
            ">kiln pipelined d128<",
            ">torch SDPA d64<",
            ">8192<",
        ] {
            assert!(att.contains(label), "{label}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The GEMV rows are those of `merge_report.py` on the same JSON, to the character.
    #[test]
    fn gemv_rows_match_merge_report_py() {
        let dir = full_run("merge");
        let script = fetch::repo_root().join("benches/gpu/merge_report.py");
        let Ok(out) = std::process::Command::new("python3")
            .arg(&script)
            .arg(dir.join("quant/kiln.json"))
            .arg(dir.join("quant/torch_bnb.json"))
            .output()
        else {
            eprintln!("no python3: skipped");
            return;
        };
        assert!(out.status.success(), "{out:?}");
        let theirs = String::from_utf8(out.stdout).unwrap();
        let ours = load(&dir).unwrap().markdown();
        let rows: Vec<&str> = theirs
            .lines()
            .filter(|l| l.starts_with("| 4096x") || l.starts_with("| 128256x"))
            .collect();
        assert_eq!(rows.len(), 10, "{theirs}");
        for row in rows {
            // Python prints a missing reference as `nan`, the report as `-`.
            let row = row.replace(" nan ", " - ");
            assert!(ours.contains(&row), "{row} missing from\n{ours}");
        }
        let checks = theirs
            .lines()
            .find(|l| l.starts_with("Correctness"))
            .unwrap();
        assert!(ours.contains(checks));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The committed GPU results (H100 flash, H200 quant): flat folders of one suite each.
    #[test]
    fn renders_the_committed_results() {
        let results = fetch::repo_root().join("benches/results");
        let Ok(entries) = std::fs::read_dir(&results) else {
            return;
        };
        let mut seen = 0;
        // Folders of GPU suite results (others hold other recorded runs, e.g. perplexity).
        let is_suite = |p: &std::path::Path| {
            ["kiln.json", "flash_kiln.json", "quant", "flash"]
                .iter()
                .any(|f| p.join(f).exists())
        };
        for dir in entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && is_suite(p))
        {
            let g = load(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
            let md = g.markdown();
            let out = temp("committed");
            g.write_svgs(&out).unwrap();
            serde_json::to_string(&g.json()).unwrap();
            // The tables agree with the report flash_merge.py wrote at the time.
            if let Ok(theirs) = std::fs::read_to_string(dir.join("flash_report.md")) {
                let mut rows = 0;
                for line in theirs.lines() {
                    if line.starts_with("## Correctness") {
                        assert!(
                            md.contains(
                                &line.replace("## Correctness:", "Correctness (f64 reference):")
                            ),
                            "{line}"
                        );
                    } else if line.starts_with("- ") && line.contains("largest relative error") {
                        assert!(md.contains(line), "{line}");
                    } else if line.starts_with("| f16 | ") || line.starts_with("| bf16 | ") {
                        let cells: Vec<&str> = line.split(" | ").collect();
                        // Decode rows: without the share of a fixed 3.0 TB/s (no copy bandwidth
                        // was measured with these results).
                        let row = if cells.len() == 9 {
                            let mut c = cells.clone();
                            c.remove(5);
                            c.join(" | ")
                        } else {
                            line.to_owned()
                        };
                        assert!(md.contains(&row), "{row} missing");
                        rows += 1;
                    }
                }
                assert!(rows > 100, "{rows}");
            }
            if g.flash.is_some() {
                assert!(out.join(ATTENTION_SVG).exists());
                assert!(md.contains(&format!("({ATTENTION_SVG})")));
            }
            if dir.ends_with("2026-11-28-h100-flash") {
                assert_eq!(g.meta("gpu"), Some("NVIDIA H100 80GB HBM3"));
                assert!(md.contains("Card: NVIDIA H100 80GB HBM3 (81559 MiB), driver 580.159.04 - run unknown - commit unknown - torch 2.11.0+cu130 (CUDA 13.0), bitsandbytes unknown."), "{md}");
                assert!(md.contains("- quant suite: no kiln.json"));
                assert!(!out.join(GEMV_SVG).exists());
            }
            std::fs::remove_dir_all(&out).unwrap();
            seen += 1;
        }
        assert!(seen > 0);
    }

    #[test]
    fn bad_input_gives_one_line_errors() {
        let err = |dir: &Path| {
            let e = format!("{:#}", load(dir).unwrap_err());
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let dir = temp("bad");
        assert!(err(&dir.join("nope")).contains("nope: no such folder"));
        std::fs::write(dir.join("status.txt"), "quant/kiln 101\nflash/kiln 124\n").unwrap();
        let e = err(&dir);
        assert!(
            e.contains("no GPU results (neither quant/kiln.json nor flash/flash_kiln.json); steps: quant/kiln: exit 101, flash/kiln: timed out (exit 124)"),
            "{e}"
        );

        let mut k = kiln_quant();
        k.as_object_mut().unwrap().remove("gemv");
        put(&dir, "quant/kiln.json", &k);
        assert!(err(&dir).ends_with("quant/kiln.json: no key `gemv`"));
        let mut k = kiln_quant();
        k["int8"][1]["us"] = json!("fast");
        put(&dir, "quant/kiln.json", &k);
        assert!(err(&dir).ends_with("quant/kiln.json: int8[1]: `us` is not a number (\"fast\")"));
        let mut k = kiln_quant();
        k["gemv"][0]["shape"] = json!([4096]);
        put(&dir, "quant/kiln.json", &k);
        assert!(err(&dir).ends_with("quant/kiln.json: gemv[0]: `shape` is not [out, in] ([4096])"));
        let mut k = kiln_quant();
        k.as_object_mut().unwrap().remove("checks");
        put(&dir, "quant/kiln.json", &k);
        assert!(err(&dir).ends_with("quant/kiln.json: no key `checks`"));
        put(&dir, "quant/kiln.json", &kiln_quant());
        let mut t = torch_bnb();
        t["linear"][2].as_object_mut().unwrap().remove("m");
        put(&dir, "quant/torch_bnb.json", &t);
        assert!(err(&dir).ends_with("quant/torch_bnb.json: linear[2]: no key `m`"));
        std::fs::write(dir.join("quant/torch_bnb.json"), "{\"linear\": [").unwrap();
        assert!(err(&dir).contains("parsing "), "{}", err(&dir));
        std::fs::remove_file(dir.join("quant/torch_bnb.json")).unwrap();

        let mut f = flash_kiln();
        f["prefill"][0].as_object_mut().unwrap().remove("seq");
        put(&dir, "flash/flash_kiln.json", &f);
        assert!(err(&dir).ends_with("flash/flash_kiln.json: prefill[0]: no key `seq`"));
        let mut f = flash_kiln();
        f["decode"] = json!({"not": "a list"});
        put(&dir, "flash/flash_kiln.json", &f);
        assert!(
            err(&dir)
                .ends_with("flash/flash_kiln.json: `decode` is not a list ({\"not\":\"a list\"})")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run whose reference steps were skipped, and whose flash check process died.
    #[test]
    fn renders_without_references() {
        let dir = temp("noref");
        put(&dir, "quant/kiln.json", &kiln_quant());
        let mut f = flash_kiln();
        f["checks"] = Value::Null;
        f["check_report"] =
            json!({"error": "the check process ended with None and left no report"});
        put(&dir, "flash/flash_kiln.json", &f);
        let g = load(&dir).unwrap();
        let md = g.markdown();
        assert!(md.contains("- quant suite: no torch_bnb.json"));
        assert!(md.contains("- flash suite: no flash_torch.json"));
        assert!(
            md.contains("| 4096x4096 | 1 | - | - | 8.00 | 1100 |  |  |"),
            "{md}"
        );
        assert!(md.contains("Correctness (f64 reference): 0/0 checks pass.\n- the check process: the check process ended"));
        assert!(md.contains("kiln timed kernel: Auto; torch not run."));
        // No references: only kiln in the plots.
        g.write_svgs(&dir).unwrap();
        let gemv = std::fs::read_to_string(dir.join(GEMV_SVG)).unwrap();
        assert!(gemv.contains(">kiln NF4<") && !gemv.contains(">torch f16<"));
        assert!(
            !std::fs::read_to_string(dir.join(ATTENTION_SVG))
                .unwrap()
                .contains("torch")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn small_formats() {
        assert_eq!(sci(4.22e-4), "4.22e-04");
        assert_eq!(sci(3.0), "3.00e+00");
        assert_eq!(
            gpu_csv("name, driver_version, memory.total [MiB]\nNVIDIA H200, 570.1, 143771 MiB\n"),
            Some(("NVIDIA H200".into(), "570.1".into(), "143771 MiB".into()))
        );
        assert_eq!(gpu_csv("bash: nvidia-smi: command not found"), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(describe_status("137"), "timed out (exit 137)");
    }
}
