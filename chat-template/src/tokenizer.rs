//! Tokenizing rendered prompts as transformers does, and the tokens that end a turn.

use std::ops::Range;
use std::path::Path;

use serde_json::Value as Json;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::{NormalizerWrapper, Replace};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};

use crate::error::{Error, Result};
use crate::load::read_json;
use crate::special::SpecialTokens;
use crate::template::ChatTemplate;

/// Token ids of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 for every token (no padding is added).
    pub attention_mask: Vec<u32>,
    /// Byte range of the text each token came from.
    pub offsets: Vec<(usize, usize)>,
}

/// Tokens that end a turn in the templates that use them. Any of them that appears in a model's
/// template and is one token of its vocabulary stops generation.
pub const END_OF_TURN_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<|end|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|return|>",
    "<|call|>",
    "<|END_OF_TURN_TOKEN|>",
    "<｜end▁of▁sentence｜>",
    "<turn|>",
    "<|im_end_of_turn|>",
];

/// A `tokenizers` tokenizer with the special tokens and decoding rules of its model.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    clean_up_tokenization_spaces: bool,
}

fn tok_err(context: impl Into<String>) -> impl FnOnce(tokenizers::Error) -> Error {
    let context = context.into();
    move |e| Error::Tokenizer {
        context,
        message: e.to_string(),
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` and `tokenizer_config.json` (plus `special_tokens_map.json`) from a
    /// model directory, as transformers' `AutoTokenizer.from_pretrained(dir)` does.
    ///
    /// For `tokenizer_class: LlamaTokenizer` (Llama 2, Mistral), transformers 5 rebuilds the
    /// pre-tokenizer and decoder from the config instead of using those of `tokenizer.json`; this
    /// does the same, so ids match transformers 5 (see COMPATIBILITY.md).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let mut inner =
            tokenizers::Tokenizer::from_file(&path).map_err(tok_err(path.display().to_string()))?;
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Json::Object(Default::default())
        };
        let special = SpecialTokens::from_dir(dir)?;
        let class = config
            .get("tokenizer_class")
            .and_then(Json::as_str)
            .unwrap_or("");
        if matches!(class, "LlamaTokenizer" | "LlamaTokenizerFast") {
            rebuild_llama_pipeline(&mut inner, &config, &path)?;
        }
        let clean = config
            .get("clean_up_tokenization_spaces")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let mut tok = Self::from_tokenizer(inner, special);
        tok.clean_up_tokenization_spaces = clean;
        Ok(tok)
    }

    /// Wraps an existing tokenizer (for instance one built from GGUF metadata), used as is.
    pub fn from_tokenizer(mut inner: tokenizers::Tokenizer, special: SpecialTokens) -> Self {
        // transformers never pads or truncates a rendered chat.
        inner.with_padding(None);
        // Removing truncation cannot fail.
        let _ = inner.with_truncation(None);
        Self {
            inner,
            special,
            clean_up_tokenization_spaces: false,
        }
    }

    /// Whether `decode` applies transformers' `clean_up_tokenization` (only for non-BPE models,
    /// as transformers 5 does).
    pub fn set_clean_up_tokenization_spaces(&mut self, yes: bool) {
        self.clean_up_tokenization_spaces = yes;
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The named special tokens (to pass to [`crate::ApplyOptions::special_tokens`]).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The id of a token of the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes a rendered chat as transformers does: special tokens in the text are matched,
    /// none are added (`add_special_tokens=False`), nothing is padded or truncated.
    pub fn encode_rendered(&self, text: &str) -> Result<Encoding> {
        self.encode(text, false)
    }

    /// Tokenizes plain text as transformers' `tokenizer(text)` does (`add_special_tokens=True`):
    /// the post-processor of `tokenizer.json` adds what the model expects (BOS for Llama,
    /// Mistral and Gemma, nothing for Qwen); nothing is padded or truncated.
    pub fn encode_text(&self, text: &str) -> Result<Encoding> {
        self.encode(text, true)
    }

    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoding> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(tok_err("encode"))?;
        Ok(Encoding {
            ids: enc.get_ids().to_vec(),
            attention_mask: enc.get_attention_mask().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    /// Ids back to text, with or without the special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(tok_err("decode"))?;
        let is_bpe = matches!(self.inner.get_model(), ModelWrapper::BPE(_));
        if self.clean_up_tokenization_spaces && !is_bpe {
            return Ok(clean_up_tokenization(&text));
        }
        Ok(text)
    }

    /// 1 for every token overlapping an assistant span, else 0 (transformers'
    /// `return_assistant_tokens_mask`). `spans` are byte ranges, as in [`crate::Rendered`].
    pub fn assistant_mask(&self, encoding: &Encoding, spans: &[Range<usize>]) -> Vec<u32> {
        let mut mask = vec![0; encoding.ids.len()];
        let mut span = 0;
        for (i, &(start, end)) in encoding.offsets.iter().enumerate() {
            while span < spans.len() && start >= spans[span].end {
                span += 1;
            }
            if span == spans.len() {
                break;
            }
            if end > spans[span].start {
                mask[i] = 1;
            }
        }
        mask
    }

    /// Ids that end generation: the eos token, the end-of-turn tokens `template` uses (see
    /// [`END_OF_TURN_TOKENS`]), and `eos_token_id` of `generation_config.json` when a path is
    /// given. In that order, without repeats.
    pub fn terminators(
        &self,
        template: &ChatTemplate,
        generation_config: Option<&Path>,
    ) -> Result<Vec<u32>> {
        let mut extra = Vec::new();
        if let Some(path) = generation_config {
            let config = read_json(path)?;
            extra = generation_eos_ids(&config, path)?;
        }
        Ok(self.terminators_with(template, &extra))
    }

    /// [`terminators`](Self::terminators) with the generation config's eos ids given directly
    /// (from GGUF metadata, say).
    pub fn terminators_with(&self, template: &ChatTemplate, generation_eos: &[u32]) -> Vec<u32> {
        self.collect_terminators(Some(template), generation_eos)
    }

    /// Ids that end a plain-text completion (a base model, no template): the eos token and
    /// `generation_eos`, in that order, without repeats.
    pub fn plain_terminators(&self, generation_eos: &[u32]) -> Vec<u32> {
        self.collect_terminators(None, generation_eos)
    }

    fn collect_terminators(
        &self,
        template: Option<&ChatTemplate>,
        generation_eos: &[u32],
    ) -> Vec<u32> {
        let mut out = Vec::new();
        let mut push = |id: u32| {
            if !out.contains(&id) {
                out.push(id);
            }
        };
        if let Some(id) = self
            .special
            .eos_token
            .as_deref()
            .and_then(|t| self.token_to_id(t))
        {
            push(id);
        }
        for token in END_OF_TURN_TOKENS {
            if template.is_some_and(|t| t.sources().any(|s| s.contains(token)))
                && let Some(id) = self.token_to_id(token)
            {
                push(id);
            }
        }
        for &id in generation_eos {
            push(id);
        }
        out
    }
}

/// `eos_token_id` of a `generation_config.json`: an id or a list of ids (absent: none).
pub fn generation_eos_ids(config: &Json, path: &Path) -> Result<Vec<u32>> {
    let invalid = || Error::InvalidConfig {
        path: path.to_owned(),
        key: "eos_token_id".into(),
        reason: "expected a token id or a list of token ids".into(),
    };
    let as_id = |v: &Json| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(invalid)
    };
    match config.get("eos_token_id") {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(ids)) => ids.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// transformers 5's `LlamaTokenizer` pipeline: no normalizer, a `Metaspace` pre-tokenizer, and a
/// `Replace`/`ByteFallback`/`Fuse`/`Strip` decoder, whatever `tokenizer.json` says.
fn rebuild_llama_pipeline(
    inner: &mut tokenizers::Tokenizer,
    config: &Json,
    path: &Path,
) -> Result<()> {
    let add_prefix_space = config
        .get("add_prefix_space")
        .and_then(Json::as_bool)
        .unwrap_or(true);
    let legacy = config
        .get("legacy")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let scheme = match (add_prefix_space, legacy) {
        (false, _) => PrependScheme::Never,
        (true, true) => PrependScheme::Always,
        (true, false) => PrependScheme::First,
    };
    inner.with_normalizer(None::<NormalizerWrapper>);
    inner.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)));
    let replace = Replace::new("▁", " ").map_err(tok_err(path.display().to_string()))?;
    let mut steps = vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if add_prefix_space {
        steps.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    inner.with_decoder(Some(Sequence::new(steps)));
    Ok(())
}
