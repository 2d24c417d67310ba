//! `QuantConfig`: transformers' `BitsAndBytesConfig`, as it appears in `config.json`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codec::{DEFAULT_BLOCKSIZE, DEFAULT_INT8_THRESHOLD, FourBitType, check_blocksize};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// 4-bit or 8-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantBits {
    /// `load_in_4bit`: NF4/FP4 blockwise.
    Four,
    /// `load_in_8bit`: LLM.int8.
    Eight,
}

/// How a model is quantized: the fields of transformers' `BitsAndBytesConfig`, serialized as
/// the `quantization_config` object transformers writes into `config.json` (all keys, sorted),
/// plus kiln's 4-bit `blocksize` (not part of that object: bnb records it per tensor).
///
/// ```
/// use kiln_quant::{QuantConfig, codec::FourBitType};
/// let cfg = QuantConfig::four_bit(FourBitType::Nf4).with_double_quant(true);
/// let json = serde_json::to_value(&cfg)?;
/// assert_eq!(json["bnb_4bit_quant_type"], "nf4");
/// assert_eq!(json["load_in_4bit"], true);
/// let back: QuantConfig = serde_json::from_value(json)?;
/// assert_eq!(back, cfg);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct QuantConfig {
    /// 4-bit or 8-bit.
    pub bits: QuantBits,
    /// `bnb_4bit_quant_type` (also written for 8-bit configs, as transformers does).
    pub quant_type: FourBitType,
    /// `bnb_4bit_use_double_quant`.
    pub double_quant: bool,
    /// `bnb_4bit_compute_dtype`.
    pub compute_dtype: FloatDtype,
    /// `llm_int8_threshold` (outlier threshold of LLM.int8; 0 disables the decomposition).
    pub int8_threshold: f64,
    /// `llm_int8_skip_modules`: module names or suffixes left unquantized. `None` lets
    /// transformers skip `lm_head` by itself.
    pub skip_modules: Option<Vec<String>>,
    /// `llm_int8_enable_fp32_cpu_offload` (kept for round trips).
    pub enable_fp32_cpu_offload: bool,
    /// `llm_int8_has_fp16_weight` (kept for round trips).
    pub has_fp16_weight: bool,
    /// kiln only: the 4-bit blocksize used when quantizing (default 64).
    pub blocksize: usize,
    /// Keys this version does not know, kept verbatim.
    pub extra: Map<String, Value>,
}

impl QuantConfig {
    /// A 4-bit config with transformers' defaults (no double quant, compute dtype f32).
    pub fn four_bit(quant_type: FourBitType) -> Self {
        QuantConfig {
            bits: QuantBits::Four,
            quant_type,
            double_quant: false,
            compute_dtype: FloatDtype::F32,
            int8_threshold: DEFAULT_INT8_THRESHOLD,
            skip_modules: None,
            enable_fp32_cpu_offload: false,
            has_fp16_weight: false,
            blocksize: DEFAULT_BLOCKSIZE,
            extra: Map::new(),
        }
    }

    /// An 8-bit (LLM.int8) config with transformers' defaults (threshold 6.0).
    pub fn int8() -> Self {
        QuantConfig {
            bits: QuantBits::Eight,
            quant_type: FourBitType::Fp4,
            ..QuantConfig::four_bit(FourBitType::Fp4)
        }
    }

    /// Sets double quantization of the 4-bit absmax.
    pub fn with_double_quant(mut self, on: bool) -> Self {
        self.double_quant = on;
        self
    }

    /// Sets the compute dtype.
    pub fn with_compute_dtype(mut self, dtype: FloatDtype) -> Self {
        self.compute_dtype = dtype;
        self
    }

    /// Sets the 4-bit blocksize.
    pub fn with_blocksize(mut self, blocksize: usize) -> Self {
        self.blocksize = blocksize;
        self
    }

    /// Sets the LLM.int8 outlier threshold.
    pub fn with_int8_threshold(mut self, threshold: f64) -> Self {
        self.int8_threshold = threshold;
        self
    }

    /// Sets the modules to leave unquantized.
    pub fn with_skip_modules(mut self, modules: Vec<String>) -> Self {
        self.skip_modules = Some(modules);
        self
    }

