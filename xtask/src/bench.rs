//! `cargo xtask bench`: every measurement behind one command, and its report.
//!
//! CPU: the criterion benches of `kiln-benches` (with transformers timed beside kiln where a
//! bench has a Python reference); `--no-cpu` skips them. GPU: the suite of [`crate::gpu`]
//! (kiln-quant's `gpu_bench` against torch f16 / bitsandbytes, kiln's `flash_device` against
//! torch SDPA), which runs from a self-contained pack:
//!
//! - `--gpu-pack DIR [--no-build]` builds the pack (and does nothing else), to copy to a GPU
//!   machine and run there with `bash DIR/run.sh OUT`;
//! - `--gpu-results OUT` reads such a run into the report's GPU section ([`crate::gpu_report`]);
//! - without either, when `nvidia-smi -L` lists a device here (and no `--no-gpu`), the pack is
//!   built into `target/kiln-bench/gpu-pack` and run into `target/kiln-bench/gpu-results`.
//!
//! Output, in `target/kiln-bench/`: `report.md`, `report.json` and SVG plots, with the machine,
//! versions and date.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::gpu_report::GpuResults;
use crate::{fetch, gpu, gpu_report, svg};

/// Options of `cargo xtask bench`.
pub struct Options {
    /// Short criterion runs (1 s warm-up, 2 s measurement).
    pub quick: bool,
    /// Only benches whose name contains this.
    pub filter: Option<String>,
    /// The Python that runs the references; else a venv made from the pinned requirements.
    pub python: Option<PathBuf>,
    /// Do not run the Python references.
    pub no_python: bool,
    /// Skip the criterion benches (only the GPU section).
    pub no_cpu: bool,
    /// Do not run the GPU suite on this machine, even with a CUDA device.
    pub no_gpu: bool,
    /// A results folder of the pack's `run.sh` to report (instead of a run here).
    pub gpu_results: Option<PathBuf>,
}

/// The criterion benches of `kiln-benches`, and the artifacts each needs.
const BENCHES: &[(&str, &[&str])] = &[
    ("quant_codec", &[]),
    ("chat_template", &["llama-cpp", "tokenizers"]),
];

/// Where the report goes.
pub fn out_dir() -> PathBuf {
    fetch::repo_root().join("target").join("kiln-bench")
}

/// Runs the benches and writes the report.
pub fn run(opts: &Options) -> Result<()> {
    let out = out_dir();
    // A results folder given is read first: a bad one fails before the long CPU run.
    let given = opts
        .gpu_results
        .as_deref()
        .map(gpu_report::load)
        .transpose()?;
    let cuda_here = gpu::cuda_device_listed();
    let run_gpu_here = given.is_none() && !opts.no_gpu && cuda_here;
    ensure!(
        !opts.no_cpu || given.is_some() || run_gpu_here,
        "--no-cpu leaves nothing to do: give --gpu-results OUT, or run where `nvidia-smi -L` \
         lists a CUDA device (without --no-gpu)"
    );

    let mut notes = Vec::new();
    let (criterion, records) = if opts.no_cpu {
        notes.push("CPU benches not run (`--no-cpu`).".to_owned());
        (Vec::new(), Vec::new())
    } else {
        let (criterion, records, python_ran) = run_cpu(opts, &out)?;
        if !python_ran {
            notes.push(
                "Python references not run (`--no-python`): no ratios against them.".to_owned(),
            );
        }
        (criterion, records)
    };

    let gpu_results = if let Some(g) = given {
        if cuda_here && !opts.no_gpu {
            notes.push(
                "GPU section from `--gpu-results`; the suite was not run on this machine's device."
                    .to_owned(),
            );
        }
        Some(g)
    } else if run_gpu_here {
        let results = out.join("gpu-results");
        let passed = gpu::run_local(&out.join("gpu-pack"), &results, opts.quick)?;
        if !passed {
            notes.push("The GPU suite had failed steps (listed in the GPU section).".to_owned());
        }
        match gpu_report::load(&results) {
            Ok(g) => Some(g),
            Err(e) => {
                notes.push(format!("The GPU suite left nothing to report: {e:#}"));
                None
            }
        }
    } else {
        notes.push(if cuda_here {
            "GPU suite not run (`--no-gpu`).".to_owned()
        } else {
            "No CUDA device on this machine: the GPU suite was not run here (run \
             `cargo xtask bench --gpu-pack DIR` and `bash DIR/run.sh OUT` on a GPU machine, then \
             `cargo xtask bench --gpu-results OUT`)."
                .to_owned()
        });
        None
    };

    let report = Report {
        machine: machine_info(gpu_present().as_deref()),
        criterion,
        records,
        notes,
        gpu: gpu_results,
    };
    report.write(&out)?;
    eprintln!(
        "report: {}",
        out.join("report.md")
            .strip_prefix(fetch::repo_root())
            .unwrap_or(&out)
            .display()
    );
    Ok(())
}

