//! `kiln perplexity`: strided perplexity of a text file (transformers' fixed-length recipe).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use kiln_models::eval::PerplexityConfig;

use super::common::ModelArgs;
use crate::device::{Device, Job, run_job};

/// Arguments of `kiln perplexity`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The UTF-8 text file to score.
    #[arg(long)]
    pub text: PathBuf,
    /// Tokens per window (transformers' `max_length`).
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// How far each window starts after the previous one (at most `--context`).
    #[arg(long, default_value_t = 256)]
    pub stride: usize,
    /// Score only the first N tokens of the text.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Print one JSON object (ppl, tokens scored, windows, seconds).
    #[arg(long)]
    pub json: bool,
}

struct Perplexity(Args);

impl Job for Perplexity {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let text = std::fs::read_to_string(&args.text)
            .with_context(|| format!("reading the text {}", args.text.display()))?;
        let config = PerplexityConfig {
            context: args.context,
            stride: args.stride,
        };
        config.validate()?;
        let pipeline = args.model.load::<B>(device)?;
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} windows {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .context("progress bar template")?,
        );
        let start = Instant::now();
        let result = pipeline.perplexity(&text, args.max_tokens, &config, &mut |p| {
            bar.set_length(p.windows as u64);
            bar.set_position(p.windows_done as u64);
            bar.set_message(format!(
                "ppl {:.4} ({}/{} tokens)",
                p.ppl, p.tokens_scored, p.tokens
            ));
        });
        bar.finish_and_clear();
        let result = result.with_context(|| format!("scoring {}", args.text.display()))?;
        let seconds = start.elapsed().as_secs_f64();
        if args.json {
            let v = serde_json::json!({
                "ppl": result.ppl,
                "mean_nll": result.mean_nll,
                "nll_sum": result.nll_sum,
                "tokens": result.tokens,
                "windows": result.windows.len(),
                "context": config.context,
                "stride": config.stride,
                "seconds": seconds,
                "window_nll_sums": result.windows.iter().map(|w| w.nll_sum).collect::<Vec<_>>(),
            });
            writeln!(std::io::stdout(), "{v}")?;
        } else {
            writeln!(
                std::io::stdout(),
                "perplexity {:.4} (mean nll {:.5} nats) over {} tokens, {} windows of {} (stride {}), {:.1} s",
                result.ppl,
                result.mean_nll,
                result.tokens,
                result.windows.len(),
                config.context,
                config.stride,
                seconds
            )?;
        }
        Ok(())
    }
}

pub fn run(device: Device, args: Args) -> Result<()> {
    run_job(device, Perplexity(args))
}
