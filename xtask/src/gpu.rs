//! The GPU suite's pack: `cargo xtask bench --gpu-pack DIR`, and the run of it on this machine.
//!
//! The pack is one flat folder that runs on a GPU machine without the repository or a Rust
//! toolchain: the release binaries of the device benchmarks (`gpu_bench`, an example of
//! `kiln-quant`, and `flash_device`, a binary of `kiln-benches`, both built with `--features
//! cuda` in `target/cuda-rel` so that the dev builds stay as they are, then stripped), the Python
//! references and merge scripts of `benches/gpu/` and `benches/scripts/`, `run.sh` (from
//! `xtask/assets/gpu_run.sh`), `pack.txt` (the commit it was built from) and a `README.md`.
//! `bash DIR/run.sh OUT` writes what [`crate::gpu_report`] reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::fetch;

/// The script that runs the suite, copied into the pack as `run.sh`.
const RUN_SH: &str = include_str!("../assets/gpu_run.sh");

/// A benchmark binary of the pack.
struct Binary {
    /// Its name, in the pack and in cargo.
    name: &'static str,
    package: &'static str,
    /// `--example` or `--bin`.
    kind: &'static str,
    /// Where cargo puts it, under the target directory.
    built: &'static str,
    about: &'static str,
}

const BINARIES: &[Binary] = &[
    Binary {
        name: "gpu_bench",
        package: "kiln-quant",
        kind: "--example",
        built: "release/examples/gpu_bench",
        about: "kiln-quant's device kernels: checks against the CPU codecs, then NF4/FP4/int8 \
                GEMV, dequantize, quantize and copy timings (`quant/examples/gpu_bench.rs`)",
    },
    Binary {
        name: "flash_device",
        package: "kiln-benches",
        kind: "--bin",
        built: "release/flash_device",
        about: "kiln's flash attention kernels: checks against an f64 reference, then prefill \
                and decode timings (`benches/src/bin/flash_device.rs`)",
    },
];

/// The reference and merge scripts: (name in the pack, path in the repository, what it is).
const SCRIPTS: &[(&str, &str, &str)] = &[
    (
        "bench_torch_bnb.py",
        "benches/gpu/bench_torch_bnb.py",
        "torch f16 and bitsandbytes at gpu_bench's shapes",
    ),
    (
        "merge_report.py",
        "benches/gpu/merge_report.py",
        "merges gpu_bench's and bench_torch_bnb.py's JSON into `quant/report.md`",
    ),
    (
        "flash_torch.py",
        "benches/scripts/flash_torch.py",
        "torch SDPA (and eager attention) at flash_device's settings",
    ),
    (
        "flash_merge.py",
        "benches/scripts/flash_merge.py",
        "merges flash_device's and flash_torch.py's JSON into `flash/flash_report.md`",
    ),
];

/// The target directory of the CUDA release builds.
pub fn cuda_target_dir() -> PathBuf {
    fetch::repo_root().join("target").join("cuda-rel")
}