/// What the CPU run gives: criterion's results, the JSON records, and whether the Python
/// references ran.
type CpuResults = (Vec<Measurement>, Vec<(String, Value)>, bool);

/// Runs the criterion benches.
fn run_cpu(opts: &Options, out: &Path) -> Result<CpuResults> {
    let records = out.join("records");
    if records.exists() {
        std::fs::remove_dir_all(&records)
            .with_context(|| format!("clearing {}", records.display()))?;
    }
    std::fs::create_dir_all(&records)?;
    let selected: Vec<&(&str, &[&str])> = BENCHES
        .iter()
        .filter(|(name, _)| opts.filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    ensure!(
        !selected.is_empty(),
        "no bench matches {:?}; benches: {}",
        opts.filter,
        BENCHES.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
    );
    let artifacts: Vec<String> = selected
        .iter()
        .flat_map(|(_, a)| a.iter().map(|s| (*s).to_owned()))
        .collect();
    if !artifacts.is_empty() {
        fetch::fetch(&artifacts)?;
    }
    let python = if opts.no_python {
        None
    } else {
        Some(reference_python(opts.python.as_deref())?)
    };

    let criterion_dir = fetch::repo_root().join("target").join("criterion");
    for (name, _) in &selected {
        eprintln!("== bench {name}");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(fetch::repo_root())
            .args(["bench", "--package", "kiln-benches", "--bench", name])
            .env("KILN_BENCH_OUT", &records);
        if let Some(py) = &python {
            cmd.env("KILN_BENCH_PYTHON", py);
        }
        if opts.quick {
            cmd.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
        }
        let status = cmd.status().context("running cargo bench")?;
        ensure!(status.success(), "bench {name} failed ({status})");
    }
    Ok((
        read_criterion(&criterion_dir, &selected)?,
        read_records(&records)?,
        python.is_some(),
    ))
}

/// A Python with transformers: the given one, `$KILN_BENCH_PYTHON`, or a venv in
/// `target/kiln-bench/venv` made from `scripts/reference/requirements-chat.txt`.
fn reference_python(given: Option<&Path>) -> Result<PathBuf> {
    let given = given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("KILN_BENCH_PYTHON").map(PathBuf::from));
    if let Some(py) = given {
        ensure!(
            imports_transformers(&py),
            "{} cannot import transformers and jinja2",
            py.display()
        );
        return Ok(py);
    }
    let venv = out_dir().join("venv");
    let py = venv.join("bin").join("python");
    if py.exists() && imports_transformers(&py) {
        return Ok(py);
    }
    eprintln!(
        "creating the reference Python environment in {} ...",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("python3 is needed for the reference timings (or pass --no-python)")?;
    ensure!(status.success(), "python3 -m venv failed ({status})");
    let reqs = fetch::repo_root().join("scripts/reference/requirements-chat.txt");
    let status = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&reqs)
        .status()
        .context("running pip")?;
    ensure!(status.success(), "pip install -r {} failed", reqs.display());
    ensure!(
        imports_transformers(&py),
        "the new environment cannot import transformers"
    );
    Ok(py)
}

fn imports_transformers(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "import transformers, jinja2"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The first CUDA device's name, when `nvidia-smi` sees one.
fn gpu_present() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?.trim();
    (out.status.success() && !first.is_empty()).then(|| first.to_owned())
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine_info(gpu: Option<&str>) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "date": command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": command_line("uname", &["-sr"]),
        "rustc": command_line("rustc", &["--version"]),
        "commit": command_line("git", &["rev-parse", "--short", "HEAD"]),
        "gpu": gpu,
    })
}

/// One criterion result.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    bench: String,
    id: String,
    mean_ns: f64,
    /// Bytes per iteration, when the bench declares a byte throughput.
    bytes: Option<f64>,
}

impl Measurement {
    fn gb_per_s(&self) -> Option<f64> {
        self.bytes.map(|b| b / self.mean_ns)
    }
}

