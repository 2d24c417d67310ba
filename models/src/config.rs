//! `config.json` of HF model dirs, in transformers' 4.x and 5.x layouts.
//!
//! transformers 5 renamed `torch_dtype` to `dtype` and moved `rope_theta`/`rope_scaling`
//! into `rope_parameters`; real checkpoints on the hub still use the 4.x keys. Both read the
//! same here.

use std::path::Path;

use serde_json::Value;

use crate::ModelError;

/// The architectures kiln-models builds in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1/2/3/3.1 (also SmolLM2).
    Llama,
    /// Mistral (sliding window).
    Mistral,
    /// Gemma 1.
    Gemma,
    /// Gemma 2.
    Gemma2,
    /// Gemma 3, text part.
    Gemma3Text,
    /// BERT encoders.
    Bert,
}

impl Architecture {
    /// Every built-in architecture with its `model_type`.
    pub const ALL: [(&'static str, Architecture); 6] = [
        ("llama", Architecture::Llama),
        ("mistral", Architecture::Mistral),
        ("gemma", Architecture::Gemma),
        ("gemma2", Architecture::Gemma2),
        ("gemma3_text", Architecture::Gemma3Text),
        ("bert", Architecture::Bert),
    ];

    /// From a `model_type` (`gemma3`, the multimodal wrapper, maps to its text model).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        let model_type = if model_type == "gemma3" {
            "gemma3_text"
        } else {
            model_type
        };
        Self::ALL
            .iter()
            .find(|(name, _)| *name == model_type)
            .map(|(_, a)| *a)
    }
}

/// A parsed `config.json`, normalized across transformers versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `model_type` as written.
    pub model_type: String,
    /// The built-in architecture, when `model_type` names one.
    pub architecture: Option<Architecture>,
    /// The text model's keys (`text_config` of multimodal wrappers, else the whole file).
    pub text: Value,
}

