//! Flags shared by the commands that load a model and generate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_attention::AttentionImpl;
use kiln_chat_template::ChatTemplate;
use kiln_models::generate::GenerationConfig;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use kiln_models::resolve::{Resolved, resolve_model};
use kiln_quant::QuantConfig;
use kiln_quant::codec::{FloatDtype, FourBitType};

/// A float dtype on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    Bf16,
}

impl From<Dtype> for FloatDtype {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => FloatDtype::F32,
            Dtype::F16 => FloatDtype::F16,
            Dtype::Bf16 => FloatDtype::BF16,
        }
    }
}

/// Quantization on load (`--quant`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    /// Keep the weights in `--dtype`.
    None,
    /// bitsandbytes 4-bit NormalFloat (`load_in_4bit`, `bnb_4bit_quant_type="nf4"`).
    Nf4,
    /// bitsandbytes 4-bit float (`bnb_4bit_quant_type="fp4"`).
    Fp4,
    /// bitsandbytes LLM.int8 (`load_in_8bit`, outlier threshold 6.0).
    Int8,
}

/// `--model`, `--attn`, `--dtype` and the quantization flags.
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
    /// Float dtype of the weights and compute (f16/bf16 need a GPU backend).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Quantize every Linear of the decoder layers as the model loads (a checkpoint saved
    /// quantized by bitsandbytes loads quantized without it).
    #[arg(long, value_enum, default_value_t = Quant::None)]
    pub quant: Quant,
    /// Double-quantize the 4-bit absmax (`bnb_4bit_use_double_quant`).
    #[arg(long)]
    pub double_quant: bool,
    /// The dtype 4-bit matmuls compute in (`bnb_4bit_compute_dtype`; default f32).
    #[arg(long, value_enum)]
    pub compute_dtype: Option<Dtype>,
    /// A chat template to use instead of the model's (a `.jinja` file, or a
    /// `tokenizer_config.json` / `chat_template.json` with a `chat_template` key); gives a base
    /// model one.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the chat pipeline on `device` (with `--template`'s template when given).
    pub fn load<B: burn::tensor::backend::Backend>(
        &self,
        device: B::Device,
    ) -> Result<ChatPipeline<B>> {
        // A bad template file fails before the (long) model load.
        let template = self
            .template
            .as_ref()
            .map(|path| {
                ChatTemplate::from_file(path)
                    .with_context(|| format!("--template {}", path.display()))
            })
            .transpose()?;
        let mut pipeline = ChatPipeline::<B>::load(&self.resolve()?.path, &self.options(device)?)?;
        if template.is_some() {
            pipeline.set_template(template);
        }
        Ok(pipeline)
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
            dtype: self.dtype.into(),
            quantization: self.quantization()?,
        })
    }

    /// The `BitsAndBytesConfig` the quantization flags describe.
    pub fn quantization(&self) -> Result<Option<QuantConfig>> {
        let four_bit_only = |flag: &str| {
            anyhow::anyhow!(
                "{flag} applies to 4-bit quantization: add `--quant nf4` or `--quant fp4`"
            )
        };
        let config = match self.quant {
            Quant::None | Quant::Int8 if self.double_quant => {
                return Err(four_bit_only("--double-quant"));
            }
            Quant::None | Quant::Int8 if self.compute_dtype.is_some() => {
                return Err(four_bit_only("--compute-dtype"));
            }
            Quant::None => return Ok(None),
            Quant::Int8 => QuantConfig::int8(),
            Quant::Nf4 => QuantConfig::four_bit(FourBitType::Nf4),
            Quant::Fp4 => QuantConfig::four_bit(FourBitType::Fp4),
        };
        let config = config.with_double_quant(self.double_quant);
        Ok(Some(match self.compute_dtype {
            Some(d) => config.with_compute_dtype(d.into()),
            None => config,
        }))
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
    /// Never end on an end-of-sequence token: generate `--max-new-tokens` (transformers'
    /// `min_new_tokens = max_new_tokens`; for benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// The generation config these flags describe; values transformers would reject (or that
    /// would silently mean something else) are errors naming the flag.
    pub fn config(&self) -> Result<GenerationConfig> {
        let finite = |flag: &str, v: Option<f32>, ok: &dyn Fn(f32) -> bool, want: &str| match v {
            Some(x) if !(x.is_finite() && ok(x)) => {
                Err(anyhow::anyhow!("{flag} must be {want}, got {x}"))
            }
            _ => Ok(()),
        };
        finite(
            "--temperature",
            self.temperature,
            &|x| x >= 0.0,
            "a number >= 0 (0 is greedy)",
        )?;
        finite("--top-p", self.top_p, &|x| x > 0.0 && x <= 1.0, "in (0, 1]")?;
        finite(
            "--min-p",
            self.min_p,
            &|x| (0.0..=1.0).contains(&x),
            "in [0, 1]",
        )?;
        finite(
            "--repetition-penalty",
            self.repetition_penalty,
            &|x| x > 0.0,
            "a number > 0",
        )?;
        let temperature = self.temperature.unwrap_or(0.0);
        let d = GenerationConfig::default();
        Ok(GenerationConfig {
            max_new_tokens: Some(self.max_new_tokens),
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            seed: self.seed,
            stop_strings: self.stop.clone(),
            min_new_tokens: if self.ignore_eos {
                self.max_new_tokens
            } else {
                d.min_new_tokens
            },
            ..d
        })
    }
}

/// Reads `--tools FILE`: a JSON array of tool definitions (JSON schemas, as transformers'
/// `apply_chat_template(tools=...)` takes them).
pub fn read_tools(path: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the tools {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--tools {}: invalid JSON", path.display()))?;
    match value {
        serde_json::Value::Array(tools) if tools.iter().all(serde_json::Value::is_object) => {
            Ok(tools)
        }
        _ => anyhow::bail!(
            "--tools {}: expected a JSON array of tool definitions (objects)",
            path.display()
        ),
    }
}
