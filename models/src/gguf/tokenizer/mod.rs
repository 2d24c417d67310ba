//! The tokenizer a GGUF file describes, rebuilt as a [`tokenizers::Tokenizer`].
//!
//! GGUF has no `tokenizer.json`: it stores `tokenizer.ggml.*` keys (tokens, merges, scores, token
//! types, special ids). This module turns those into the HF tokenizer the model was trained with,
//! following transformers' GGUF loader (`integrations/gguf/gguf_tokenizer_mapping.py`) and the
//! tokenizer.json files llama.cpp's test vocabularies come from. Three `tokenizer.ggml.model`s:
//!
//! - `gpt2`: byte-level BPE; the split regex comes from `tokenizer.ggml.pre` (see
//!   [`SUPPORTED_PRE`]); unknown values fall back to GPT-2's own regex, as transformers does.
//! - `llama`: SentencePiece BPE with byte fallback (Llama 2, Mistral v0.1, Gemma); merges are
//!   rebuilt from the scores (Gemma: from the token order), spaces become `▁`, and a `▁` is
//!   prepended when `tokenizer.ggml.add_space_prefix` is true (its default).
//! - `bert`: WordPiece with BERT's normalizer; llama.cpp's `▁word`/`piece` spelling is turned back
//!   into `word`/`##piece`.
//!
//! Control tokens (`token_type` 3, and the unknown token, type 2) become special added tokens;
//! user-defined ones (type 4) plain added tokens, matched whole in the text.
//!
//! # Where kiln differs from transformers' GGUF tokenizer
//!
//! Each difference follows the model's own `tokenizer.json` (and llama.cpp):
//!
//! - `pre = smollm | starcoder | refact | command-r`: digits are split one by one before
//!   GPT-2's regex (transformers keeps `2024` whole, with its leading space).
//! - `pre = llama-bpe`: `ignore_merges` as in Llama 3's tokenizer.json (a word that is a token
//!   is taken whole; llama.cpp lacks this and fails on `"Cửa Việt"`).
//! - `pre = qwen2 | command-r`: NFC normalization first, as in their tokenizer.json.
//! - `llama` with `add_space_prefix`: `▁` is prepended to every text piece the way
//!   SentencePiece and the legacy Llama 2 tokenizer.json do, so `" Hello"` becomes `▁▁Hello`
//!   (transformers' `Metaspace` gives `▁Hello`). Gemma files set `add_space_prefix = false`.
//! - The unknown token (type 2) is a special token, as in Llama 2's tokenizer.json.
//! - `bert` files are supported (transformers has no GGUF WordPiece builder).

mod bpe;
mod spm;
mod wordpiece;

use serde_json::json;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::{Gguf, GgufError};

pub use bpe::SUPPORTED_PRE;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub(crate) mod token_type {
    /// An ordinary token.
    pub const NORMAL: i64 = 1;
    /// The unknown token.
    pub const UNKNOWN: i64 = 2;
    /// A control token (`<s>`, `<|im_end|>`, ...).
    pub const CONTROL: i64 = 3;
    /// A user-defined token, matched whole in text.
    pub const USER_DEFINED: i64 = 4;
}

/// Which tokenizer algorithm a GGUF file uses (`tokenizer.ggml.model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `gpt2`: byte-level BPE, with the `tokenizer.ggml.pre` value that chose the split regex.
    ByteLevelBpe {
        /// `tokenizer.ggml.pre` (`default` when absent).
        pre: String,
    },
    /// `llama`: SentencePiece-style BPE with byte fallback.
    SentencePieceBpe,
    /// `bert`: WordPiece.
    WordPiece,
}

/// A special token: its id and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    /// Token id.
    pub id: u32,
    /// Token text as the vocabulary spells it (`<|im_end|>`, `<bos>`, `[CLS]`).
    pub content: String,
}

/// The special tokens a GGUF file names by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<SpecialToken>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<SpecialToken>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<SpecialToken>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<SpecialToken>,
    /// `tokenizer.ggml.seperator_token_id` (llama.cpp's spelling).
    pub sep: Option<SpecialToken>,
    /// `tokenizer.ggml.cls_token_id`.
    pub cls: Option<SpecialToken>,
    /// `tokenizer.ggml.mask_token_id`.
    pub mask: Option<SpecialToken>,
    /// `tokenizer.ggml.eot_token_id` (end of turn, e.g. `<|eot_id|>`).
    pub eot: Option<SpecialToken>,
}