    /// Checks the values kiln can honor.
    pub fn validate(&self) -> Result<()> {
        if self.bits == QuantBits::Four {
            check_blocksize(self.blocksize)?;
        }
        if !(self.int8_threshold >= 0.0 && self.int8_threshold.is_finite()) {
            return Err(QuantError::InvalidConfig(format!(
                "llm_int8_threshold must be a finite number >= 0, got {}",
                self.int8_threshold
            )));
        }
        Ok(())
    }

    /// Whether module `name` (e.g. `model.layers.0.mlp.down_proj`) is in `skip_modules`, with
    /// transformers' rules: a pattern matches from the start up to a module boundary
    /// (`layers.1` matches `layers.1.mlp`, not `layers.11.mlp`), or as a suffix (`down_proj`).
    /// Patterns are literal (transformers also accepts regular expressions; kiln does not).
    pub fn skips(&self, name: &str) -> bool {
        self.skip_modules
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|p| {
                name.ends_with(p.as_str())
                    || name
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
    }

    /// Reads `quantization_config` from a `config.json` value; `Ok(None)` when absent.
    pub fn from_model_config(config: &Value) -> Result<Option<Self>> {
        match config.get("quantization_config") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| QuantError::InvalidConfig(e.to_string())),
        }
    }
}

/// The JSON form, keys in the sorted order transformers writes.
#[derive(Serialize, Deserialize)]
struct RawConfig {
    #[serde(
        rename = "_load_in_4bit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    private_4bit: Option<bool>,
    #[serde(
        rename = "_load_in_8bit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    private_8bit: Option<bool>,
    #[serde(default)]
    bnb_4bit_compute_dtype: Option<String>,
    #[serde(default = "default_storage")]
    bnb_4bit_quant_storage: String,
    #[serde(default = "default_quant_type")]
    bnb_4bit_quant_type: String,
    #[serde(default)]
    bnb_4bit_use_double_quant: bool,
    #[serde(default)]
    llm_int8_enable_fp32_cpu_offload: bool,
    #[serde(default)]
    llm_int8_has_fp16_weight: bool,
    #[serde(default)]
    llm_int8_skip_modules: Option<Vec<String>>,
    #[serde(default = "default_threshold")]
    llm_int8_threshold: f64,
    #[serde(default)]
    load_in_4bit: Option<bool>,
    #[serde(default)]
    load_in_8bit: Option<bool>,
    #[serde(default = "default_method")]
    quant_method: String,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn default_storage() -> String {
    "uint8".into()
}
fn default_quant_type() -> String {
    "fp4".into()
}
fn default_threshold() -> f64 {
    DEFAULT_INT8_THRESHOLD
}
fn default_method() -> String {
    "bitsandbytes".into()
}

impl TryFrom<RawConfig> for QuantConfig {
    type Error = QuantError;