/// Whether `nvidia-smi -L` lists a device.
pub fn cuda_device_listed() -> bool {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// `cargo xtask bench --gpu-pack DIR [--no-build]`: builds the binaries (unless `build` is
/// false, then the ones already in `target/cuda-rel` are taken) and assembles the pack in `dir`.
pub fn pack(dir: &Path, build: bool) -> Result<()> {
    let target = cuda_target_dir();
    if build {
        for b in BINARIES {
            eprintln!(
                "== building {} ({} {}, release, --features cuda)",
                b.name, b.package, b.kind
            );
            let status = Command::new(env!("CARGO"))
                .current_dir(fetch::repo_root())
                .args(["build", "--release", "--package", b.package, b.kind, b.name])
                .args(["--features", "cuda", "--target-dir"])
                .arg(&target)
                .status()
                .context("running cargo build")?;
            ensure!(
                status.success(),
                "building {} ({} {} --features cuda) failed ({status})",
                b.name,
                b.package,
                b.kind
            );
        }
    }
    let info = PackInfo::current(build);
    assemble(&fetch::repo_root(), &target, dir, &info)?;
    eprintln!(
        "pack: {} (run it with `bash {}/run.sh OUT` on the GPU machine)",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// What `pack.txt` records.
#[derive(Debug, Clone)]
pub struct PackInfo {
    /// The commit of the repository at pack time.
    pub commit: String,
    /// Whether the working tree had changes the commit does not hold.
    pub dirty: bool,
    /// When the pack was made (UTC).
    pub packed: String,
    /// Whether the binaries were built for this pack or taken as they were (`--no-build`).
    pub built: bool,
    pub rustc: String,
}

impl PackInfo {
    fn current(built: bool) -> Self {
        let root = fetch::repo_root();
        let run = |program: &str, args: &[&str]| -> Option<String> {
            let out = Command::new(program)
                .args(args)
                .current_dir(&root)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        PackInfo {
            commit: run("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: run("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
            packed: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            built,
            rustc: run("rustc", &["--version"]).unwrap_or_default(),
        }
    }

    fn text(&self) -> String {
        format!(
            "commit={}\ncommit_dirty={}\npacked={}\nbinaries={}\nrustc={}\n",
            self.commit,
            if self.dirty { "yes" } else { "no" },
            self.packed,
            if self.built {
                "built for this pack"
            } else {
                "taken as built (--no-build)"
            },
            self.rustc
        )
    }
}

/// Copies the binaries (from `target`) and the scripts (from `root`) into `dir` and writes
/// `run.sh`, `pack.txt` and `README.md`. Files of `dir` that are not the pack's (an unpacked
/// bitsandbytes wheel in `.bnb`, say) are left alone.
pub fn assemble(root: &Path, target: &Path, dir: &Path, info: &PackInfo) -> Result<()> {
    for b in BINARIES {
        let from = target.join(b.built);
        ensure!(
            from.is_file(),
            "{} is missing: build it with `cargo xtask bench --gpu-pack DIR` (without --no-build)",
            from.display()
        );
    }
    for (_, from, _) in SCRIPTS {
        ensure!(
            root.join(from).is_file(),
            "{} is missing",
            root.join(from).display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for b in BINARIES {
        let from = target.join(b.built);
        let to = dir.join(b.name);
        copy(&from, &to)?;
        strip(&to);
    }
    for (name, from, _) in SCRIPTS {
        copy(&root.join(from), &dir.join(name))?;
    }
    let run = dir.join("run.sh");
    write(&run, RUN_SH)?;
    set_executable(&run)?;
    write(&dir.join("pack.txt"), &info.text())?;
    write(&dir.join("README.md"), &readme(info))?;
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    // A read-only file from an earlier pack would refuse the copy.
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("replacing {}", to.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// Strips an ELF binary in place with `strip` where there is one; otherwise leaves it.
fn strip(path: &Path) {
    let elf = std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x7fELF"));
    if !elf {
        return;
    }
    match Command::new("strip").arg(path).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: strip {} failed ({s}); left as is", path.display()),
        Err(_) => eprintln!(
            "warning: no `strip` here; {} is left unstripped",
            path.display()
        ),
    }
}

fn readme(info: &PackInfo) -> String {
    let mut files = String::new();
    for b in BINARIES {
        files.push_str(&format!("| `{}` | {} |\n", b.name, b.about));
    }
    for (name, from, about) in SCRIPTS {
        files.push_str(&format!("| `{name}` | {about} (`{from}`) |\n"));
    }
    format!(
        "# kiln GPU benchmark pack\n\n\
         Made by `cargo xtask bench --gpu-pack` from commit `{commit}`{dirty} on {packed}; \
         binaries {binaries}.\n\n\
         ## Run\n\n\
         On the GPU machine (a CUDA driver; Python 3 with torch for the references, and \
         bitsandbytes for the quantized ones):\n\n\
         ```\nbash run.sh OUT [--quick] [quant] [flash]\n```\n\n\
         Both suites run when none is named; `--quick` takes one timing per table (a smoke \
         test). A step that fails is recorded in `OUT/status.txt` and the run goes on. \
         `PYTHON` picks the Python (default `python3`); `KILN_GPU_STEP_TIMEOUT` limits each step \
         (seconds, default 5400, 0 for none). bitsandbytes may be an unpacked wheel in `.bnb` \
         next to `run.sh`, in the folder above, or in the current folder.\n\n\
         Then, in the repository: `cargo xtask bench --gpu-results OUT` (add `--no-cpu` to skip \
         the CPU benches) puts the GPU section into `target/kiln-bench/report.md`.\n\n\
         ## Files\n\n\
         | file | what |\n|---|---|\n{files}\
         | `run.sh` | runs both suites (`xtask/assets/gpu_run.sh`) |\n\
         | `pack.txt` | the commit, date and toolchain of this pack (`key=value`) |\n\n\
         ## Results (`OUT`)\n\n\
         | file | what |\n|---|---|\n\
         | `run.txt` | date, card, driver, memory, Python / torch / bitsandbytes versions, and `pack.txt` (`key=value`) |\n\
         | `nvidia-smi.txt` | `nvidia-smi` |\n\
         | `status.txt` | one line per step: `STEP STATUS` (exit code, or `skipped: why`) |\n\
         | `quant/kiln.json`, `kiln.log` | gpu_bench |\n\
         | `quant/torch_bnb.json`, `torch_bnb.log` | bench_torch_bnb.py |\n\
         | `quant/report.md` | merge_report.py |\n\
         | `flash/flash_kiln.json`, `flash_kiln.log` | flash_device (and its `*.checks*.json`) |\n\
         | `flash/flash_torch.json`, `flash_torch.log` | flash_torch.py |\n\
         | `flash/flash_report.md` | flash_merge.py |\n",
        commit = info.commit,
        dirty = if info.dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        packed = info.packed,
        binaries = if info.built {
            "built for this pack"
        } else {
            "taken as already built (`--no-build`)"
        },
    )
}

/// Builds the pack into `pack_dir`, runs it into `results` (emptied first) and returns whether
/// every step passed. A failed step is not an error: `status.txt` records it for the report.
pub fn run_local(pack_dir: &Path, results: &Path, quick: bool) -> Result<bool> {
    pack(pack_dir, true)?;
    if results.exists() {
        std::fs::remove_dir_all(results)
            .with_context(|| format!("clearing {}", results.display()))?;
    }
    eprintln!("== GPU suite: bash {}/run.sh", pack_dir.display());
    let status = Command::new("bash")
        .arg(pack_dir.join("run.sh"))
        .arg(results)
        .args(quick.then_some("--quick"))
        .current_dir(fetch::repo_root())
        .status()
        .context("running bash")?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn info() -> PackInfo {
        PackInfo {
            commit: "0123456789abcdef".into(),
            dirty: false,
            packed: "2026-11-28 09:00 UTC".into(),
            built: false,
            rustc: "rustc 1.95.0".into(),
        }
    }

    /// Stand-ins for the binaries: shell scripts that write what the real ones write.
    fn fake_target(dir: &Path, gpu_bench: &str, flash_device: &str) -> PathBuf {
        let target = dir.join("target");
        std::fs::create_dir_all(target.join("release/examples")).unwrap();
        for (path, body) in [
            ("release/examples/gpu_bench", gpu_bench),
            ("release/flash_device", flash_device),
        ] {
            let p = target.join(path);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            set_executable(&p).unwrap();
        }
        target
    }

    #[test]
    fn missing_binary_is_named() {
        let dir = temp("pack-missing");
        let err = assemble(
            &fetch::repo_root(),
            &dir.join("none"),
            &dir.join("pack"),
            &info(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("release/examples/gpu_bench is missing"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pack_is_flat_and_its_run_records_every_step() {
        let dir = temp("pack-run");
        let target = fake_target(
            &dir,
            // gpu_bench OUT.json [--quick]: writes a result and fails its checks (exit 3).
            r#"echo '{"tool": "kiln-quant gpu_bench", "checks": {"failed": 1, "total": 2, "results": []}, "gemv": [], "int8": []}' > "$1"; exit 3"#,
            // flash_device --out FILE: crashes before writing anything.
            "echo boom >&2; exit 101",
        );
        let pack = dir.join("pack");
        assemble(&fetch::repo_root(), &target, &pack, &info()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&pack)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "README.md",
                "bench_torch_bnb.py",
                "flash_device",
                "flash_merge.py",
                "flash_torch.py",
                "gpu_bench",
                "merge_report.py",
                "pack.txt",
                "run.sh"
            ]
        );
        let pack_txt = std::fs::read_to_string(pack.join("pack.txt")).unwrap();
        assert!(pack_txt.starts_with("commit=0123456789abcdef\n"));
        // Assembling again over the first pack works.
        assemble(&fetch::repo_root(), &target, &pack, &info()).unwrap();

        // No Python with torch (`false` as the Python): the references are skipped.
        let out = dir.join("out");
        let status = Command::new("bash")
            .arg(pack.join("run.sh"))
            .arg(&out)
            .arg("--quick")
            .env("PYTHON", "false")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(1), "{status:?}");
        let steps = std::fs::read_to_string(out.join("status.txt")).unwrap();
        assert_eq!(
            steps.lines().collect::<Vec<_>>(),
            [
                "quant/kiln 3",
                "quant/torch_bnb skipped: torch not importable by false",
                "quant/merge skipped: needs kiln.json, torch_bnb.json and Python",
                "flash/kiln 101",
                "flash/torch skipped: torch not importable by false",
                "flash/merge skipped: needs flash_kiln.json, flash_torch.json and Python",
            ]
        );
        let run = std::fs::read_to_string(out.join("run.txt")).unwrap();
        assert!(run.contains("commit=0123456789abcdef\n"), "{run}");
        assert!(
            run.contains("quick=yes\n") && run.contains("torch=\n"),
            "{run}"
        );
        assert!(out.join("quant/kiln.json").exists() && out.join("nvidia-smi.txt").exists());
        assert!(
            std::fs::read_to_string(out.join("flash/flash_kiln.log"))
                .unwrap()
                .contains("boom")
        );
        // What the run left reads into the report, the failures as notes.
        let g = crate::gpu_report::load(&out).unwrap();
        let md = g.markdown();
        assert!(
            md.contains("- step quant/kiln failed: exit 3 (see its log)."),
            "{md}"
        );
        assert!(md.contains("- step flash/kiln failed: exit 101 (see its log)."));
        assert!(md.contains("- flash suite: no flash_kiln.json"));
        assert!(md.contains("commit 0123456789abcdef - "));
        assert!(md.contains("1/2 passed") && md.contains("--quick"));

        // Only one suite, named.
        let out2 = dir.join("out2");
        let status = Command::new("bash")
            .arg(pack.join("run.sh"))
            .arg(&out2)
            .arg("flash")
            .env("PYTHON", "false")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(1));
        assert!(!out2.join("quant").exists());
        // A bad argument is a usage error.
        let status = Command::new("bash")
            .arg(pack.join("run.sh"))
            .arg(&out2)
            .arg("--nope")
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readme_lists_every_file() {
        let md = readme(&info());
        for name in ["gpu_bench", "flash_device", "run.sh", "pack.txt"]
            .into_iter()
            .chain(SCRIPTS.iter().map(|s| s.0))
        {
            assert!(md.contains(&format!("| `{name}` |")), "{name}");
        }
    }
}
