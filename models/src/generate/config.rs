//! `GenerationConfig`: transformers' generation parameters, with its defaults.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ModelError;

/// How to generate, with the meaning and defaults of transformers' `GenerationConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// New tokens at most; when `None`, `max_length` (prompt included) bounds generation.
    pub max_new_tokens: Option<usize>,
    /// Total length bound used when `max_new_tokens` is `None` (transformers' default: 20).
    pub max_length: usize,
    /// The end-of-sequence tokens cannot be chosen before this many new tokens.
    pub min_new_tokens: usize,
    /// Sample (`true`) or take the most likely token (`false`, greedy).
    pub do_sample: bool,
    /// Softmax temperature (sampling only).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 disables; sampling only).
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set whose probability reaches `top_p` (1.0 disables).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one.
    pub min_p: Option<f32>,
    /// CTRL's repetition penalty over prompt and output (1.0 disables).
    pub repetition_penalty: f32,
    /// Seed of the sampler; sampling with the same seed is reproducible.
    pub seed: Option<u64>,
    /// Stop on any of these ids.
    #[serde(deserialize_with = "one_or_many")]
    pub eos_token_id: Vec<u32>,
    /// Stop when the output contains any of these strings (they are cut from the text).
    pub stop_strings: Vec<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: None,
            max_length: 20,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: None,
            repetition_penalty: 1.0,
            seed: None,
            eos_token_id: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

/// `eos_token_id` is an int or a list of ints in `generation_config.json`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

impl GenerationConfig {
    /// Reads `generation_config.json` (unknown keys are ignored, missing ones take defaults).
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let bytes =
            kiln_quant::checkpoint::read_regular(path).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Greedy decoding of at most `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens: Some(max_new_tokens),
            ..Self::default()
        }
    }

    /// The number of new tokens allowed after a prompt of `prompt_len`.
    pub fn new_token_budget(&self, prompt_len: usize) -> usize {
        self.max_new_tokens
            .unwrap_or_else(|| self.max_length.saturating_sub(prompt_len))
    }

    /// Checks values the way transformers rejects them.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be a positive number, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if let Some(p) = self.min_p
            && !(0.0..=1.0).contains(&p)
        {
            return bad(format!("min_p must be in [0, 1], got {p}"));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be a positive number, got {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_generation_config_json_shapes() {
        // Llama 3.1's file: a list of eos ids and sampling defaults.
        let c: GenerationConfig = serde_json::from_str(
            r#"{"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
                "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"}"#,
        )
        .unwrap();
        assert_eq!(c.eos_token_id, vec![128001, 128008, 128009]);
        assert!(c.do_sample);
        assert_eq!((c.temperature, c.top_p, c.top_k), (0.6, 0.9, 50));
        let c: GenerationConfig = serde_json::from_str(r#"{"eos_token_id": 2}"#).unwrap();
        assert_eq!(c.eos_token_id, vec![2]);
        assert_eq!(c.new_token_budget(5), 15);
    }

    #[test]
    fn invalid_values_are_rejected() {
        let c = GenerationConfig {
            do_sample: true,
            temperature: 0.0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        let c = GenerationConfig {
            top_p: 1.5,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        assert!(GenerationConfig::greedy(4).validate().is_ok());
    }
}