/// Reads criterion's `new/benchmark.json` + `new/estimates.json` under `dir`, keeping the ids
/// of the benches that ran (their ids start with the bench's group names).
fn read_criterion(dir: &Path, selected: &[&(&str, &[&str])]) -> Result<Vec<Measurement>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(m) = read_one(&p)? {
                        found.push(m);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    found.retain(|m| selected.iter().any(|(name, _)| bench_of(&m.id) == *name));
    for m in &mut found {
        m.bench = bench_of(&m.id).to_owned();
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// Which `kiln-benches` bench a criterion id belongs to.
fn bench_of(id: &str) -> &'static str {
    if id.starts_with("chat_template") {
        "chat_template"
    } else {
        "quant_codec"
    }
}

fn read_one(new_dir: &Path) -> Result<Option<Measurement>> {
    let (b, e) = (
        new_dir.join("benchmark.json"),
        new_dir.join("estimates.json"),
    );
    if !b.exists() || !e.exists() {
        return Ok(None);
    }
    let read = |p: &Path| -> Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let (bench, est) = (read(&b)?, read(&e)?);
    let Some(id) = bench["full_id"].as_str() else {
        bail!("{}: no full_id", b.display());
    };
    let Some(mean_ns) = est["mean"]["point_estimate"].as_f64() else {
        bail!("{}: no mean estimate", e.display());
    };
    Ok(Some(Measurement {
        bench: String::new(),
        id: id.to_owned(),
        mean_ns,
        bytes: bench["throughput"]["Bytes"].as_f64(),
    }))
}

fn read_records(dir: &Path) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p)?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing the record {}", p.display()))?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

