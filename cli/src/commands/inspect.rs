//! `kiln inspect`: what a checkpoint holds.

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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("{}", summary.path.display());
    println!("  format        {}", summary.format);
    println!(
        "  architecture  {}",
        summary.architecture.as_deref().unwrap_or("(unknown)")
    );
    println!(
        "  quantization  {}",
        summary.quantization.as_deref().unwrap_or("none")
    );
    println!("  tensors       {}", summary.tensors);
    println!(
        "  parameters    {} ({:.1} M)",
        summary.parameters,
        summary.parameters as f64 / 1e6
    );
    println!(
        "  size          {} bytes ({:.1} MiB, {:.2} bits/parameter)",
        summary.bytes,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.bits_per_parameter()
    );
    let dtypes: Vec<String> = summary
        .dtypes
        .iter()
        .map(|(d, n)| format!("{d} x{n}"))
        .collect();
    println!("  dtypes        {}", dtypes.join(", "));
    Ok(())
}
