//! `kiln quantize`: an HF safetensors model to a bitsandbytes checkpoint, tensor by tensor.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use kiln_quant::QuantConfig;
use kiln_quant::checkpoint::quantize_checkpoint;
use kiln_quant::codec::{FloatDtype, FourBitType};

/// The quantization format.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Quant {
    /// 4-bit NormalFloat.
    Nf4,
    /// 4-bit float.
    Fp4,
    /// LLM.int8 (row-wise int8 with outlier decomposition at run time).
    Int8,
}

/// Arguments of `kiln quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The HF model dir (single or sharded safetensors).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Where the quantized checkpoint goes.
    #[arg(long)]
    pub out: PathBuf,
    /// The format.
    #[arg(long, value_enum)]
    pub quant: Quant,
    /// Quantize the 4-bit absmax too (bitsandbytes' `bnb_4bit_use_double_quant`).
    #[arg(long)]
    pub double_quant: bool,
    /// 4-bit block size (32..4096).
    #[arg(long)]
    pub blocksize: Option<usize>,
    /// `bnb_4bit_compute_dtype`: f16, bf16 or f32.
    #[arg(long, value_parser = ["f16", "bf16", "f32"])]
    pub compute_dtype: Option<String>,
    /// Modules to leave unquantized (`lm_head` and embeddings always are); repeatable.
    #[arg(long = "skip")]
    pub skip: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let mut config = match args.quant {
        Quant::Nf4 => QuantConfig::four_bit(FourBitType::Nf4),
        Quant::Fp4 => QuantConfig::four_bit(FourBitType::Fp4),
        Quant::Int8 => QuantConfig::int8(),
    };
    if args.double_quant {
        config = config.with_double_quant(true);
    }
    if let Some(n) = args.blocksize {
        config = config.with_blocksize(n);
    }
    if let Some(d) = &args.compute_dtype {
        let torch = match d.as_str() {
            "f16" => "float16",
            "bf16" => "bfloat16",
            _ => "float32",
        };
        if let Some(dtype) = FloatDtype::from_torch_name(torch) {
            config = config.with_compute_dtype(dtype);
        }
    }
    if !args.skip.is_empty() {
        config = config.with_skip_modules(args.skip.clone());
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tensors {wide_msg}")
            .expect("valid template"),
    );
    let summary = quantize_checkpoint(&args.model, &args.out, &config, |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.index as u64);
        bar.set_message(p.name.to_string());
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} weights quantized, {} tensors copied; {:.1} MiB -> {:.1} MiB; {:.3} bits per quantized parameter",
        args.out.display(),
        summary.tensors_quantized,
        summary.tensors_copied,
        summary.bytes_before as f64 / (1 << 20) as f64,
        summary.bytes_after as f64 / (1 << 20) as f64,
        summary.bits_per_param()
    );
    Ok(())
}
