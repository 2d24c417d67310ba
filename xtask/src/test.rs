//! `cargo xtask test`: the one test command (README, CI).

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};

use crate::fetch;

/// Where the CUDA kernel sources step writes the generated CUDA C++ (relative to the root).
const CUDA_SOURCES: &str = "target/cuda-sources";

/// NVRTC and the CUDA headers, from their wheels (no GPU or CUDA toolkit needed).
const NVRTC_WHEELS: &[&str] = &[
    "nvidia-cuda-nvrtc==13.2.86",
    "nvidia-cuda-runtime==13.2.86",
    "nvidia-cuda-crt==13.2.86",
    "nvidia-cuda-cccl==13.2.86",
];

struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    lint: bool,
}

const STEPS: &[Step] = &[
    Step {
        name: "format",
        args: &["fmt", "--all", "--", "--check"],
        env: &[],
        lint: true,
    },
    Step {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
        lint: true,
    },
    Step {
        name: "tests (CPU)",
        args: &["test", "--workspace"],
        env: &[],
        lint: false,
    },
    Step {
        name: "GPU kernels on wgpu (lavapipe)",
        args: &[
            "test",
            "--package",
            "kiln-attention",
            "--package",
            "kiln-quant",
            "--features",
            "kiln-attention/wgpu,kiln-quant/wgpu",
        ],
        env: &[],
        lint: false,
    },
    Step {
        name: "models in f16 on wgpu (lavapipe)",
        args: &[
            "run",
            "--package",
            "kiln-models",
            "--features",
            "wgpu",
            "--example",
            "device_parity",
            "--",
            "testdata/models",
            "f16",
        ],
        env: &[],
        lint: false,
    },
    Step {
        name: "model kernels on wgpu (lavapipe)",
        args: &[
            "test",
            "--package",
            "kiln-models",
            "--features",
            "wgpu",
            "--lib",
            "nn::kernels",
        ],
        env: &[],
        lint: false,
    },
    Step {
        name: "CUDA code type-checks",
        args: &[
            "check",
            "--workspace",
            "--all-targets",
            "--features",
            "kiln/cuda,kiln-benches/cuda",
        ],
        env: &[],
        lint: false,
    },
    Step {
        name: "CUDA kernel sources generate",
        args: &[
            "test",
            "--package",
            "kiln-attention",
            "--package",
            "kiln-quant",
            "--package",
            "kiln-models",
            "--features",
            "kiln-models/cuda",
            "--lib",
            "cuda_sources",
        ],
        env: &[("KILN_CUDA_SOURCES", CUDA_SOURCES)],
        lint: false,
    },
    Step {
        name: "docs",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
        lint: true,
    },
];

/// Compiles the sources the previous step wrote with NVRTC, as the CUDA runtime would: a kernel
/// CUDA rejects fails here rather than on the first GPU run.
fn nvrtc_compile() -> Result<()> {
    let root = fetch::repo_root();
    let wheels = fetch::cache_dir().join("nvrtc");
    let python = fetch::python()?;
    let stamp = wheels.join(".kiln-wheels");
    let want = NVRTC_WHEELS.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        println!("== NVRTC wheels: {want}");
        if wheels.exists() {
            std::fs::remove_dir_all(&wheels)?;
        }
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--target"])
            .arg(&wheels)
            .args(NVRTC_WHEELS)
            .status()?;
        ensure!(
            status.success(),
            "installing the NVRTC wheels failed ({status})"
        );
        std::fs::write(&stamp, &want)?;
    }
    println!("== CUDA kernels compile (NVRTC): scripts/nvrtc_check.py {CUDA_SOURCES}");
    let status = Command::new(python)
        .arg(root.join("scripts/nvrtc_check.py"))
        .arg(root.join(CUDA_SOURCES))
        .env("PYTHONPATH", &wheels)
        .current_dir(&root)
        .status()?;
    ensure!(
        status.success(),
        "a generated CUDA kernel does not compile ({status})"
    );
    Ok(())
}

/// Runs every step, stopping at the first failure, and prints how long each took.
pub fn run(lint: bool) -> Result<()> {
    let started = Instant::now();
    println!("== artifacts");
    fetch::fetch(&[])?;
    let mut times = Vec::new();
    for step in STEPS.iter().filter(|s| lint || !s.lint) {
        println!("== {}: cargo {}", step.name, step.args.join(" "));
        for (key, dir) in step.env {
            if *key == "KILN_CUDA_SOURCES" {
                // Sources of kernels that no longer exist must not be checked.
                let _ = std::fs::remove_dir_all(fetch::repo_root().join(dir));
            }
        }
        let t = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args(step.args)
            .envs(step.env.iter().map(|&(key, value)| {
                // Test binaries run in their package's dir: give them an absolute path.
                if key == "KILN_CUDA_SOURCES" {
                    (key, fetch::repo_root().join(value).into_os_string())
                } else {
                    (key, value.into())
                }
            }))
            .current_dir(fetch::repo_root())
            .status()?;
        ensure!(status.success(), "step `{}` failed ({status})", step.name);
        times.push((step.name, t.elapsed()));
        if step.env.iter().any(|(k, _)| *k == "KILN_CUDA_SOURCES") {
            let t = Instant::now();
            nvrtc_compile()?;
            times.push(("CUDA kernels compile (NVRTC)", t.elapsed()));
        }
    }
    println!("== all steps passed in {:.0?}", started.elapsed());
    for (name, took) in times {
        println!("   {name:<24} {took:.0?}");
    }
    Ok(())
}
