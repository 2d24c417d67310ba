//! kiln's development tasks: `cargo xtask <task>`.

mod artifacts;
mod fetch;
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
        Task::Test { no_lint } => test::run(!no_lint),
    }
}