/// A GGUF file's tokenizer, with the facts around it a chat pipeline needs.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    /// The tokenizer. `encode(text, true)` adds BOS/EOS (or `[CLS]`/`[SEP]`) as the file says.
    pub tokenizer: Tokenizer,
    /// The algorithm.
    pub kind: TokenizerKind,
    /// Special tokens by role.
    pub special: SpecialTokens,
    /// Whether BOS is added (`tokenizer.ggml.add_bos_token`; default true for `llama` and
    /// `bert`, false for `gpt2`).
    pub add_bos: bool,
    /// Whether EOS is added (`tokenizer.ggml.add_eos_token`; default false).
    pub add_eos: bool,
    /// Whether a `▁` is prepended to the text (`llama` models only).
    pub add_space_prefix: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    /// The special token strings, as chat templates see them (`bos_token`, `eos_token`, ...).
    pub fn chat_special_tokens(&self) -> kiln_chat_template::SpecialTokens {
        let text = |t: &Option<SpecialToken>| t.as_ref().map(|t| t.content.clone());
        kiln_chat_template::SpecialTokens {
            bos_token: text(&self.special.bos),
            eos_token: text(&self.special.eos),
            unk_token: text(&self.special.unk),
            pad_token: text(&self.special.pad),
            sep_token: text(&self.special.sep),
            cls_token: text(&self.special.cls),
            mask_token: text(&self.special.mask),
            ..Default::default()
        }
    }

    /// The tokenizer, wrapped for chat templates (encode without added specials, decode,
    /// terminators).
    pub fn into_chat_tokenizer(self) -> kiln_chat_template::Tokenizer {
        let special = self.chat_special_tokens();
        kiln_chat_template::Tokenizer::from_tokenizer(self.tokenizer, special)
    }

    /// Ids of every token that ends generation: EOS and EOT when present.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = [&self.special.eos, &self.special.eot]
            .into_iter()
            .flatten()
            .map(|t| t.id)
            .collect();
        ids.dedup();
        ids
    }
}

impl Gguf {
    /// Builds the tokenizer described by the `tokenizer.*` metadata.
    pub fn tokenizer(&self) -> Result<GgufTokenizer, GgufError> {
        build(self)
    }
}

/// The metadata the builders share.
pub(crate) struct Vocab<'a> {
    pub tokens: &'a [String],
    pub types: Vec<i64>,
}

pub(crate) fn tok_err(g: &Gguf, reason: impl Into<String>) -> GgufError {
    GgufError::Tokenizer {
        file: g.path().to_path_buf(),
        reason: reason.into(),
    }
}

fn special(g: &Gguf, tokens: &[String], key: &str) -> Result<Option<SpecialToken>, GgufError> {
    let Some(id) = g.opt_u32(key)? else {
        return Ok(None);
    };
    match tokens.get(id as usize) {
        Some(content) => Ok(Some(SpecialToken {
            id,
            content: content.clone(),
        })),
        None => Err(tok_err(
            g,
            format!("{key} = {id} is out of range ({} tokens)", tokens.len()),
        )),
    }
}

