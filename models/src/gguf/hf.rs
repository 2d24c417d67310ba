//! The file's tensors under their HF (transformers) names, converted as transformers converts
//! them when it loads a GGUF.
//!
//! llama.cpp's converter renames every tensor (`blk.0.attn_q.weight`), permutes the rows of
//! llama's Q and K for its rotary layout, stores Gemma's RMSNorm weights as `w + 1` (its norm
//! multiplies by the weight, Gemma's by `1 + w`), and drops `lm_head` when it is the embedding.
//! [`Gguf::hf_tensor`] undoes all of that, one tensor at a time.

use std::collections::HashMap;

use super::{Gguf, GgufError, unpermute_qk};

/// Where an HF parameter comes from in the file, and how it is converted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HfSource {
    /// The GGUF tensor.
    pub gguf_name: String,
    /// `Some(n_head)` when the rows must go through [`unpermute_qk`].
    pub unpermute_heads: Option<usize>,
    /// Whether 1 is subtracted from every value (Gemma norms).
    pub subtract_one: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Gemma,
    /// Gemma 2 and 3: four norms per layer and Q/K norms.
    Gemma2,
}

fn family(arch: &str) -> Option<Family> {
    match arch {
        "llama" | "mistral" => Some(Family::Llama),
        "gemma" => Some(Family::Gemma),
        "gemma2" | "gemma3" => Some(Family::Gemma2),
        _ => None,
    }
}

/// The HF name of a GGUF tensor name, for a family.
fn hf_name(family: Family, gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_owned());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, leaf) = rest.split_once('.')?;
    layer.parse::<u32>().ok()?;
    let (module, param) = leaf.rsplit_once('.')?;
    let hf_module = match (module, family) {
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        ("attn_norm", _) => "input_layernorm",
        ("ffn_norm", Family::Llama | Family::Gemma) => "post_attention_layernorm",
        ("ffn_norm", Family::Gemma2) => "pre_feedforward_layernorm",
        ("post_attention_norm", Family::Gemma2) => "post_attention_layernorm",
        ("post_ffw_norm", Family::Gemma2) => "post_feedforward_layernorm",
        ("attn_q_norm", Family::Gemma2) => "self_attn.q_norm",
        ("attn_k_norm", Family::Gemma2) => "self_attn.k_norm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_module}.{param}"))
}

impl Gguf {
    fn family(&self) -> Result<Family, GgufError> {
        let arch = self.arch()?;
        family(arch).ok_or_else(|| GgufError::UnsupportedArchitecture {
            file: self.path().to_path_buf(),
            arch: arch.to_owned(),
        })
    }

    fn hf_map(&self, family: Family) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = self
            .tensors()
            .iter()
            .filter_map(|t| hf_name(family, t.name()).map(|hf| (hf, t.name().to_owned())))
            .collect();
        if !map.contains_key("lm_head.weight") && self.contains_tensor("token_embd.weight") {
            map.insert("lm_head.weight".to_owned(), "token_embd.weight".to_owned());
        }
        map
    }

    /// The HF parameter names this file provides (`model.layers.0.self_attn.q_proj.weight`,
    /// ..., and `lm_head.weight`, tied to the embedding when the file has no `output.weight`).
    /// GGUF tensors without an HF counterpart (rope frequency tables, ...) are left out.
    pub fn hf_tensor_names(&self) -> Result<Vec<String>, GgufError> {
        let mut names: Vec<String> = self.hf_map(self.family()?).into_keys().collect();
        names.sort();
        Ok(names)
    }

    /// Which GGUF tensor an HF parameter comes from and how it is converted.
    pub fn hf_source(&self, hf_name: &str) -> Result<HfSource, GgufError> {
        let family = self.family()?;
        let gguf_name =
            self.hf_map(family)
                .remove(hf_name)
                .ok_or_else(|| GgufError::TensorNotFound {
                    file: self.path().to_path_buf(),
                    tensor: hf_name.to_owned(),
                })?;
        let hints = self.hints()?;
        let unpermute_heads = match family {
            Family::Llama if gguf_name.contains(".attn_q.") => Some(hints.num_attention_heads),
            Family::Llama if gguf_name.contains(".attn_k.") => Some(hints.num_key_value_heads),
            _ => None,
        };
        let subtract_one = family != Family::Llama && gguf_name.ends_with("norm.weight");
        Ok(HfSource {
            gguf_name,
            unpermute_heads,
            subtract_one,
        })
    }

    /// Reads one HF parameter as transformers loads it from this file: row-major shape and f32
    /// values (dequantized, Q/K rows unpermuted for llama, Gemma norms shifted back by 1).
    pub fn hf_tensor(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let src = self.hf_source(hf_name)?;
        let info = self.tensor(&src.gguf_name)?;
        let shape = info.shape();
        let mut values = self.dequantize(&src.gguf_name)?;
        if let Some(heads) = src.unpermute_heads {
            let rows = shape.first().copied().unwrap_or(1);
            values = unpermute_qk(&values, rows, heads).map_err(|e| GgufError::BadTensor {
                file: self.path().to_path_buf(),
                tensor: src.gguf_name.clone(),
                reason: e.to_string(),
            })?;
        }
        if src.subtract_one {
            for v in &mut values {
                *v -= 1.0;
            }
        }
        Ok((shape, values))
    }
}
