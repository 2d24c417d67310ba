//! `kiln generate`: one answer, streamed or as JSON.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Result;
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
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object (text, token ids, stop reason) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// The user message.
    pub prompt: String,
}

struct Generate(Args);

impl Job for Generate {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let pipeline = args.model.load::<B>(device)?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(args.prompt.clone()));
        let config = args.sampling.config();
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
