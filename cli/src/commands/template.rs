//! `kiln template`: render a chat template exactly as transformers' `apply_chat_template`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kiln_chat_template::{
    ApplyOptions, ChatTemplate, Conversation, SpecialTokens, Tokenizer, read_json_list,
};
use kiln_models::gguf::Gguf;

use crate::output::write_stdout;

/// Arguments of `kiln template`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An HF model dir or a `.gguf` file (template, special tokens and tokenizer from it).
    #[arg(long, short = 'm', required_unless_present = "template")]
    pub model: Option<PathBuf>,
    /// A `.jinja` template file (instead of the model's).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// The conversation: a JSON list of messages, or `{"messages", "tools", "documents"}`.
    #[arg(long)]
    pub messages: PathBuf,
    /// Append the assistant header, as `add_generation_prompt=True`.
    #[arg(long)]
    pub add_generation_prompt: bool,
    /// Leave the last message open, as `continue_final_message=True`.
    #[arg(long)]
    pub continue_final_message: bool,
    /// A JSON list of tool schemas.
    #[arg(long)]
    pub tools: Option<PathBuf>,
    /// Print token ids (one JSON list) instead of text.
    #[arg(long)]
    pub tokens: bool,
}

pub fn run(args: Args) -> Result<()> {
    let gguf = args
        .model
        .as_deref()
        .filter(|m| {
            m.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .map(Gguf::open)
        .transpose()?;
    let (template, special, tokenizer) = match (&args.model, &gguf) {
        (Some(path), Some(g)) => {
            let t = g.tokenizer()?;
            let template = match (&args.template, &t.chat_template) {
                (Some(file), _) => Some(ChatTemplate::from_file(file)?),
                (None, Some(src)) => Some(ChatTemplate::from_source(
                    path.display().to_string(),
                    src.clone(),
                )?),
                (None, None) => None,
            };
            let special = t.chat_special_tokens();
            (template, special, Some(t.into_chat_tokenizer()))
        }
        (Some(dir), None) => {
            let template = match &args.template {
                Some(file) => ChatTemplate::from_file(file)?,
                None => ChatTemplate::from_model_dir(dir)?,
            };
            let tokenizer = if args.tokens {
                Some(Tokenizer::from_dir(dir)?)
            } else {
                None
            };
            (Some(template), SpecialTokens::from_dir(dir)?, tokenizer)
        }
        (None, _) => {
            let Some(file) = args.template.as_deref() else {
                bail!("pass --model or --template");
            };
            (
                Some(ChatTemplate::from_file(file)?),
                SpecialTokens::default(),
                None,
            )
        }
    };
    let Some(template) = template else {
        bail!(
            "{}: no chat template in this file; pass --template",
            display(&args.model)
        );
    };
    let conversation = Conversation::from_file(&args.messages)?;
    let tools = match &args.tools {
        Some(path) => Some(read_json_list(path)?),
        None => conversation.tools.clone(),
    };
    let options = ApplyOptions {
        add_generation_prompt: args.add_generation_prompt,
        continue_final_message: args.continue_final_message,
        tools,
        documents: conversation.documents.clone(),
        special_tokens: special,
        ..ApplyOptions::default()
    };
    let rendered = template.apply_json(&conversation.messages, &options)?;
    if args.tokens {
        let Some(tokenizer) = tokenizer else {
            bail!("--tokens needs --model (a dir with tokenizer.json, or a .gguf)");
        };
        let ids = tokenizer.encode_rendered(&rendered.text)?.ids;
        write_stdout(format!("{}\n", serde_json::to_string(&ids)?).as_bytes())?;
    } else {
        write_stdout(rendered.text.as_bytes())?;
    }
    Ok(())
}

fn display(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}
