//! `kiln embed`: sentence embeddings from an encoder model dir (sentence-transformers layout).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use kiln_models::embed::{EmbeddingPipeline, Pooling};

use super::common::{Dtype, ModelArgs, Quant};
use crate::device::{Device, Job, run_job};

/// `--pooling`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingArg {
    /// The first token's state (`[CLS]`).
    Cls,
    /// The mean over the text's tokens.
    Mean,
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
        }
    }
}

/// Arguments of `kiln embed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts to embed.
    pub texts: Vec<String>,
    /// Also embed each non-blank line of this file (`-` reads standard input).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Print one JSON object per line: `{"text": ..., "embedding": [...]}`.
    #[arg(long)]
    pub json: bool,
    /// Keep the pooled vectors as they are (by default they are L2-normalized).
    #[arg(long)]
    pub no_normalize: bool,
    /// Pooling; the model dir's sentence-transformers config (mean when absent) by default.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

impl Args {
    /// Refuses the model flags the embedding pipeline does not apply (it loads encoders
    /// unquantized, in f32), rather than ignore them.
    fn check_model_flags(&self) -> Result<()> {
        let m = &self.model;
        let flag = if m.quant != Quant::None {
            "--quant"
        } else if m.double_quant {
            "--double-quant"
        } else if m.compute_dtype.is_some() {
            "--compute-dtype"
        } else if m.dtype != Dtype::F32 {
            "--dtype"
        } else {
            return Ok(());
        };
        bail!("{flag} is not supported by `kiln embed`: encoders load unquantized, in f32")
    }

    /// The positional texts, then the file's lines.
    fn texts(&self) -> Result<Vec<String>> {
        let mut texts = self.texts.clone();
        if let Some(path) = &self.file {
            let lines: Vec<String> = if path.as_os_str() == "-" {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<_, _>>()
                    .context("reading standard input")?
            } else {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
                text.lines().map(str::to_owned).collect()
            };
            texts.extend(lines.into_iter().filter(|l| !l.trim().is_empty()));
        }
        if texts.is_empty() {
            bail!("nothing to embed: give texts as arguments or --file FILE");
        }
        Ok(texts)
    }
}

struct Embed(Args);

impl Job for Embed {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        args.check_model_flags()?;
        let texts = args.texts()?;
        if args.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let resolved = args.model.resolve()?;
        let path = &resolved.path;
        if path.is_file() {
            bail!(
                "{}: embeddings need an HF model dir (config.json, safetensors, tokenizer.json)",
                path.display()
            );
        }
        let mut pipeline = EmbeddingPipeline::<B>::load(path, &args.model.options::<B>(device)?)?;
        if let Some(p) = args.pooling {
            pipeline.set_pooling(p.into());
        }
        pipeline.set_normalize(!args.no_normalize);
        pipeline.set_batch_size(args.batch_size);

        let bar = if args.file.is_some() {
            ProgressBar::new(texts.len() as u64).with_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} texts {per_sec} {eta}")
                    .expect("valid template"),
            )
        } else {
            ProgressBar::hidden()
        };
        let mut stdout = std::io::stdout().lock();
        for chunk in texts.chunks(args.batch_size) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let vectors = pipeline.embed(&refs)?;
            bar.suspend(|| -> Result<()> {
                for (text, v) in chunk.iter().zip(&vectors) {
                    if args.json {
                        // f32s, not JSON's f64s: the shortest text that reads back the same.
                        let line = JsonLine { text, embedding: v };
                        writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
                    } else {
                        writeln!(stdout, "{}", human(text, v))?;
                    }
                }
                stdout.flush()?;
                Ok(())
            })?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// One `--json` output line.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

/// `text` then a short view of the vector: its size, norm, first and last values.
fn human(text: &str, v: &[f32]) -> String {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let fmt = |xs: &[f32]| {
        xs.iter()
            .map(|x| format!("{x:+.4}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let values = if v.len() <= 8 {
        fmt(v)
    } else {
        format!("{} … {}", fmt(&v[..5]), fmt(&v[v.len() - 3..]))
    };
    format!("{text}\n  [{} dims, norm {norm:.4}] {values}", v.len())
}

pub fn run(device: Device, args: Args) -> Result<()> {
    run_job(device, Embed(args))
}