    fn try_from(raw: RawConfig) -> Result<Self> {
        let bad = |m: String| Err(QuantError::InvalidConfig(m));
        if raw.quant_method != "bitsandbytes" {
            return bad(format!(
                "quant_method is `{}`, not `bitsandbytes`",
                raw.quant_method
            ));
        }
        let flag = |private: Option<bool>, public: Option<bool>, key: &str| -> Result<bool> {
            match (private, public) {
                (Some(a), Some(b)) if a != b => Err(QuantError::InvalidConfig(format!(
                    "_{key} = {a} contradicts {key} = {b}"
                ))),
                (a, b) => Ok(a.or(b).unwrap_or(false)),
            }
        };
        let four = flag(raw.private_4bit, raw.load_in_4bit, "load_in_4bit")?;
        let eight = flag(raw.private_8bit, raw.load_in_8bit, "load_in_8bit")?;
        let bits = match (four, eight) {
            (true, true) => {
                return bad("load_in_4bit and load_in_8bit are both set; choose one".into());
            }
            (false, false) => return bad("neither load_in_4bit nor load_in_8bit is set".into()),
            (true, false) => QuantBits::Four,
            (false, true) => QuantBits::Eight,
        };
        let Some(quant_type) = FourBitType::from_name(&raw.bnb_4bit_quant_type) else {
            return bad(format!(
                "bnb_4bit_quant_type `{}` is not nf4 or fp4",
                raw.bnb_4bit_quant_type
            ));
        };
        let compute_dtype = match raw.bnb_4bit_compute_dtype.as_deref() {
            None => FloatDtype::F32,
            Some(name) => match FloatDtype::from_torch_name(name) {
                Some(d) => d,
                None => {
                    return bad(format!(
                        "bnb_4bit_compute_dtype `{name}` is not float32, float16 or bfloat16"
                    ));
                }
            },
        };
        if raw.bnb_4bit_quant_storage != "uint8" {
            return bad(format!(
                "bnb_4bit_quant_storage `{}` is not supported (only uint8)",
                raw.bnb_4bit_quant_storage
            ));
        }
        let cfg = QuantConfig {
            bits,
            quant_type,
            double_quant: raw.bnb_4bit_use_double_quant,
            compute_dtype,
            int8_threshold: raw.llm_int8_threshold,
            skip_modules: raw.llm_int8_skip_modules,
            enable_fp32_cpu_offload: raw.llm_int8_enable_fp32_cpu_offload,
            has_fp16_weight: raw.llm_int8_has_fp16_weight,
            blocksize: DEFAULT_BLOCKSIZE,
            extra: raw.extra,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl From<QuantConfig> for RawConfig {
    fn from(c: QuantConfig) -> Self {
        let four = c.bits == QuantBits::Four;
        RawConfig {
            private_4bit: Some(four),
            private_8bit: Some(!four),
            bnb_4bit_compute_dtype: Some(c.compute_dtype.torch_name().into()),
            bnb_4bit_quant_storage: default_storage(),
            bnb_4bit_quant_type: c.quant_type.name().into(),
            bnb_4bit_use_double_quant: c.double_quant,
            llm_int8_enable_fp32_cpu_offload: c.enable_fp32_cpu_offload,
            llm_int8_has_fp16_weight: c.has_fp16_weight,
            llm_int8_skip_modules: c.skip_modules,
            llm_int8_threshold: c.int8_threshold,
            load_in_4bit: Some(four),
            load_in_8bit: Some(!four),
            quant_method: default_method(),
            extra: c.extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<QuantConfig> {
        serde_json::from_str(json).map_err(|e| QuantError::InvalidConfig(e.to_string()))
    }

    #[test]
    fn rejects_both_and_neither() {
        let both = parse(
            r#"{"load_in_4bit": true, "load_in_8bit": true, "quant_method": "bitsandbytes"}"#,
        );
        assert!(both.expect_err("both").to_string().contains("both"));
        let neither = parse(r#"{"quant_method": "bitsandbytes"}"#);
        assert!(
            neither
                .expect_err("neither")
                .to_string()
                .contains("neither")
        );
        let contradiction = parse(r#"{"_load_in_4bit": true, "load_in_4bit": false}"#);
        assert!(
            contradiction
                .expect_err("contradiction")
                .to_string()
                .contains("contradicts")
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (json, needle) in [
            (
                r#"{"load_in_4bit": true, "bnb_4bit_quant_type": "int4"}"#,
                "int4",
            ),
            (
                r#"{"load_in_4bit": true, "bnb_4bit_compute_dtype": "int8"}"#,
                "int8",
            ),
            (
                r#"{"load_in_4bit": true, "bnb_4bit_quant_storage": "bfloat16"}"#,
                "quant_storage",
            ),
            (
                r#"{"load_in_8bit": true, "llm_int8_threshold": -1.0}"#,
                "threshold",
            ),
            (r#"{"load_in_8bit": true, "quant_method": "gptq"}"#, "gptq"),
        ] {
            let err = parse(json).expect_err(json);
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
        let bad_bs = QuantConfig::four_bit(FourBitType::Nf4)
            .with_blocksize(48)
            .validate();
        assert!(bad_bs.expect_err("blocksize").to_string().contains("48"));
    }

    #[test]
    fn skip_rules_follow_transformers() {
        let cfg =
            QuantConfig::int8().with_skip_modules(vec!["layers.1".into(), "down_proj".into()]);
        assert!(cfg.skips("layers.1.mlp.up_proj"));
        assert!(!cfg.skips("layers.11.mlp.up_proj"));
        assert!(cfg.skips("model.layers.3.mlp.down_proj"));
        assert!(!cfg.skips("model.layers.3.mlp.up_proj"));
    }
}
