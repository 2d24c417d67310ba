//! GGUF files as a [`WeightSource`]: llama.cpp tensor names mapped to HF names, tensors
//! dequantized one at a time, and llama.cpp's rotary Q/K row permutation undone.

use std::path::Path;

use super::{HostTensor, WeightSource};
use crate::ModelError;
use crate::gguf::{Gguf, unpermute_qk};

/// A GGUF file read tensor by tensor under HF names.
pub struct GgufSource {
    file: Gguf,
    /// Q/K rows were permuted by llama.cpp's converter (`llama` architecture files).
    permuted_qk: Option<(usize, usize)>,
}

impl GgufSource {
    /// Wraps an opened file. For `llama` files the Q/K permutation is undone with the head
    /// counts of the metadata.
    pub fn new(file: Gguf) -> Result<Self, ModelError> {
        let hints = file.hints()?;
        let permuted_qk = matches!(hints.architecture.as_str(), "llama" | "mistral")
            .then_some((hints.num_attention_heads, hints.num_key_value_heads));
        Ok(Self { file, permuted_qk })
    }

    /// The underlying file (metadata, tokenizer, chat template).
    pub fn gguf(&self) -> &Gguf {
        &self.file
    }

    /// llama.cpp's name for an HF tensor name, when there is one.
    pub fn gguf_name(hf: &str) -> Option<String> {
        let fixed = match hf {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(n) = fixed {
            return Some(n.to_owned());
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, tail) = rest.split_once('.')?;
        let (module, kind) = tail.rsplit_once('.')?;
        let short = match module {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "post_attention_layernorm" => "ffn_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{layer}.{short}.{kind}"))
    }
}

impl WeightSource for GgufSource {
    fn origin(&self) -> &Path {
        self.file.path()
    }

    fn contains(&self, name: &str) -> bool {
        Self::gguf_name(name).is_some_and(|n| self.file.contains_tensor(&n))
    }

    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, ModelError> {
        let missing = || ModelError::MissingTensor {
            file: self.file.path().to_path_buf(),
            tensor: name.to_owned(),
        };
        let gguf_name = Self::gguf_name(name).ok_or_else(missing)?;
        if !self.file.contains_tensor(&gguf_name) {
            return Err(missing());
        }
        let shape = self.file.tensor(&gguf_name)?.shape();
        let mut data = self.file.dequantize(&gguf_name)?;
        if let Some((heads, kv_heads)) = self.permuted_qk {
            let n_head = if gguf_name.ends_with("attn_q.weight")
                || gguf_name.ends_with("attn_q.bias")
            {
                Some(heads)
            } else if gguf_name.ends_with("attn_k.weight") || gguf_name.ends_with("attn_k.bias") {
                Some(kv_heads)
            } else {
                None
            };
            if let Some(n_head) = n_head {
                data = unpermute_qk(&data, shape[0], n_head)?;
            }
        }
        Ok(HostTensor { shape, data })
    }
}
