//! `kiln chat`: an interactive, streaming, multi-turn conversation.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use kiln_chat_template::Message;
use kiln_models::generate::StopReason;

use super::common::{ModelArgs, SamplingArgs, read_tools};
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
    /// Offer these tools (a JSON array of tool definitions) through the chat template; the
    /// calls the model makes are printed as `[tool call]` lines, and `/tool RESULT` answers
    /// them (a `role: tool` message; the model then goes on).
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Answer this message once and exit, instead of the interactive loop.
    pub prompt: Option<String>,
}

struct Chat(Args);

const HELP: &str = "commands: /reset (forget the conversation), /tool RESULT (answer the last tool \
                    call), /exit; Ctrl-C stops an answer";

impl Job for Chat {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let config = args.sampling.config()?;
        let tools = args.tools.as_deref().map(read_tools).transpose()?;
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
        // Generates the assistant's turn after `history` (its last message is the user's or a
        // tool result) and appends it.
        let respond = |history: &mut Vec<Message>| -> Result<()> {
            interrupted.store(false, Ordering::SeqCst);
            let mut stdout = std::io::stdout();
            let mut write_error = None;
            let mut on_text = |delta: &str| {
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
            };
            let (out, message) = match &tools {
                Some(tools) => {
                    let reply = pipeline.chat_with_tools(history, tools, &config, &mut on_text)?;
                    (reply.generation, reply.message)
                }
                None => {
                    let out = pipeline.chat(history, &config, &mut on_text)?;
                    let message = Message::assistant(out.text.clone());
                    (out, message)
                }
            };
            if let Some(e) = write_error {
                return Err(e.into());
            }
            writeln!(stdout)?;
            if out.stop == StopReason::Interrupted {
                eprintln!("(stopped)");
            }
            for call in &message.tool_calls {
                eprintln!("[tool call] {}", serde_json::to_string(call)?);
            }
            history.push(message);
            Ok(())
        };
        let answer = |history: &mut Vec<Message>, text: String| -> Result<()> {
            history.push(Message::user(text));
            respond(history)
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
                _ if line.starts_with("/tool ") => {
                    // The result of the last assistant turn's call (its id when it has one).
                    let call = history
                        .last()
                        .filter(|m| m.role == "assistant")
                        .and_then(|m| m.tool_calls.last())
                        .cloned();
                    let Some(call) = call else {
                        eprintln!("error: the last answer called no tool");
                        continue;
                    };
                    let mut result = Message::tool(
                        call.id.clone().unwrap_or_default(),
                        line["/tool ".len()..].trim(),
                    );
                    if call.id.is_none() {
                        result.tool_call_id = None;
                    }
                    result.name = Some(call.function.name.clone());
                    let before = history.len();
                    history.push(result);
                    match respond(&mut history) {
                        Err(e) if is_broken_pipe(&e) => return Err(e),
                        Err(e) => {
                            history.truncate(before);
                            eprintln!("error: {}", error_chain(&e));
                        }
                        Ok(()) => {}
                    }
                }
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
