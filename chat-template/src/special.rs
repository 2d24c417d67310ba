//! Named special tokens (`bos_token`, `eos_token`, ...), as transformers passes them to templates.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::load::read_json;

/// The named special tokens a template sees as variables.
///
/// transformers passes `tokenizer.special_tokens_map` to every template: the seven standard names
/// (`bos_token`, `eos_token`, `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token`)
/// that are set, plus any extra named token of `extra_special_tokens` given as a mapping
/// (Gemma 3's `boi_token`, `image_token`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos_token: Option<String>,
    /// End of sequence.
    pub eos_token: Option<String>,
    /// Unknown token.
    pub unk_token: Option<String>,
    /// Separator.
    pub sep_token: Option<String>,
    /// Padding.
    pub pad_token: Option<String>,
    /// Classifier token.
    pub cls_token: Option<String>,
    /// Mask token.
    pub mask_token: Option<String>,
    /// Extra named tokens (`image_token`, ...), also passed to templates.
    pub extra: BTreeMap<String, String>,
    /// `additional_special_tokens` / list-form `extra_special_tokens` (not template variables).
    pub additional: Vec<String>,
}

/// The standard names, in transformers' order.
pub const STANDARD_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Defaults transformers' tokenizer classes apply when `tokenizer_config.json` omits a key.
fn class_defaults(class: &str) -> &'static [(&'static str, &'static str)] {
    match class.trim_end_matches("Fast") {
        "LlamaTokenizer" | "CodeLlamaTokenizer" => &[
            ("unk_token", "<unk>"),
            ("bos_token", "<s>"),
            ("eos_token", "</s>"),
        ],
        "GemmaTokenizer" => &[
            ("unk_token", "<unk>"),
            ("bos_token", "<bos>"),
            ("eos_token", "<eos>"),
            ("pad_token", "<pad>"),
            ("mask_token", "<mask>"),
        ],
        "Qwen2Tokenizer" => &[
            ("eos_token", "<|endoftext|>"),
            ("pad_token", "<|endoftext|>"),
        ],
        "BertTokenizer" => &[
            ("unk_token", "[UNK]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("cls_token", "[CLS]"),
            ("mask_token", "[MASK]"),
        ],
        _ => &[],
    }
}

/// A token in a config: a string, or an `AddedToken` object with `content`.
fn token_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

impl SpecialTokens {
    /// Reads `tokenizer_config.json` (and `special_tokens_map.json` for keys it lacks) in `dir`.
    ///
    /// A directory with neither file gives empty special tokens.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Json::Object(Default::default())
        };
        let mut tokens = Self::from_tokenizer_config(&config, &config_path)?;
        let map_path = dir.join("special_tokens_map.json");
        if map_path.is_file() {
            let map = read_json(&map_path)?;
            for name in STANDARD_NAMES {
                let present = config.get(name).is_some();
                if !present && let Some(text) = map.get(name).and_then(token_text) {
                    *tokens.slot(name) = Some(text);
                }
            }
        }
        Ok(tokens)
    }

    /// The special tokens of a parsed `tokenizer_config.json` (`path` names it in errors).
    pub fn from_tokenizer_config(config: &Json, path: &Path) -> Result<Self> {
        let mut tokens = Self::default();
        let class = config
            .get("tokenizer_class")
            .and_then(Json::as_str)
            .unwrap_or("");
        for (name, default) in class_defaults(class) {
            *tokens.slot(name) = Some((*default).to_owned());
        }
        for name in STANDARD_NAMES {
            match config.get(name) {
                None => {}
                Some(Json::Null) => *tokens.slot(name) = None,
                Some(v) => match token_text(v) {
                    Some(text) => *tokens.slot(name) = Some(text),
                    None => {
                        return Err(Error::InvalidConfig {
                            path: path.to_owned(),
                            key: name.to_owned(),
                            reason: "expected a string or an object with `content`".into(),
                        });
                    }
                },
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            match config.get(key) {
                Some(Json::Array(items)) => {
                    tokens
                        .additional
                        .extend(items.iter().filter_map(token_text));
                }
                Some(Json::Object(map)) => {
                    for (name, v) in map {
                        if let Some(text) = token_text(v) {
                            tokens.extra.insert(name.clone(), text);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(tokens)
    }

    fn slot(&mut self, name: &str) -> &mut Option<String> {
        match name {
            "bos_token" => &mut self.bos_token,
            "eos_token" => &mut self.eos_token,
            "unk_token" => &mut self.unk_token,
            "sep_token" => &mut self.sep_token,
            "pad_token" => &mut self.pad_token,
            "cls_token" => &mut self.cls_token,
            _ => &mut self.mask_token,
        }
    }

    /// A standard special token by name (`"eos_token"`), if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "bos_token" => self.bos_token.as_deref(),
            "eos_token" => self.eos_token.as_deref(),
            "unk_token" => self.unk_token.as_deref(),
            "sep_token" => self.sep_token.as_deref(),
            "pad_token" => self.pad_token.as_deref(),
            "cls_token" => self.cls_token.as_deref(),
            "mask_token" => self.mask_token.as_deref(),
            other => self.extra.get(other).map(String::as_str),
        }
    }

    /// The template variables: `(name, token)` for every set standard token, then the extras.
    pub fn template_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        STANDARD_NAMES
            .into_iter()
            .filter_map(|name| self.get(name).map(|t| (name, t)))
            .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}
