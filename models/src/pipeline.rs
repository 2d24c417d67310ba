//! `ChatPipeline`: tokenizer + chat template + model + terminators, from an HF dir or a GGUF.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use kiln_attention::AttentionImpl;
use kiln_chat_template::{ApplyOptions, ChatTemplate, Message, Tokenizer, ToolCallFormat};
use kiln_prompting::{Completion, GenerationParams, Generator, GeneratorError};
use kiln_quant::{QuantBits, QuantConfig};

use crate::ModelError;
use crate::config::{Architecture, ModelConfig};
use crate::eval::{Perplexity, PerplexityConfig, PerplexityProgress, encode_text, perplexity};
use crate::gemma::{Gemma, GemmaConfig};
use crate::gemma2::{Gemma2, Gemma2Config};
use crate::gemma3::{Gemma3, Gemma3Config};
use crate::generate::{Generation, GenerationConfig, StopReason, generate, generate_batch};
use crate::gguf::{Gguf, ModelHints};
use crate::llama::{Llama, LlamaConfig};
use crate::mistral;
use crate::model::CausalLm;
use crate::registry::Registry;
use crate::weights::{
    FloatDtype, GgufSource, SafetensorsSource, WeightOptions, WeightSource, check_dtype,
};

/// How to load a model.
///
/// `dtype` and `quantization` mean what transformers' `from_pretrained(dtype=...,
/// quantization_config=BitsAndBytesConfig(...))` means: unquantized weights are converted to
/// `dtype`; with a quantization, each Linear of the decoder layers is quantized as it is read
/// (the full-precision model is never held), bit-exact with bitsandbytes. A checkpoint saved
/// quantized (its `config.json` has a `quantization_config`) loads quantized whatever
/// `quantization` says; when given, its `compute_dtype` and `int8_threshold` apply.
#[derive(Debug, Clone)]
pub struct LoadOptions<B: Backend> {
    /// Where the weights go.
    pub device: B::Device,
    /// Attention implementation.
    pub attention: AttentionImpl,
    /// The float dtype of weights and compute (f16/bf16 need a backend that has them).
    pub dtype: FloatDtype,
    /// Quantize the Linear layers on load (bitsandbytes NF4/FP4, double quant, LLM.int8).
    pub quantization: Option<QuantConfig>,
}

impl<B: Backend> Default for LoadOptions<B> {
    fn default() -> Self {
        Self {
            device: Default::default(),
            attention: AttentionImpl::Auto,
            dtype: FloatDtype::F32,
            quantization: None,
        }
    }
}

impl<B: Backend> LoadOptions<B> {
    /// The dtype and quantization, as weight sources carry them; checks that the backend
    /// computes in the dtypes asked for.
    pub fn weight_options(&self) -> Result<WeightOptions, ModelError> {
        check_dtype::<B>(self.dtype, &self.device)?;
        if let Some(q) = &self.quantization {
            q.validate()
                .map_err(|e| ModelError::Config(format!("quantization: {e}")))?;
            if q.bits == QuantBits::Four {
                check_dtype::<B>(q.compute_dtype, &self.device)?;
            }
        }
        Ok(WeightOptions {
            dtype: self.dtype,
            quantization: self.quantization.clone(),
        })
    }
}

/// A model ready to answer: everything `apply_chat_template` + `generate` needs, or, for a base
/// model without a chat template, `tokenizer(text)` + `generate` ([`ChatPipeline::complete`]).
pub struct ChatPipeline<B: Backend> {
    model: Box<dyn CausalLm<B>>,
    tokenizer: Tokenizer,
    /// `None`: a base model, which completes plain text only.
    template: Option<ChatTemplate>,
    /// `eos_token_id` of `generation_config.json` (else of `config.json`; GGUF: its stop ids).
    generation_eos: Vec<u32>,
    terminators: Vec<u32>,
    defaults: GenerationConfig,
    device: B::Device,
    origin: PathBuf,
    /// `max_position_embeddings` (GGUF: `context_length`): the longest sequence it takes.
    max_positions: Option<usize>,
}

impl<B: Backend> ChatPipeline<B> {
    /// Loads an HF model dir (config.json, safetensors, tokenizer.json, chat template) or a
    /// `.gguf` file (config, tokenizer and template from its metadata). A model without a chat
    /// template (a base model) loads too: it completes plain text ([`ChatPipeline::complete`]).
    pub fn load(path: &Path, options: &LoadOptions<B>) -> Result<Self, ModelError> {
        Self::load_with(path, options, &Registry::default())
    }

