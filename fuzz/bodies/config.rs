//! The body of the `config` target: bytes as a `config.json` (and the other JSON files of a
//! model dir), parsed and validated by every architecture's config, the quantization config,
//! `generation_config.json` and `tokenizer_config.json` readers.
//!
//! Shared by `fuzz_targets/config.rs` and the bounded pass in `models/tests/fuzz_smoke.rs`; it
//! may only use crates both of them depend on.

use kiln_chat_template::ChatTemplate;
use kiln_models::bert::BertConfig;
use kiln_models::config::ModelConfig;
use kiln_models::gemma::GemmaConfig;
use kiln_models::gemma2::Gemma2Config;
use kiln_models::gemma3::Gemma3Config;
use kiln_models::generate::GenerationConfig;
use kiln_models::llama::LlamaConfig;
use kiln_models::mistral;
use kiln_quant::QuantConfig;
use serde_json::Value;

/// Reads `data` as the JSON files of a model dir.
pub fn run(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = QuantConfig::from_model_config(&value).map(|q| q.map(|q| q.validate()));
    let _ = serde_json::from_value::<GenerationConfig>(value.clone()).map(|g| g.validate());
    let _ = ChatTemplate::from_tokenizer_config(&value, "tokenizer_config.json");
    let Ok(config) = ModelConfig::from_value(value) else {
        return;
    };
    let _ = (config.require_architecture(), config.dtype());
    let _ = config.rope_theta(None);
    let _ = config.rope_theta(Some("sliding_attention"));
    let _ = LlamaConfig::from_config(&config);
    let _ = mistral::config_from_hf(&config);
    let _ = GemmaConfig::from_config(&config);
    let _ = Gemma2Config::from_config(&config).and_then(|c| c.sliding_layers());
    let _ = Gemma3Config::from_config(&config);
    let _ = BertConfig::from_config(&config);
}
