//! `cargo xtask test`: the one test command (README, CI).

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};

use crate::fetch;

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
        name: "docs",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
        lint: true,
    },
];

/// Runs every step, stopping at the first failure, and prints how long each took.
pub fn run(lint: bool) -> Result<()> {
    let started = Instant::now();
    println!("== artifacts");
    fetch::fetch(&[])?;
    let mut times = Vec::new();
    for step in STEPS.iter().filter(|s| lint || !s.lint) {
        println!("== {}: cargo {}", step.name, step.args.join(" "));
        let t = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args(step.args)
            .envs(step.env.iter().copied())
            .current_dir(fetch::repo_root())
            .status()?;
        ensure!(status.success(), "step `{}` failed ({status})", step.name);
        times.push((step.name, t.elapsed()));
    }
    println!("== all steps passed in {:.0?}", started.elapsed());
    for (name, took) in times {
        println!("   {name:<24} {took:.0?}");
    }
    Ok(())
}
