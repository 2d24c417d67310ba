//! `kiln generate`: one answer, streamed or as JSON; or a batch of prompts as JSON lines.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use kiln_chat_template::Message;

use super::common::{ModelArgs, SamplingArgs, read_tools};
use crate::device::{Device, Job, run_job};

/// Arguments of `kiln generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message before each prompt.
    #[arg(long, conflicts_with = "raw")]
    pub system: Option<String>,
    /// Offer these tools (a JSON array of tool definitions) through the chat template and parse
    /// the calls the model writes (`tool_calls` in `--json`, `[tool call]` lines on stderr).
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub tools: Option<PathBuf>,
    /// Complete the prompt as plain text, without the chat template (as transformers'
    /// `generate(**tokenizer(prompt))`). Always so for a model without a chat template.
    #[arg(long)]
    pub raw: bool,
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
    /// Print timings on stderr: load, prefill and decode tokens per second (with `--json`,
    /// also as a `stats` object: in the answer's object, or a last line after a batch).
    #[arg(long)]
    pub stats: bool,
    /// The user message (with `--raw` or a base model: the text to continue).
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
        let config = args.sampling.config()?;
        let tools = args.tools.as_deref().map(read_tools).transpose()?;
        if tools.is_some() && prompts.len() > 1 {
            bail!("--tools takes one prompt (a batch of prompts cannot use tools)");
        }
        let loading = Instant::now();
        let pipeline = args.model.load::<B>(device.clone())?;
        let load = loading.elapsed();
        let mut memory = GpuMemory::new::<B>(&device);
        tracing::info!("loaded in {:.2} s", load.as_secs_f64());
        let raw = args.raw || pipeline.template().is_none();
        if raw && !args.raw {
            if args.system.is_some() {
                bail!(
                    "{} has no chat template (a base model), so --system has no place: drop it, \
                     or give a template with --template FILE",
                    pipeline.origin().display()
                );
            }
            tracing::info!("no chat template: completing the prompt as plain text");
        }
        if prompts.len() > 1 || args.prompts.is_some() {
            let mut stdout = std::io::stdout().lock();
            let mut index = 0;
            let mut stats = Stats::new(load);
            for chunk in prompts.chunks(args.batch_size as usize) {
                let quiet = &mut |_: usize, _: &str| ControlFlow::Continue(());
                let outs = if raw {
                    let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    pipeline.complete_batch(&texts, &config, quiet)?
                } else {
                    let conversations: Vec<Vec<Message>> =
                        chunk.iter().map(|p| args.messages(p)).collect();
                    pipeline.chat_batch(&conversations, &config, quiet)?
                };
                if let Some(first) = outs.first() {
                    stats.add(first.timing, outs.iter().map(|o| o.tokens.len()).sum());
                }
                memory.sample::<B>(&device);
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
            if args.stats {
                stats.memory = memory.peak_reserved;
                stats.print();
                if args.json {
                    writeln!(stdout, "{}", serde_json::json!({ "stats": stats.json() }))?;
                }
            }
            return Ok(());
        }
        let mut stdout = std::io::stdout();
        let json = args.json;
        let mut write_error = None;
        let mut on_text = |delta: &str| {
            if !json
                && let Err(e) = stdout
                    .write_all(delta.as_bytes())
                    .and_then(|()| stdout.flush())
            {
                // A closed stdout (`| head`): stop generating, and exit quietly.
                write_error = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let mut tool_calls = None;
        let out = if raw {
            if tools.is_some() {
                bail!(
                    "{} has no chat template to offer --tools through (give one with --template)",
                    pipeline.origin().display()
                );
            }
            pipeline.complete(&prompts[0], &config, &mut on_text)?
        } else if let Some(tools) = &tools {
            let reply = pipeline.chat_with_tools(
                &args.messages(&prompts[0]),
                tools,
                &config,
                &mut on_text,
            )?;
            if reply.format.is_none() {
                tracing::warn!(
                    "the chat template shows no known tool-call format: no calls parsed"
                );
            }
            tool_calls = Some(reply.message.tool_calls);
            reply.generation
        } else {
            pipeline.chat(&args.messages(&prompts[0]), &config, &mut on_text)?
        };
        if let Some(e) = write_error {
            return Err(e.into());
        }
        memory.sample::<B>(&device);
        let mut stats = Stats::new(load);
        stats.add(out.timing, out.tokens.len());
        stats.memory = memory.peak_reserved;
        if json {
            let mut v = serde_json::json!({
                "text": out.text,
                "tokens": out.tokens,
                "stop": out.stop,
            });
            if let Some(calls) = &tool_calls {
                v["tool_calls"] = serde_json::to_value(calls)?;
            }
            if args.stats {
                v["stats"] = stats.json();
            }
            writeln!(stdout, "{v}")?;
        } else {
            writeln!(stdout)?;
            for call in tool_calls.iter().flatten() {
                eprintln!("[tool call] {}", serde_json::to_string(call)?);
            }
        }
        if args.stats {
            stats.print();
        }
        Ok(())
    }
}

/// The most GPU memory kiln's allocator held at the points sampled (after the load, after each
/// generation). Its pools keep what they reserved during a run, so this is the run's peak
/// reservation; `None` on the CPU.
struct GpuMemory {
    peak_reserved: Option<u64>,
}

impl GpuMemory {
    fn new<B: Backend>(device: &B::Device) -> Self {
        let mut m = Self {
            peak_reserved: None,
        };
        m.sample::<B>(device);
        m
    }

    fn sample<B: Backend>(&mut self, device: &B::Device) {
        if let Some((_, reserved)) = kiln_models::nn::device_memory::<B>(device) {
            self.peak_reserved = Some(self.peak_reserved.map_or(reserved, |p| p.max(reserved)));
        }
    }
}

/// Timings over the batches of one run.
struct Stats {
    /// GPU memory reserved (see [`GpuMemory`]).
    memory: Option<u64>,
    load: Duration,
    prompt_tokens: usize,
    batch: usize,
    prefill: Duration,
    new_tokens: usize,
    /// Tokens after each batch's first ones, and the time they took.
    decode_tokens: usize,
    decode: Duration,
}

impl Stats {
    fn new(load: Duration) -> Self {
        Self {
            memory: None,
            load,
            prompt_tokens: 0,
            batch: 0,
            prefill: Duration::ZERO,
            new_tokens: 0,
            decode_tokens: 0,
            decode: Duration::ZERO,
        }
    }

    /// A batch whose rows generated `new_tokens` in all; `timing` is its first row's (the rows
    /// of a batch share their passes).
    fn add(&mut self, timing: kiln_models::generate::Timing, new_tokens: usize) {
        self.prompt_tokens += timing.prompt_tokens * timing.batch;
        self.batch = self.batch.max(timing.batch);
        self.prefill += timing.prefill;
        self.new_tokens += new_tokens;
        self.decode_tokens += new_tokens.saturating_sub(timing.batch);
        self.decode += timing.decode;
    }

    fn per_second(tokens: usize, time: Duration) -> Option<f64> {
        (time > Duration::ZERO).then(|| tokens as f64 / time.as_secs_f64())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "load_s": self.load.as_secs_f64(),
            "prompt_tokens": self.prompt_tokens,
            "batch": self.batch,
            "prefill_s": self.prefill.as_secs_f64(),
            "prefill_tok_s": Self::per_second(self.prompt_tokens, self.prefill),
            "ttft_s": (self.load + self.prefill).as_secs_f64(),
            "new_tokens": self.new_tokens,
            "decode_s": self.decode.as_secs_f64(),
            "decode_tok_s": Self::per_second(self.decode_tokens, self.decode),
            "gpu_mem_bytes": self.memory,
        })
    }

    fn print(&self) {
        let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.1}"));
        eprintln!(
            "load {:.2} s | prefill {} tokens in {:.3} s ({} tok/s) | decode {} tokens in {:.3} s \
             ({} tok/s) | batch {}{}",
            self.load.as_secs_f64(),
            self.prompt_tokens,
            self.prefill.as_secs_f64(),
            rate(Self::per_second(self.prompt_tokens, self.prefill)),
            self.decode_tokens,
            self.decode.as_secs_f64(),
            rate(Self::per_second(self.decode_tokens, self.decode)),
            self.batch,
            self.memory.map_or(String::new(), |m| format!(
                " | GPU memory reserved {:.0} MiB",
                m as f64 / (1024.0 * 1024.0)
            )),
        );
    }
}

pub fn run(device: Device, args: Args) -> Result<()> {
    run_job(device, Generate(args))
}