fn build(g: &Gguf) -> Result<GgufTokenizer, GgufError> {
    let model = g.get_str("tokenizer.ggml.model")?;
    let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
    let types = match g.opt_array("tokenizer.ggml.token_type")? {
        Some(_) => g.get_int_array("tokenizer.ggml.token_type")?,
        None => vec![token_type::NORMAL; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(tok_err(
            g,
            format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            ),
        ));
    }
    let vocab = Vocab { tokens, types };
    let k = |name: &str| format!("tokenizer.ggml.{name}");
    let mut sp = SpecialTokens {
        bos: special(g, tokens, &k("bos_token_id"))?,
        eos: special(g, tokens, &k("eos_token_id"))?,
        unk: special(g, tokens, &k("unknown_token_id"))?,
        pad: special(g, tokens, &k("padding_token_id"))?,
        sep: special(g, tokens, &k("seperator_token_id"))?,
        cls: special(g, tokens, &k("cls_token_id"))?,
        mask: special(g, tokens, &k("mask_token_id"))?,
        eot: special(g, tokens, &k("eot_token_id"))?,
    };
    let add_eos = g.opt_bool(&k("add_eos_token"))?.unwrap_or(false);
    let (mut tokenizer, kind, add_bos, add_space_prefix) = match model {
        "gpt2" => {
            let pre = g.opt_str(&k("pre"))?.unwrap_or("default").to_owned();
            let t = bpe::build(g, &vocab, &pre)?;
            let add_bos = g.opt_bool(&k("add_bos_token"))?.unwrap_or(false);
            (t, TokenizerKind::ByteLevelBpe { pre }, add_bos, false)
        }
        "llama" => {
            let add_space_prefix = g.opt_bool(&k("add_space_prefix"))?.unwrap_or(true);
            let t = spm::build(g, &vocab, sp.unk.as_ref(), add_space_prefix)?;
            let add_bos = g.opt_bool(&k("add_bos_token"))?.unwrap_or(true);
            (
                t,
                TokenizerKind::SentencePieceBpe,
                add_bos,
                add_space_prefix,
            )
        }
        "bert" => {
            let t = wordpiece::build(g, &vocab, sp.unk.as_ref())?;
            // BERT's [CLS]/[SEP] play the BOS/EOS roles.
            if sp.cls.is_none() {
                sp.cls = sp.bos.clone();
            }
            if sp.sep.is_none() {
                sp.sep = sp.eos.clone();
            }
            let add_bos = g.opt_bool(&k("add_bos_token"))?.unwrap_or(true);
            (t, TokenizerKind::WordPiece, add_bos, false)
        }
        other => {
            return Err(tok_err(
                g,
                format!("tokenizer.ggml.model `{other}` is not supported (gpt2, llama, bert)"),
            ));
        }
    };
    if kind == TokenizerKind::WordPiece {
        for t in [
            &mut sp.bos,
            &mut sp.eos,
            &mut sp.unk,
            &mut sp.pad,
            &mut sp.sep,
            &mut sp.cls,
            &mut sp.mask,
            &mut sp.eot,
        ]
        .into_iter()
        .flatten()
        {
            t.content = wordpiece::unspell(&t.content);
        }
    }
    add_added_tokens(&mut tokenizer, &vocab, &kind);
    let post = if kind == TokenizerKind::WordPiece {
        let (first, last) = if add_bos {
            (sp.cls.as_ref(), sp.sep.as_ref())
        } else {
            (None, None)
        };
        post_processor(g, first, last, true)?
    } else {
        let first = if add_bos { sp.bos.as_ref() } else { None };
        let last = if add_eos { sp.eos.as_ref() } else { None };
        post_processor(g, first, last, false)?
    };
    if let Some(p) = post {
        tokenizer.with_post_processor(Some(p));
    }
    Ok(GgufTokenizer {
        tokenizer,
        kind,
        special: sp,
        add_bos,
        add_eos,
        add_space_prefix,
        chat_template: g.chat_template()?.map(str::to_owned),
    })
}

/// Control tokens (and the unknown token) as special added tokens, user-defined ones as plain
/// added tokens; both matched on the raw text, like transformers' GGUF loader.
fn add_added_tokens(tokenizer: &mut Tokenizer, vocab: &Vocab<'_>, kind: &TokenizerKind) {
    let byte_level = matches!(kind, TokenizerKind::ByteLevelBpe { .. });
    let spelled = |t: &str| match kind {
        TokenizerKind::WordPiece => wordpiece::unspell(t),
        _ => t.to_owned(),
    };
    let special: Vec<AddedToken> = vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .filter(|&(t, &ty)| {
            let control = ty == token_type::CONTROL || (!byte_level && ty == token_type::UNKNOWN);
            // In a byte-level vocabulary a control token outside the byte alphabet is a
            // mislabel of llama.cpp's converter; transformers skips it, and so do we.
            control && (!byte_level || bpe::is_byte_level_spelled(t))
        })
        .map(|(t, _)| AddedToken::from(spelled(t), true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&special);
    // Only user-defined tokens the vocabulary holds under their own spelling (Gemma's runs of
    // spaces are respelled with `▁` and stay out, as in transformers).
    let plain: Vec<AddedToken> = vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .filter(|&(t, &ty)| ty == token_type::USER_DEFINED && tokenizer.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&plain);
}

/// `first $A last` (and `first $A last first $B last` for pairs; BERT: `[CLS] $A [SEP] $B [SEP]`).
fn post_processor(
    g: &Gguf,
    first: Option<&SpecialToken>,
    last: Option<&SpecialToken>,
    bert: bool,
) -> Result<Option<TemplateProcessing>, GgufError> {
    if first.is_none() && last.is_none() {
        return Ok(None);
    }
    let tok = |t: &SpecialToken, type_id: u32| json!({"SpecialToken": {"id": t.content, "type_id": type_id}});
    let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    single.extend(first.map(|t| tok(t, 0)));
    single.push(seq("A", 0));
    single.extend(last.map(|t| tok(t, 0)));
    pair.extend(single.iter().cloned());
    if !bert {
        pair.extend(first.map(|t| tok(t, 1)));
    }
    pair.push(seq("B", 1));
    pair.extend(last.map(|t| tok(t, 1)));
    let mut specials = serde_json::Map::new();
    for t in [first, last].into_iter().flatten() {
        specials.insert(
            t.content.clone(),
            json!({"id": t.content, "ids": [t.id], "tokens": [t.content]}),
        );
    }
    let value = json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": specials,
    });
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| tok_err(g, format!("building the BOS/EOS template: {e}")))
}