impl ModelConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let bytes =
            kiln_quant::checkpoint::read_regular(path).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(value).map_err(|e| e.in_file(path))
    }

    /// Parses a `config.json` value.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        let model_type = value
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::MissingKey {
                path: None,
                key: "model_type".into(),
            })?
            .to_owned();
        let text = match value.get("text_config") {
            Some(t) if t.is_object() => t.clone(),
            _ => value,
        };
        Ok(Self {
            architecture: Architecture::from_model_type(&model_type),
            model_type,
            text,
        })
    }

    /// The built-in architecture, or an error naming the `model_type` and the known ones.
    pub fn require_architecture(&self) -> Result<Architecture, ModelError> {
        self.architecture
            .ok_or_else(|| ModelError::UnknownArchitecture {
                model_type: self.model_type.clone(),
                known: Architecture::ALL
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// A key of the text model.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.text.get(key)
    }

    /// The weights' dtype: `dtype` (5.x) or `torch_dtype` (4.x).
    pub fn dtype(&self) -> Option<&str> {
        self.get("dtype")
            .or_else(|| self.get("torch_dtype"))
            .and_then(Value::as_str)
    }

    /// RoPE parameters as one object: `rope_parameters` (5.x), else `rope_scaling` with
    /// `rope_theta` added (4.x). For models with per-layer-type parameters (5.x Gemma 3:
    /// `{"full_attention": {...}, "sliding_attention": {...}}`) `layer_type` picks one.
    pub fn rope_parameters(&self, layer_type: Option<&str>) -> Option<Value> {
        if let Some(p) = self.get("rope_parameters").filter(|p| p.is_object()) {
            return match layer_type.and_then(|t| p.get(t)) {
                Some(per_type) => Some(per_type.clone()),
                None => Some(p.clone()),
            };
        }
        let mut p = match self.get("rope_scaling") {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        if let Some(theta) = self.get("rope_theta") {
            p.insert("rope_theta".into(), theta.clone());
        }
        (!p.is_empty()).then_some(Value::Object(p))
    }

    /// The RoPE base frequency, from either layout.
    pub fn rope_theta(&self, layer_type: Option<&str>) -> Option<f64> {
        self.rope_parameters(layer_type)?
            .get("rope_theta")
            .and_then(Value::as_f64)
    }
}

/// The most layers a model may have: far above any released checkpoint (the deepest have a few
/// hundred), low enough that what is sized by the layer count before any weight is read (the
/// per-layer attention pattern, the layer list) stays small. A `config.json` or GGUF header
/// naming billions of layers is refused instead of exhausting memory.
pub(crate) const MAX_LAYERS: usize = 1 << 16;

/// Refuses a layer count above [`MAX_LAYERS`]; `what` names the key.
pub(crate) fn check_layer_count(what: &str, layers: usize) -> Result<(), ModelError> {
    if layers > MAX_LAYERS {
        return Err(ModelError::Config(format!(
            "{what} is {layers}, more than the {MAX_LAYERS} layers a model may have"
        )));
    }
    Ok(())
}

/// The sizes and constants every decoder needs, checked once at load: a config with zero
/// layers (or more than [`MAX_LAYERS`]), a zero width, a non-positive epsilon or RoPE base loads
/// into a model that only produces garbage, so it is refused with the key named. `sizes` are,
/// in order, [`DECODER_SIZE_KEYS`].
pub(crate) fn check_decoder(
    arch: &str,
    sizes: [usize; 6],
    eps: f64,
    rope_bases: &[f64],
) -> Result<(), ModelError> {
    if let Some((key, _)) = DECODER_SIZE_KEYS.iter().zip(sizes).find(|(_, v)| *v == 0) {
        return Err(ModelError::Config(format!(
            "{arch}: {key} must be at least 1"
        )));
    }
    check_layer_count(&format!("{arch}: num_hidden_layers"), sizes[0])?;
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(ModelError::Config(format!(
            "{arch}: rms_norm_eps must be a positive number, got {eps}"
        )));
    }
    if let Some(theta) = rope_bases.iter().find(|t| !(**t > 0.0 && t.is_finite())) {
        return Err(ModelError::Config(format!(
            "{arch}: rope_theta must be a positive number, got {theta}"
        )));
    }
    Ok(())
}

/// [`check_decoder`] on a config struct with the usual HF field names.
macro_rules! check_decoder_config {
    ($arch:expr, $c:expr, $head_dim:expr, $rope_bases:expr) => {
        $crate::config::check_decoder(
            $arch,
            [
                $c.num_hidden_layers,
                $c.hidden_size,
                $c.intermediate_size,
                $c.vocab_size,
                $head_dim,
                $c.num_attention_heads,
            ],
            $c.rms_norm_eps,
            $rope_bases,
        )
    };
}
pub(crate) use check_decoder_config;

/// The `config.json` keys of [`check_decoder`]'s sizes.
pub(crate) const DECODER_SIZE_KEYS: [&str; 6] = [
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "vocab_size",
    "head_dim",
    "num_attention_heads",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transformers_4_and_5_layouts_read_the_same() {
        let v4 = ModelConfig::from_value(json!({
            "model_type": "llama", "torch_dtype": "bfloat16", "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0}
        }))
        .unwrap();
        let v5 = ModelConfig::from_value(json!({
            "model_type": "llama", "dtype": "bfloat16",
            "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0}
        }))
        .unwrap();
        for c in [&v4, &v5] {
            assert_eq!(c.require_architecture().unwrap(), Architecture::Llama);
            assert_eq!(c.dtype(), Some("bfloat16"));
            assert_eq!(c.rope_theta(None), Some(500000.0));
            assert_eq!(c.rope_parameters(None).unwrap()["factor"], 8.0);
        }
    }

    #[test]
    fn gemma3_wrapper_uses_its_text_config_and_per_layer_rope() {
        let c = ModelConfig::from_value(json!({
            "model_type": "gemma3",
            "text_config": {"model_type": "gemma3_text", "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}
        }))
        .unwrap();
        assert_eq!(c.architecture, Some(Architecture::Gemma3Text));
        assert_eq!(c.rope_theta(Some("sliding_attention")), Some(10000.0));
        assert_eq!(c.rope_theta(Some("full_attention")), Some(1000000.0));
    }

    #[test]
    fn absurd_layer_counts_are_refused_before_allocating() {
        // Gemma 2/3 build a per-layer table, and the loaders a layer list, from
        // num_hidden_layers before any weight is read: 2^40 layers must fail, not abort.
        let base = json!({
            "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 64,
            "query_pre_attn_scalar": 16, "num_hidden_layers": 1_u64 << 40
        });
        for model_type in ["llama", "mistral", "gemma", "gemma2", "gemma3_text", "bert"] {
            let mut v = base.clone();
            v["model_type"] = json!(model_type);
            let c = ModelConfig::from_value(v).unwrap();
            let err = match model_type {
                "llama" => crate::llama::LlamaConfig::from_config(&c).map(drop),
                "mistral" => crate::mistral::config_from_hf(&c).map(drop),
                "gemma" => crate::gemma::GemmaConfig::from_config(&c).map(drop),
                "gemma2" => crate::gemma2::Gemma2Config::from_config(&c).map(drop),
                "gemma3_text" => crate::gemma3::Gemma3Config::from_config(&c).map(drop),
                _ => crate::bert::BertConfig::from_config(&c).map(drop),
            }
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("num_hidden_layers") && err.contains("1099511627776"),
                "{model_type}: {err}"
            );
        }
    }

    #[test]
    fn unknown_architecture_names_the_model_type_and_the_file() {
        let dir = std::env::temp_dir().join(format!("kiln-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"model_type": "mamba"}"#).unwrap();
        let c = ModelConfig::from_file(&path).unwrap();
        let err = c.require_architecture().unwrap_err().to_string();
        assert!(err.contains("`mamba`") && err.contains("llama"), "{err}");
        std::fs::write(&path, r#"{"hidden_size": 8}"#).unwrap();
        let err = ModelConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("model_type") && err.contains("config.json"),
            "{err}"
        );
        std::fs::write(&path, r#"{"model_type": "#).unwrap();
        let err = ModelConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
