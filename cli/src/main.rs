//! `kiln`: chat, generate, embed, perplexity, quantize, inspect and template with LLMs on burn.

mod commands;
mod device;
mod output;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use device::DeviceChoice;

/// kiln makes large language models fit and run fast.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Where tensors live: `auto` picks CUDA when this build has it and a GPU is usable.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto, env = "KILN_DEVICE")]
    device: DeviceChoice,

    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show this build's backends and the device `--device` resolves to.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Chat with a model: an interactive, streaming, multi-turn session.
    Chat(commands::chat::Args),
    /// Answer one prompt (streamed, or `--json`), or a batch of prompts as JSON lines.
    Generate(commands::generate::Args),
    /// Sentence embeddings from an encoder (BERT, sentence-transformers dirs): text or JSON lines.
    Embed(commands::embed::Args),
    /// Print a checkpoint's architecture, dtypes, quantization, parameter count and size.
    Inspect(commands::inspect::Args),
    /// Strided perplexity of a text file (transformers' fixed-length recipe).
    Perplexity(commands::perplexity::Args),
    /// Quantize an HF safetensors model into a bitsandbytes (transformers-loadable) checkpoint.
    Quantize(commands::quantize::Args),
    /// Render a chat template exactly as transformers' `apply_chat_template`.
    Template(commands::template::Args),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { json } => {
            let device = cli.device.resolve()?;
            let backends = device::compiled_backends();
            let mut out = io::stdout().lock();
            if json {
                let v = serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "backends": backends,
                    "device": device.to_string(),
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "kiln {}", env!("CARGO_PKG_VERSION"))?;
                writeln!(out, "backends: {}", backends.join(", "))?;
                writeln!(out, "device:   {device}")?;
            }
            Ok(())
        }
        Command::Chat(args) => commands::chat::run(cli.device.resolve()?, args),
        Command::Generate(args) => commands::generate::run(cli.device.resolve()?, args),
        Command::Embed(args) => commands::embed::run(cli.device.resolve()?, args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Perplexity(args) => commands::perplexity::run(cli.device.resolve()?, args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Template(args) => commands::template::run(args),
        Command::Completions { shell } => {
            // clap_complete panics on a failed write: render first, then write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut script);
            Ok(output::write_stdout(&script)?)
        }
    }
}

fn main() -> ExitCode {
    output::exit_quietly_on_broken_pipe_panics();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader is gone (`kiln ... | head`): nobody is left to tell.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