struct Report {
    machine: Value,
    criterion: Vec<Measurement>,
    records: Vec<(String, Value)>,
    notes: Vec<String>,
    gpu: Option<GpuResults>,
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

impl Report {
    fn markdown(&self) -> String {
        let m = &self.machine;
        let s = |v: &Value| v.as_str().unwrap_or("unknown").to_owned();
        let mut md = String::new();
        let _ = writeln!(md, "# kiln benchmark report\n");
        let _ = writeln!(
            md,
            "{} - commit {} - {} ({} cores) - {} - {}{}\n",
            s(&m["date"]),
            s(&m["commit"]),
            s(&m["cpu"]),
            m["cores"],
            s(&m["os"]),
            s(&m["rustc"]),
            m["gpu"]
                .as_str()
                .map(|g| format!(" - GPU: {g}"))
                .unwrap_or_default(),
        );
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.notes.is_empty() {
            md.push('\n');
        }
        for (name, rec) in &self.records {
            if name == "chat_template" {
                let f = |k: &str| rec[k].as_f64().unwrap_or(f64::NAN);
                let versions = &rec["reference"]["versions"];
                let _ = writeln!(
                    md,
                    "## Chat template rendering vs transformers (same run)\n\n{}; transformers {} \
                     (jinja2 {}, Python {}), best of repeats.\n\n| | per render | transformers / kiln |\n|---|---|---|\n\
                     | transformers `apply_chat_template(tokenize=False)` | {:.1} us | |\n\
                     | kiln `apply_json` (converts the JSON every call) | {:.1} us | **{:.1}x** |\n\
                     | kiln `apply_prepared` (messages and tools converted once) | {:.1} us | **{:.1}x** |\n\n\
                     ![chat template](chat_template.svg)\n",
                    rec["input"].as_str().unwrap_or(""),
                    s(&versions["transformers"]),
                    s(&versions["jinja2"]),
                    s(&versions["python"]),
                    f("transformers_us"),
                    f("kiln_apply_json_us"),
                    f("speedup_apply_json"),
                    f("kiln_apply_prepared_us"),
                    f("speedup_apply_prepared"),
                );
            }
        }
        let mut benches: Vec<&str> = self.criterion.iter().map(|m| m.bench.as_str()).collect();
        benches.dedup();
        for bench in benches {
            let _ = writeln!(
                md,
                "## criterion: {bench}\n\n| benchmark | mean | throughput |\n|---|---|---|"
            );
            for m in self.criterion.iter().filter(|m| m.bench == bench) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    m.id,
                    fmt_time(m.mean_ns),
                    m.gb_per_s()
                        .map(|g| format!("{g:.2} GB/s"))
                        .unwrap_or_default()
                );
            }
            if self
                .criterion
                .iter()
                .any(|m| m.bench == bench && m.bytes.is_some())
            {
                let _ = writeln!(md, "\n![{bench}]({bench}.svg)");
            }
            md.push('\n');
        }
        if let Some(gpu) = &self.gpu {
            md.push_str(&gpu.markdown());
        }
        md
    }

    fn json(&self) -> Value {
        json!({
            "machine": self.machine,
            "notes": self.notes,
            "criterion": self.criterion.iter().map(|m| json!({
                "bench": m.bench, "id": m.id, "mean_ns": m.mean_ns,
                "bytes": m.bytes, "gb_per_s": m.gb_per_s(),
            })).collect::<Vec<_>>(),
            "records": self.records.iter().map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>(),
            "gpu": self.gpu.as_ref().map(GpuResults::json),
        })
    }

    fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("report.md"), self.markdown())?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        let mut benches: Vec<&str> = self.criterion.iter().map(|m| m.bench.as_str()).collect();
        benches.dedup();
        for bench in benches {
            let bars: Vec<(String, f64)> = self
                .criterion
                .iter()
                .filter(|m| m.bench == bench)
                .filter_map(|m| m.gb_per_s().map(|g| (m.id.clone(), g)))
                .collect();
            if !bars.is_empty() {
                let title = format!("{bench}: throughput (GB/s, higher is better)");
                std::fs::write(
                    out.join(format!("{bench}.svg")),
                    svg::bar_chart(&title, "GB/s", &bars),
                )?;
            }
        }
        for (name, rec) in &self.records {
            if name == "chat_template" {
                let f = |k: &str| rec[k].as_f64().unwrap_or(0.0);
                let bars = vec![
                    ("transformers".to_owned(), f("transformers_us")),
                    ("kiln apply_json".to_owned(), f("kiln_apply_json_us")),
                    (
                        "kiln apply_prepared".to_owned(),
                        f("kiln_apply_prepared_us"),
                    ),
                ];
                std::fs::write(
                    out.join("chat_template.svg"),
                    svg::bar_chart(
                        "Llama 3.1 template, 3 tools, 10 turns: us per render (lower is better)",
                        "us",
                        &bars,
                    ),
                )?;
            }
        }
        if let Some(gpu) = &self.gpu {
            gpu.write_svgs(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            machine: json!({"date": "2026-11-28 07:00 UTC", "cpu": "x", "cores": 2}),
            criterion: vec![Measurement {
                bench: "quant_codec".into(),
                id: "nf4_4096x4096/dequantize/f32".into(),
                mean_ns: 2e6,
                bytes: Some(8e6),
            }],
            records: vec![(
                "chat_template".into(),
                json!({"input": "in", "transformers_us": 300.0, "kiln_apply_json_us": 30.0,
                       "kiln_apply_prepared_us": 15.0, "speedup_apply_json": 10.0,
                       "speedup_apply_prepared": 20.0,
                       "reference": {"versions": {"transformers": "5.24.0"}}}),
            )],
            notes: vec!["a note".into()],
            gpu: None,
        }
    }

    #[test]
    fn markdown_has_tables_ratios_and_plots() {
        let md = report().markdown();
        assert!(md.contains("| nf4_4096x4096/dequantize/f32 | 2.00 ms | 4.00 GB/s |"));
        assert!(md.contains("**10.0x**") && md.contains("**20.0x**"));
        assert!(md.contains("transformers 5.24.0"));
        assert!(md.contains("![quant_codec](quant_codec.svg)"));
        assert!(md.contains("- a note"));
    }

    #[test]
    fn writes_report_files() {
        let dir = std::env::temp_dir().join(format!("kiln-bench-test-{}", std::process::id()));
        report().write(&dir).unwrap();
        for f in [
            "report.md",
            "report.json",
            "quant_codec.svg",
            "chat_template.svg",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["criterion"][0]["gb_per_s"], 4.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gpu_section_goes_into_both_reports() {
        let results = fetch::repo_root().join("benches/results/2026-11-28-h100-flash");
        if !results.is_dir() {
            return;
        }
        let mut r = report();
        r.criterion.clear();
        r.records.clear();
        r.gpu = Some(gpu_report::load(&results).unwrap());
        let md = r.markdown();
        assert!(md.contains("## GPU\n") && md.contains("Card: NVIDIA H100 80GB HBM3"));
        let dir = std::env::temp_dir().join(format!("kiln-bench-gpu-{}", std::process::id()));
        r.write(&dir).unwrap();
        assert!(dir.join(gpu_report::ATTENTION_SVG).exists());
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["gpu"]["flash"]["checks"]["passed"], 56);
        assert!(
            json["gpu"]["flash"]["prefill"][0]["kiln_over_torch"]
                .as_f64()
                .unwrap()
                > 0.3
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_are_readable() {
        assert_eq!(fmt_time(512.0), "512 ns");
        assert_eq!(fmt_time(2_500.0), "2.50 us");
        assert_eq!(fmt_time(3.2e9), "3.20 s");
    }
}
