//! kiln's development tasks: `cargo xtask <task>`.

mod artifacts;
mod bench;
mod chat;
mod fetch;
mod gpu;
mod gpu_report;
mod svg;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Development tasks for the kiln workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Download, verify and unpack the real test and demo artifacts into the cache
    /// (`$KILN_CACHE`, else `.cache/kiln` in the repository).
    Fetch {
        /// Artifacts to fetch (all when none): see `cargo xtask fetch --list`.
        names: Vec<String>,
        /// List the artifacts and whether each is in the cache.
        #[arg(long)]
        list: bool,
    },
    /// Chat with the default model (SmolLM2-135M-Instruct), fetching and building what is
    /// missing; with PROMPT, answer it once and exit.
    Chat {
        /// A message to answer once.
        prompt: Option<String>,
        /// More `kiln chat` flags, after `--` (e.g. `-- --temperature 0.7 --system "Be brief."`).
        #[arg(last = true)]
        kiln_args: Vec<String>,
    },
    /// Every measurement: the criterion benches on CPU with their Python references in the same
    /// run, and the GPU suite (kiln-quant's device kernels vs torch f16 / bitsandbytes, flash
    /// attention vs torch SDPA) where a CUDA device is present (`nvidia-smi -L`). Writes
    /// `target/kiln-bench/report.md`, `report.json` and SVG plots.
    ///
    /// For a GPU machine without the repository: `--gpu-pack DIR` builds a self-contained pack;
    /// `bash DIR/run.sh OUT` runs it there; `--gpu-results OUT` (with `--no-cpu` for only that)
    /// puts its results into the report.
    Bench {
        /// Short runs (1 s warm-up, 2 s measurement per benchmark; one timing per table on the
        /// GPU).
        #[arg(long)]
        quick: bool,
        /// Only the benches whose name contains this (`quant_codec`, `chat_template`).
        #[arg(long, conflicts_with = "no_cpu")]
        filter: Option<String>,
        /// The Python that runs the references (default: `$KILN_BENCH_PYTHON`, else a venv made
        /// in `target/kiln-bench/venv` from the pinned requirements).
        #[arg(long)]
        python: Option<std::path::PathBuf>,
        /// Do not run the Python references (no ratios).
        #[arg(long)]
        no_python: bool,
        /// Skip the CPU benches: only the GPU section (from `--gpu-results`, or run here).
        #[arg(long)]
        no_cpu: bool,
        /// Do not run the GPU suite on this machine even where a CUDA device is present.
        #[arg(long)]
        no_gpu: bool,
        /// Report the results folder OUT that `bash DIR/run.sh OUT` wrote on a GPU machine
        /// (card, driver, date, commit, tables with ratios, plots) instead of running the suite
        /// here.
        #[arg(long, value_name = "OUT")]
        gpu_results: Option<std::path::PathBuf>,
        /// Only build the GPU pack into DIR: the release `--features cuda` binaries (built in
        /// `target/cuda-rel`, stripped), the reference scripts, `run.sh` and a README (`bash
        /// DIR/run.sh OUT [--quick]` on the GPU machine). Nothing else runs.
        #[arg(long, value_name = "DIR", conflicts_with_all = [
            "quick", "filter", "python", "no_python", "no_cpu", "no_gpu", "gpu_results",
        ])]
        gpu_pack: Option<std::path::PathBuf>,
        /// With `--gpu-pack`: do not build, take the binaries already in `target/cuda-rel`.
        #[arg(long, requires = "gpu_pack")]
        no_build: bool,
    },
    /// The full check that CI runs: fmt, clippy, every test on CPU and the GPU code type-checked.
    Test {
        /// Skip `cargo fmt --check` and clippy (for a quick local run).
        #[arg(long)]
        no_lint: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Fetch { names, list } => {
            if list {
                fetch::list()
            } else {
                fetch::fetch(&names)
            }
        }
        Task::Chat { prompt, kiln_args } => chat::run(prompt, &kiln_args),
        Task::Test { no_lint } => test::run(!no_lint),
        Task::Bench {
            quick,
            filter,
            python,
            no_python,
            no_cpu,
            no_gpu,
            gpu_results,
            gpu_pack,
            no_build,
        } => match gpu_pack {
            Some(dir) => gpu::pack(&dir, !no_build),
            None => bench::run(&bench::Options {
                quick,
                filter,
                python,
                no_python,
                no_cpu,
                no_gpu,
                gpu_results,
            }),
        },
    }
}
