//! Flags shared by the commands that load a model and generate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_attention::AttentionImpl;
use kiln_models::generate::GenerationConfig;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use kiln_models::resolve::{Resolved, resolve_model};

/// `--model` and `--attn`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// An HF model dir (config.json, safetensors, tokenizer), a `.gguf` file, or a hub id
    /// (`org/name[@revision][/file]`) already in the Hugging Face cache (`$HF_HUB_CACHE`,
    /// `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    #[arg(long, short = 'm', env = "KILN_MODEL")]
    pub model: PathBuf,
    /// Attention implementation (transformers' `attn_implementation` names work too).
    #[arg(long, default_value = "auto")]
    pub attn: String,
}

impl ModelArgs {
    /// Loads the chat pipeline on `device`.
    pub fn load<B: burn::tensor::backend::Backend>(
        &self,
        device: B::Device,
    ) -> Result<ChatPipeline<B>> {
        Ok(ChatPipeline::<B>::load(
            &self.resolve()?.path,
            &self.options(device)?,
        )?)
    }

    /// The model dir or file `--model` names (hub ids looked up in the local cache).
    pub fn resolve(&self) -> Result<Resolved> {
        let resolved = resolve_model(&self.model)?;
        tracing::info!("model: {resolved}");
        Ok(resolved)
    }

    /// The load options these flags describe, on `device`.
    pub fn options<B: burn::tensor::backend::Backend>(
        &self,
        device: B::Device,
    ) -> Result<LoadOptions<B>> {
        Ok(LoadOptions::<B> {
            device,
            attention: self.attention()?,
        })
    }

    /// The parsed `--attn`.
    pub fn attention(&self) -> Result<AttentionImpl> {
        self.attn
            .parse()
            .with_context(|| format!("--attn {}", self.attn))
    }
}

/// Sampling flags, with transformers' meaning.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// New tokens at most.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sample with this temperature (greedy when absent or 0).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep the k most likely tokens when sampling.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Minimum probability relative to the top token.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// CTRL repetition penalty (1.0 = off).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Sampler seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when the output contains this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The generation config these flags describe.
    pub fn config(&self) -> GenerationConfig {
        let temperature = self.temperature.unwrap_or(0.0);
        let d = GenerationConfig::default();
        GenerationConfig {
            max_new_tokens: Some(self.max_new_tokens),
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            seed: self.seed,
            stop_strings: self.stop.clone(),
            ..d
        }
    }
}
