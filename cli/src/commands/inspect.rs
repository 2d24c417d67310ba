//! `kiln inspect`: what a checkpoint holds.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use kiln_models::inspect::inspect;
use kiln_models::resolve::resolve_model;

/// Arguments of `kiln inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An HF model dir, a `.safetensors` file, a `.gguf` file, or a hub id (`org/name`) in the
    /// Hugging Face cache.
    pub model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let summary = inspect(&resolve_model(&args.model)?.path)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        return Ok(());
    }
    writeln!(out, "{}", summary.path.display())?;
    writeln!(out, "  format        {}", summary.format)?;
    writeln!(
        out,
        "  architecture  {}",
        summary.architecture.as_deref().unwrap_or("(unknown)")
    )?;
    writeln!(
        out,
        "  quantization  {}",
        summary.quantization.as_deref().unwrap_or("none")
    )?;
    writeln!(out, "  tensors       {}", summary.tensors)?;
    writeln!(
        out,
        "  parameters    {} ({:.1} M)",
        summary.parameters,
        summary.parameters as f64 / 1e6
    )?;
    writeln!(
        out,
        "  size          {} bytes ({:.1} MiB, {:.2} bits/parameter)",
        summary.bytes,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.bits_per_parameter()
    )?;
    let dtypes: Vec<String> = summary
        .dtypes
        .iter()
        .map(|(d, n)| format!("{d} x{n}"))
        .collect();
    writeln!(out, "  dtypes        {}", dtypes.join(", "))?;
    Ok(())
}