    /// [`ChatPipeline::load`] with the architectures of `registry` (built-ins and those other
    /// crates registered).
    pub fn load_with(
        path: &Path,
        options: &LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self, ModelError> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Self::load_gguf(path, options, registry)
        } else {
            Self::load_dir(path, options, registry)
        }
    }

    fn load_dir(
        dir: &Path,
        options: &LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self, ModelError> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let start = std::time::Instant::now();
        let mut source = dir_source(dir, options)?;
        let model = registry.build_causal_lm(&config, &mut source, options)?;
        tracing::info!("weights loaded in {:.2} s", start.elapsed().as_secs_f64());
        let max_positions = config
            .text
            .get("max_position_embeddings")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0);
        let start = std::time::Instant::now();
        let tokenizer = Tokenizer::from_dir(dir)?;
        tracing::info!("tokenizer loaded in {:.2} s", start.elapsed().as_secs_f64());
        let template = match ChatTemplate::from_model_dir(dir) {
            Ok(t) => Some(t),
            Err(kiln_chat_template::Error::MissingTemplate { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let generation_config = dir.join("generation_config.json");
        let defaults = if generation_config.exists() {
            GenerationConfig::from_file(&generation_config)?
        } else {
            GenerationConfig::default()
        };
        let generation_eos = if generation_config.exists() {
            defaults.eos_token_id.clone()
        } else {
            // transformers' `GenerationConfig.from_model_config`: the model config's eos ids.
            config_eos_ids(&config, &dir.join("config.json"))?
        };
        Ok(Self::assemble(
            model,
            tokenizer,
            template,
            generation_eos,
            defaults,
            options.device.clone(),
            dir.to_path_buf(),
            max_positions,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        model: Box<dyn CausalLm<B>>,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        generation_eos: Vec<u32>,
        defaults: GenerationConfig,
        device: B::Device,
        origin: PathBuf,
        max_positions: Option<usize>,
    ) -> Self {
        let mut pipeline = Self {
            model,
            tokenizer,
            template: None,
            generation_eos,
            terminators: Vec::new(),
            defaults,
            device,
            origin,
            max_positions,
        };
        pipeline.set_template(template);
        pipeline
    }

    fn load_gguf(
        path: &Path,
        options: &LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self, ModelError> {
        let file = Gguf::open(path)?;
        let hints = file.hints()?;
        if !registry.has_gguf_causal_lm(&hints.architecture) {
            return Err(ModelError::UnknownArchitecture {
                model_type: hints.architecture.clone(),
                known: format!(
                    "{} (GGUF)",
                    registry.gguf_architectures().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let gt = file.tokenizer()?;
        let template = match gt.chat_template.clone() {
            Some(source) => Some(ChatTemplate::from_source(
                path.display().to_string(),
                source,
            )?),
            None => None,
        };
        let stop_ids = gt.stop_ids();
        let tokenizer = gt.into_chat_tokenizer();
        let mut source = GgufSource::new(file)?.with_options(options.weight_options()?);
        let model = registry.build_gguf_causal_lm(&hints, &mut source, options)?;
        Ok(Self::assemble(
            model,
            tokenizer,
            template,
            stop_ids,
            GenerationConfig::default(),
            options.device.clone(),
            path.to_path_buf(),
            hints.max_position_embeddings.filter(|&n| n > 0),
        ))
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template; `None` for a base model (plain-text completion only).
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Replaces the chat template (`--template FILE`), or removes it (`None`: the model then
    /// completes plain text only). The end-of-turn tokens the new template uses become
    /// terminators; those of the old one no longer are.
    pub fn set_template(&mut self, template: Option<ChatTemplate>) {
        self.terminators = match &template {
            Some(t) => self.tokenizer.terminators_with(t, &self.generation_eos),
            None => self.tokenizer.plain_terminators(&self.generation_eos),
        };
        self.template = template;
    }

    /// The chat template, or an error saying the model has none.
    fn chat_template(&self) -> Result<&ChatTemplate, ModelError> {
        self.template
            .as_ref()
            .ok_or_else(|| ModelError::NoChatTemplate {
                origin: self.origin.clone(),
            })
    }

    /// Ids that end a reply (eos, end-of-turn tokens of the template, `generation_config.json`'s
    /// list; without a template, eos and that list).
    pub fn terminators(&self) -> &[u32] {
        &self.terminators
    }

    /// The defaults read from `generation_config.json` (transformers' defaults otherwise).
    pub fn default_generation_config(&self) -> &GenerationConfig {
        &self.defaults
    }

    /// Renders `messages` with the generation prompt and tokenizes them as transformers does.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>, ModelError> {
        self.prompt_ids_with_tools(messages, None)
    }

    /// [`ChatPipeline::prompt_ids`] with tool definitions (JSON schemas, as transformers'
    /// `apply_chat_template(tools=...)`) rendered by the template.
    pub fn prompt_ids_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<Vec<u32>, ModelError> {
        let options = ApplyOptions {
            add_generation_prompt: true,
            special_tokens: self.tokenizer.special_tokens().clone(),
            tools: tools.map(<[serde_json::Value]>::to_vec),
            ..ApplyOptions::default()
        };
        let rendered = self.chat_template()?.apply(messages, &options)?;
        Ok(self.tokenizer.encode_rendered(&rendered.text)?.ids)
    }

    /// Tokenizes plain text as `tokenizer(text)` does (BOS when the tokenizer adds one).
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self.tokenizer.encode_text(text)?.ids)
    }

    /// Continues plain text, with no template (a base model; or a chat model used raw), as
    /// transformers' `model.generate(**tokenizer(text))` does. The pipeline's terminators are
    /// added to `config`'s eos ids.
    pub fn complete(
        &self,
        text: &str,
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, ModelError> {
        let prompt = self.text_ids(text)?;
        self.generate_ids(&prompt, config, on_text)
    }

    /// Continues several plain texts in one left-padded batch; each stops on its own.
    pub fn complete_batch(
        &self,
        texts: &[&str],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Result<Vec<Generation>, ModelError> {
        let prompts = texts
            .iter()
            .map(|t| self.text_ids(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.generate_batch_ids(&prompts, config, on_text)
    }

    /// Answers the conversation. The pipeline's terminators are added to `config`'s eos ids.
    pub fn chat(
        &self,
        messages: &[Message],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, ModelError> {
        let prompt = self.prompt_ids(messages)?;
        self.generate_ids(&prompt, config, on_text)
    }

    /// Answers with `tools` offered: renders them through the template, generates, and parses
    /// the tool calls the model wrote, in the format its template implies
    /// ([`ToolCallFormat::detect`]). The reply is the assistant message to append to the
    /// conversation (text and typed calls); results go back as `role: tool` messages in the next
    /// [`ChatPipeline::chat_with_tools`]. A template that takes no tools, or whose call format is
    /// unknown, gives the text alone. Malformed calls are an error naming the format and offset.
    pub fn chat_with_tools(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<ToolReply, ModelError> {
        let prompt = self.prompt_ids_with_tools(messages, Some(tools))?;
        let generation = self.generate_ids(&prompt, config, on_text)?;
        let format = ToolCallFormat::detect(self.chat_template()?);
        let message = match format {
            Some(format) => {
                // Call markers (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`) are special
                // tokens in most vocabularies: parse the text with them, the end token cut.
                let mut ids = generation.tokens.as_slice();
                if let Some((last, rest)) = ids.split_last()
                    && self.terminators.contains(last)
                {
                    ids = rest;
                }
                let raw = self.tokenizer.decode(ids, false)?;
                format.parse(&raw)?.into_message()
            }
            None => Message::assistant(generation.text.clone()),
        };
        Ok(ToolReply {
            generation,
            message,
            format,
        })
    }

    /// The longest sequence (prompt and new tokens) the model takes, from its config
    /// (`max_position_embeddings`, GGUF `context_length`), when it says.
    pub fn max_positions(&self) -> Option<usize> {
        self.max_positions
    }

    /// Refuses prompts longer than the model takes and bounds the new tokens so that prompt and
    /// answer fit (generation then stops with [`crate::generate::StopReason::MaxTokens`]).
    fn fit_positions(
        &self,
        longest_prompt: usize,
        config: &mut GenerationConfig,
    ) -> Result<(), ModelError> {
        let Some(limit) = self.max_positions else {
            return Ok(());
        };
        if longest_prompt > limit {
            return Err(ModelError::Input(format!(
                "the prompt has {longest_prompt} tokens; the model takes at most {limit} \
                 (max_position_embeddings)"
            )));
        }
        let room = limit - longest_prompt;
        let budget = config.new_token_budget(longest_prompt).min(room);
        config.max_new_tokens = Some(budget);
        Ok(())
    }

    /// Generates after raw prompt ids.
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, ModelError> {
        let mut config = config.clone();
        self.fit_positions(prompt.len(), &mut config)?;
        for &t in &self.terminators {
            if !config.eos_token_id.contains(&t) {
                config.eos_token_id.push(t);
            }
        }
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true).unwrap_or_default();
        generate::<B, _>(
            self.model.as_ref(),
            prompt,
            &config,
            &self.device,
            &decode,
            on_text,
        )
    }

    /// Answers several conversations in one left-padded batch ([`generate_batch`]); each
    /// stops on its own. `on_text(index, delta)` streams each answer.
    pub fn chat_batch(
        &self,
        conversations: &[Vec<Message>],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Result<Vec<Generation>, ModelError> {
        let prompts = conversations
            .iter()
            .map(|messages| self.prompt_ids(messages))
            .collect::<Result<Vec<_>, _>>()?;
        self.generate_batch_ids(&prompts, config, on_text)
    }

    /// Generates after several raw prompts in one left-padded batch. The pipeline's
    /// terminators are added to `config`'s eos ids.
    pub fn generate_batch_ids(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        on_text: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Result<Vec<Generation>, ModelError> {
        let mut config = config.clone();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        self.fit_positions(longest, &mut config)?;
        for &t in &self.terminators {
            if !config.eos_token_id.contains(&t) {
                config.eos_token_id.push(t);
            }
        }
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true).unwrap_or_default();
        generate_batch::<B, _>(
            self.model.as_ref(),
            prompts,
            &config,
            &self.device,
            &decode,
            on_text,
        )
    }

    /// Strided perplexity of `text` (transformers' fixed-length recipe): tokenized as
    /// `tokenizer(text)`, cut to the first `max_tokens`; `on_progress` is called after each window.
    pub fn perplexity(
        &self,
        text: &str,
        max_tokens: Option<usize>,
        config: &PerplexityConfig,
        on_progress: &mut dyn FnMut(&PerplexityProgress),
    ) -> Result<Perplexity, ModelError> {
        let ids = encode_text(&self.tokenizer, text, max_tokens)?;
        self.perplexity_ids(&ids, config, on_progress)
    }

    /// Strided perplexity of token ids.
    pub fn perplexity_ids(
        &self,
        ids: &[u32],
        config: &PerplexityConfig,
        on_progress: &mut dyn FnMut(&PerplexityProgress),
    ) -> Result<Perplexity, ModelError> {
        if let Some(limit) = self.max_positions
            && config.context > limit
        {
            return Err(ModelError::Input(format!(
                "a context of {} tokens is more than the model takes ({limit}, \
                 max_position_embeddings)",
                config.context
            )));
        }
        perplexity::<B, _>(self.model.as_ref(), ids, config, &self.device, on_progress)
    }
}

/// `eos_token_id` of `config.json` (an id or a list; absent or null: none).
fn config_eos_ids(config: &ModelConfig, path: &Path) -> Result<Vec<u32>, ModelError> {
    match config.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value::<GenerationConfig>(serde_json::json!({ "eos_token_id": v }))
                .map(|c| c.eos_token_id)
                .map_err(|e| {
                    ModelError::Config(format!(
                        "{}: eos_token_id: {e} (expected a token id or a list of ids)",
                        path.display()
                    ))
                })
        }
    }
}

/// What [`ChatPipeline::chat_with_tools`] returns.
#[derive(Debug, Clone)]
pub struct ToolReply {
    /// The generation (tokens, text with special tokens skipped, stop reason, timings).
    pub generation: Generation,
    /// The assistant message to append to the conversation: its text and the calls it made.
    pub message: Message,
    /// The call format the template implies, when known.
    pub format: Option<ToolCallFormat>,
}

/// The safetensors of an HF model dir, read in the load's dtype and quantization.
fn dir_source<B: Backend>(
    dir: &Path,
    options: &LoadOptions<B>,
) -> Result<SafetensorsSource, ModelError> {
    let source = SafetensorsSource::open(dir)?.with_options(options.weight_options()?);
    warn_compute_fallback::<B>(&source, options);
    Ok(source)
}

/// Says once when a checkpoint's `bnb_4bit_compute_dtype` is one the backend lacks (its 4-bit
/// layers then compute in the model dtype).
fn warn_compute_fallback<B: Backend>(source: &SafetensorsSource, options: &LoadOptions<B>) {
    if options.quantization.is_some() {
        return;
    }
    if let Some(q) = source.stored_quantization()
        && q.bits == QuantBits::Four
        && check_dtype::<B>(q.compute_dtype, &options.device).is_err()
    {
        tracing::warn!(
            "{}: bnb_4bit_compute_dtype {} is not supported by this backend; the 4-bit layers \
             compute in {}",
            source.origin().display(),
            q.compute_dtype,
            options.dtype
        );
    }
}

/// The `model_type`s [`build_model`] builds.
pub const CAUSAL_LM_MODEL_TYPES: &str = "llama, mistral, gemma, gemma2, gemma3_text (gemma3)";

/// The GGUF `general.architecture`s [`build_gguf_model`] builds.
pub const GGUF_ARCHITECTURES: &str = "llama, mistral, gemma, gemma2, gemma3";

/// Loads just the model of an HF dir (config.json + safetensors) or a `.gguf` file.
pub fn load_model<B: Backend>(
    path: &Path,
    options: &LoadOptions<B>,
) -> Result<Box<dyn CausalLm<B>>, ModelError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        let file = Gguf::open(path)?;
        let hints = file.hints()?;
        let mut source = GgufSource::new(file)?.with_options(options.weight_options()?);
        build_gguf_model(&hints, &mut source, options)
    } else {
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let mut source = dir_source(path, options)?;
        build_model(&config, &mut source, options)
    }
}

/// Builds the causal LM a `config.json` names, with weights (HF names) from `source`.
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    source: &mut dyn WeightSource,
    options: &LoadOptions<B>,
) -> Result<Box<dyn CausalLm<B>>, ModelError> {
    let (attention, device) = (options.attention, &options.device);
    Ok(match config.require_architecture()? {
        Architecture::Llama => {
            let c = LlamaConfig::from_config(config)?;
            Box::new(Llama::load(c, source, attention, device)?)
        }
        Architecture::Mistral => {
            let c = mistral::config_from_hf(config)?;
            Box::new(Llama::load(c, source, attention, device)?)
        }
        Architecture::Gemma => {
            let c = GemmaConfig::from_config(config)?;
            Box::new(Gemma::load(c, source, attention, device)?)
        }
        Architecture::Gemma2 => {
            let c = Gemma2Config::from_config(config)?;
            Box::new(Gemma2::load(c, source, attention, device)?)
        }
        Architecture::Gemma3Text => {
            let c = Gemma3Config::from_config(config)?;
            Box::new(Gemma3::load(c, source, attention, device)?)
        }
        Architecture::Bert => {
            return Err(ModelError::UnknownArchitecture {
                model_type: format!("{} (an encoder, not a causal LM)", config.model_type),
                known: CAUSAL_LM_MODEL_TYPES.into(),
            });
        }
    })
}

/// Builds the causal LM a GGUF file's metadata describes (`general.architecture`).
pub fn build_gguf_model<B: Backend>(
    hints: &ModelHints,
    source: &mut dyn WeightSource,
    options: &LoadOptions<B>,
) -> Result<Box<dyn CausalLm<B>>, ModelError> {
    let (attention, device) = (options.attention, &options.device);
    Ok(match hints.architecture.as_str() {
        "llama" => {
            let c = LlamaConfig::from_gguf_hints(hints)?;
            Box::new(Llama::load(c, source, attention, device)?)
        }
        "mistral" => {
            let c = mistral::config_from_gguf(hints)?;
            Box::new(Llama::load(c, source, attention, device)?)
        }
        "gemma" => {
            let c = GemmaConfig::from_gguf_hints(hints)?;
            Box::new(Gemma::load(c, source, attention, device)?)
        }
        "gemma2" => {
            let c = Gemma2Config::from_gguf_hints(hints)?;
            Box::new(Gemma2::load(c, source, attention, device)?)
        }
        "gemma3" => {
            let c = Gemma3Config::from_gguf_hints(hints)?;
            Box::new(Gemma3::load(c, source, attention, device)?)
        }
        other => {
            return Err(ModelError::UnknownArchitecture {
                model_type: other.to_owned(),
                known: format!("{GGUF_ARCHITECTURES} (GGUF)"),
            });
        }
    })
}

impl<B: Backend> Generator for ChatPipeline<B> {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        let config = GenerationConfig {
            max_new_tokens: Some(params.max_new_tokens),
            do_sample: params.temperature > 0.0,
            temperature: if params.temperature > 0.0 {
                params.temperature
            } else {
                1.0
            },
            top_p: params.top_p,
            top_k: params.top_k.unwrap_or(0),
            seed: params.seed,
            stop_strings: params.stop.clone(),
            ..GenerationConfig::default()
        };
        let out = self
            .chat(messages, &config, &mut |_| ControlFlow::Continue(()))
            .map_err(GeneratorError::from_source)?;
        let stop = match out.stop {
            StopReason::Eos(_) | StopReason::Interrupted => {
                kiln_prompting::StopReason::EndOfSequence
            }
            StopReason::StopString(s) => kiln_prompting::StopReason::StopString(s),
            StopReason::MaxTokens => kiln_prompting::StopReason::MaxTokens,
        };
        Ok(Completion::new(out.text, stop))
    }
}
