//! Mistral: Llama's layout with sliding-window attention on every layer.
//!
//! transformers' `MistralForCausalLM` differs from Llama only in `sliding_window` (4096 when
//! the config does not name it, none when it is `null`, as in Mistral 7B v0.2+), so the model
//! is a [`Llama`] built from a config with the window set; sliding layers keep only their
//! window in the KV cache.

use crate::ModelError;
use crate::config::ModelConfig;
use crate::gguf::ModelHints;
use crate::llama::{Llama, LlamaConfig};

/// A Mistral causal LM.
pub type Mistral<B> = Llama<B>;

/// transformers' `MistralConfig.sliding_window` default.
pub const DEFAULT_SLIDING_WINDOW: usize = 4096;

/// The Llama config of a Mistral `config.json` (its `sliding_window` included).
pub fn config_from_hf(config: &ModelConfig) -> Result<LlamaConfig, ModelError> {
    let mut c = LlamaConfig::from_config(config)?;
    c.sliding_window = match config.get("sliding_window") {
        None => Some(DEFAULT_SLIDING_WINDOW),
        Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&w| w > 0)
                .and_then(|w| usize::try_from(w).ok())
                .ok_or_else(|| {
                    ModelError::Config(format!(
                        "sliding_window must be a positive integer, got {v}"
                    ))
                })?,
        ),
    };
    Ok(c)
}

/// The Llama config of a `mistral` (or `llama`) GGUF: `attention.sliding_window` when stated.
pub fn config_from_gguf(hints: &ModelHints) -> Result<LlamaConfig, ModelError> {
    LlamaConfig::from_gguf_hints(hints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(extra: serde_json::Value) -> Result<LlamaConfig, ModelError> {
        let mut v = json!({
            "model_type": "mistral", "hidden_size": 64, "intermediate_size": 112,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
            "vocab_size": 128, "head_dim": null
        });
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        config_from_hf(&ModelConfig::from_value(v)?)
    }

    #[test]
    fn sliding_window_defaults_like_transformers() {
        assert_eq!(parse(json!({})).unwrap().sliding_window, Some(4096));
        assert_eq!(
            parse(json!({"sliding_window": null}))
                .unwrap()
                .sliding_window,
            None
        );
        let c = parse(json!({"sliding_window": 7})).unwrap();
        assert_eq!((c.sliding_window, c.head_dim()), (Some(7), 16));
        let err = parse(json!({"sliding_window": 0})).unwrap_err().to_string();
        assert!(err.contains("sliding_window"), "{err}");
    }
}
