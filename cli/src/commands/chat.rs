//! `kiln chat`: an interactive, streaming, multi-turn conversation.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use kiln_chat_template::Message;
use kiln_models::generate::StopReason;

use super::common::{ModelArgs, SamplingArgs};
use crate::device::{Device, Job, run_job};
use crate::output::{error_chain, is_broken_pipe};

/// Arguments of `kiln chat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Answer this message once and exit, instead of the interactive loop.
    pub prompt: Option<String>,
}

struct Chat(Args);

const HELP: &str = "commands: /reset (forget the conversation), /exit; Ctrl-C stops an answer";

impl Job for Chat {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let config = args.sampling.config()?;
        eprintln!("loading {} ...", args.model.model.display());
        let pipeline = args.model.load::<B>(device)?;
        if pipeline.template().is_none() {
            bail!(
                "{} has no chat template: `kiln chat` needs a chat (instruct) model, or a \
                 template given with --template FILE; `kiln generate` completes plain text with \
                 a base model",
                pipeline.origin().display()
            );
        }
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let flag = interrupted.clone();
            // Ctrl-C stops the answer being written; the session goes on.
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
        }
        let fresh = || -> Vec<Message> {
            args.system
                .iter()
                .map(|s| Message::system(s.clone()))
                .collect()
        };
        let mut history = fresh();
        let answer = |history: &mut Vec<Message>, text: String| -> Result<()> {
            history.push(Message::user(text));
            interrupted.store(false, Ordering::SeqCst);
            let mut stdout = std::io::stdout();
            let mut write_error = None;
            let out = pipeline.chat(history, &config, &mut |delta| {
                if let Err(e) = stdout
                    .write_all(delta.as_bytes())
                    .and_then(|()| stdout.flush())
                {
                    // Nobody reads the answer any more: stop generating it.
                    write_error = Some(e);
                    return ControlFlow::Break(());
                }
                if interrupted.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if let Some(e) = write_error {
                return Err(e.into());
            }
            writeln!(stdout)?;
            if out.stop == StopReason::Interrupted {
                eprintln!("(stopped)");
            }
            history.push(Message::assistant(out.text));
            Ok(())
        };
        if let Some(prompt) = args.prompt.clone() {
            return answer(&mut history, prompt);
        }
        eprintln!("{HELP}");
        let stdin = std::io::stdin();
        loop {
            eprint!("> ");
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim();
            match line {
                "" => continue,
                "/exit" | "/quit" => break,
                "/reset" => {
                    history = fresh();
                    eprintln!("(conversation reset)");
                }
                "/help" => eprintln!("{HELP}"),
                _ => {
                    match answer(&mut history, line.to_owned()) {
                        Err(e) if is_broken_pipe(&e) => return Err(e),
                        Err(e) => {
                            // Keep the session: drop the unanswered turn and report.
                            history.pop();
                            eprintln!("error: {}", error_chain(&e));
                        }
                        Ok(()) => {}
                    }
                }
            }
        }
        Ok(())
    }
}

pub fn run(device: Device, args: Args) -> Result<()> {
    run_job(device, Chat(args))
}
