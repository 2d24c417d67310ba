//! `kiln generate`: one answer, streamed or as JSON; or a batch of prompts as JSON lines.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use kiln_chat_template::Message;

use super::common::{ModelArgs, SamplingArgs};
use crate::device::{Device, Job, run_job};

/// Arguments of `kiln generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message before each prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object (text, token ids, stop reason) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// A prompt of a batch (repeatable). With several prompts, or `--prompts`, they are
    /// generated together (left-padded) and printed as JSON lines, one per prompt.
    #[arg(long = "prompt", value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// A file of prompts, one per line (empty lines are skipped), printed as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Prompts generated together at most (a longer list runs in several batches).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// The user message.
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
}

impl Args {
    /// Every prompt given (positional, `--prompt`, then the lines of `--prompts`).
    fn all_prompts(&self) -> Result<Vec<String>> {
        let mut all: Vec<String> = self.message.iter().cloned().collect();
        all.extend(self.prompt.iter().cloned());
        if let Some(path) = &self.prompts {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the prompts {}", path.display()))?;
            all.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
        if all.is_empty() {
            bail!("no prompt: pass a message, --prompt or --prompts FILE");
        }
        Ok(all)
    }

    fn messages(&self, prompt: &str) -> Vec<Message> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(prompt.to_owned()));
        messages
    }
}

struct Generate(Args);

impl Job for Generate {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let prompts = args.all_prompts()?;
        let pipeline = args.model.load::<B>(device)?;
        let config = args.sampling.config();
        if prompts.len() > 1 || args.prompts.is_some() {
            let mut stdout = std::io::stdout().lock();
            let mut index = 0;
            for chunk in prompts.chunks(args.batch_size as usize) {
                let conversations: Vec<Vec<Message>> =
                    chunk.iter().map(|p| args.messages(p)).collect();
                let outs = pipeline.chat_batch(&conversations, &config, &mut |_, _| {
                    ControlFlow::Continue(())
                })?;
                for (prompt, out) in chunk.iter().zip(outs) {
                    let v = serde_json::json!({
                        "index": index,
                        "prompt": prompt,
                        "text": out.text,
                        "tokens": out.tokens,
                        "stop": out.stop,
                    });
                    writeln!(stdout, "{v}")?;
                    index += 1;
                }
                stdout.flush()?;
            }
            return Ok(());
        }
        let messages = args.messages(&prompts[0]);
        let mut stdout = std::io::stdout();
        let json = args.json;
        let out = pipeline.chat(&messages, &config, &mut |delta| {
            if !json {
                let _ = stdout.write_all(delta.as_bytes());
                let _ = stdout.flush();
            }
            ControlFlow::Continue(())
        })?;
        if json {
            let v = serde_json::json!({
                "text": out.text,
                "tokens": out.tokens,
                "stop": out.stop,
            });
            println!("{v}");
        } else {
            println!();
        }
        Ok(())
    }
}

pub fn run(device: Device, args: Args) -> Result<()> {
    run_job(device, Generate(args))
}
