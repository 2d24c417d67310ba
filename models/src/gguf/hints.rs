//! [`ModelHints`]: the HF-config-like facts a GGUF's metadata states about the model.

use super::{Gguf, GgufError};
use crate::config::MAX_LAYERS;

/// Model hyper-parameters read from `{arch}.*` metadata, named like HF `config.json` fields.
///
/// Only what the file states is filled in; defaults a config class would add (Gemma 3's local
/// RoPE base, its sliding-window pattern, ...) are left to the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHints {
    /// `general.architecture` (`llama`, `gemma3`, `qwen2`, ...).
    pub architecture: String,
    /// `{arch}.block_count`.
    pub num_hidden_layers: usize,
    /// `{arch}.embedding_length`.
    pub hidden_size: usize,
    /// `{arch}.feed_forward_length`.
    pub intermediate_size: Option<usize>,
    /// `{arch}.attention.head_count`.
    pub num_attention_heads: usize,
    /// `{arch}.attention.head_count_kv`, else `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// `{arch}.attention.key_length`, else `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    /// `{arch}.attention.value_length`.
    pub value_head_dim: Option<usize>,
    /// `{arch}.context_length`.
    pub max_position_embeddings: Option<usize>,
    /// `{arch}.rope.freq_base`.
    pub rope_theta: Option<f32>,
    /// `{arch}.rope.dimension_count` (rotary dims per head).
    pub rope_dimension_count: Option<usize>,
    /// `{arch}.rope.scaling.type` (`linear`, `yarn`, ...).
    pub rope_scaling_type: Option<String>,
    /// `{arch}.rope.scaling.factor`.
    pub rope_scaling_factor: Option<f32>,
    /// `{arch}.rope.scaling.original_context_length`.
    pub rope_original_context_length: Option<usize>,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: Option<f32>,
    /// `{arch}.attention.layer_norm_epsilon` (LayerNorm models: BERT, GPT-2).
    pub layer_norm_eps: Option<f32>,
    /// `{arch}.attention.sliding_window`.
    pub sliding_window: Option<usize>,
    /// `{arch}.attn_logit_softcapping` (Gemma 2).
    pub attn_logit_softcapping: Option<f32>,
    /// `{arch}.final_logit_softcapping` (Gemma 2).
    pub final_logit_softcapping: Option<f32>,
    /// `{arch}.attention.causal` (false for encoders).
    pub causal: Option<bool>,
    /// `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`, else the rows of
    /// `token_embd.weight`.
    pub vocab_size: usize,
    /// True when the file has no `output.weight` (the LM head is the embedding matrix).
    pub tie_word_embeddings: bool,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_token_id: Option<u32>,
}

fn usize_of(v: Option<u32>) -> Option<usize> {
    v.map(|x| x as usize)
}

impl ModelHints {
    /// Reads the hints of a GGUF file. Fails, naming the key, when a required key
    /// (`block_count`, `embedding_length`, `attention.head_count`) is missing or of a wrong type,
    /// or when `block_count` is more than any model has (65,536).
    pub fn from_gguf(g: &Gguf) -> Result<Self, GgufError> {
        let arch = g.arch()?.to_owned();
        let k = |name: &str| format!("{arch}.{name}");
        let num_hidden_layers = g.get_u32(&k("block_count"))? as usize;
        if num_hidden_layers > MAX_LAYERS {
            return Err(GgufError::BadMetadata {
                file: g.path().to_path_buf(),
                key: k("block_count"),
                reason: format!(
                    "{num_hidden_layers} layers, more than the {MAX_LAYERS} a model may have"
                ),
            });
        }
        let num_attention_heads = g.get_u32(&k("attention.head_count"))? as usize;
        let hidden_size = g.get_u32(&k("embedding_length"))? as usize;
        let num_key_value_heads =
            usize_of(g.opt_u32(&k("attention.head_count_kv"))?).unwrap_or(num_attention_heads);
        let head_dim = match g.opt_u32(&k("attention.key_length"))? {
            Some(d) => d as usize,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => {
                return Err(GgufError::BadMetadata {
                    file: g.path().to_path_buf(),
                    key: k("attention.head_count"),
                    reason: "is 0 and no attention.key_length is given".to_owned(),
                });
            }
        };
        let vocab_size = match g.opt_u32(&k("vocab_size"))? {
            Some(v) => v as usize,
            None => match g.opt_array("tokenizer.ggml.tokens")? {
                Some(tokens) => tokens.len(),
                None => match g.tensor("token_embd.weight") {
                    Ok(t) => t.shape().first().copied().unwrap_or(0),
                    Err(_) => {
                        return Err(GgufError::MissingKey {
                            file: g.path().to_path_buf(),
                            key: format!(
                                "{} (nor tokenizer.ggml.tokens, nor a token_embd.weight tensor)",
                                k("vocab_size")
                            ),
                        });
                    }
                },
            },
        };
        Ok(Self {
            num_hidden_layers,
            hidden_size,
            intermediate_size: usize_of(g.opt_u32(&k("feed_forward_length"))?),
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            value_head_dim: usize_of(g.opt_u32(&k("attention.value_length"))?),
            max_position_embeddings: usize_of(g.opt_u32(&k("context_length"))?),
            rope_theta: g.opt_f32(&k("rope.freq_base"))?,
            rope_dimension_count: usize_of(g.opt_u32(&k("rope.dimension_count"))?),
            rope_scaling_type: g.opt_str(&k("rope.scaling.type"))?.map(str::to_owned),
            rope_scaling_factor: g.opt_f32(&k("rope.scaling.factor"))?,
            rope_original_context_length: usize_of(
                g.opt_u32(&k("rope.scaling.original_context_length"))?,
            ),
            rms_norm_eps: g.opt_f32(&k("attention.layer_norm_rms_epsilon"))?,
            layer_norm_eps: g.opt_f32(&k("attention.layer_norm_epsilon"))?,
            sliding_window: usize_of(g.opt_u32(&k("attention.sliding_window"))?),
            attn_logit_softcapping: g.opt_f32(&k("attn_logit_softcapping"))?,
            final_logit_softcapping: g.opt_f32(&k("final_logit_softcapping"))?,
            causal: g.opt_bool(&k("attention.causal"))?,
            vocab_size,
            tie_word_embeddings: !g.contains_tensor("output.weight"),
            bos_token_id: g.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_id: g.opt_u32("tokenizer.ggml.eos_token_id")?,
            pad_token_id: g.opt_u32("tokenizer.ggml.padding_token_id")?,
            unk_token_id: g.opt_u32("tokenizer.ggml.unknown_token_id")?,
            architecture: arch,
        })
    }
}

impl Gguf {
    /// The model hyper-parameters this file states; see [`ModelHints`].
    pub fn hints(&self) -> Result<ModelHints, GgufError> {
        ModelHints::from_gguf(self)
    }
}
