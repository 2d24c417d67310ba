//! The body of the `gguf` target: bytes as a GGUF file. Header, metadata, tensor table, every
//! tensor dequantized (as stored and under its HF name), the model hints and configs, the
//! tokenizer and the chat template, as the GGUF chat pipeline reads them.
//!
//! Shared by `fuzz_targets/gguf.rs` and the bounded pass in `models/tests/fuzz_smoke.rs`; it
//! may only use crates both of them depend on.

use std::time::{Duration, UNIX_EPOCH};

use kiln_chat_template::{ApplyOptions, ChatTemplate, Limits, Message};
use kiln_models::gemma::GemmaConfig;
use kiln_models::gemma2::Gemma2Config;
use kiln_models::gemma3::Gemma3Config;
use kiln_models::gguf::Gguf;
use kiln_models::llama::LlamaConfig;
use kiln_models::mistral;
use kiln_models::weights::{GgufSource, WeightSource};

/// Reads `data` as a GGUF file.
pub fn run(data: &[u8]) {
    let Ok(g) = Gguf::from_bytes("fuzz.gguf", data.to_vec()) else {
        return;
    };
    let _ = (g.version(), g.alignment(), g.data_offset(), g.arch());
    for (_, value) in g.metadata() {
        let _ = value.describe();
    }
    if let Ok(h) = g.hints() {
        let _ = LlamaConfig::from_gguf_hints(&h);
        let _ = mistral::config_from_gguf(&h);
        let _ = GemmaConfig::from_gguf_hints(&h);
        let _ = Gemma2Config::from_gguf_hints(&h).and_then(|c| c.sliding_layers());
        let _ = Gemma3Config::from_gguf_hints(&h);
    }
    let template = match g.chat_template() {
        Ok(Some(source)) => ChatTemplate::from_source("fuzz.gguf", source).ok(),
        _ => None,
    };
    if let Ok(tok) = g.tokenizer() {
        let stop_ids = tok.stop_ids();
        let _ = tok
            .tokenizer
            .encode("Hello world <|im_end|>\n 2024 ▁x", true);
        let chat = tok.into_chat_tokenizer();
        let mut options = ApplyOptions::generation_prompt();
        options.special_tokens = chat.special_tokens().clone();
        options.now = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        if let Some(t) = &template {
            let _ = chat.terminators_with(t, &stop_ids);
            let t = t.clone().with_limits(Limits {
                fuel: Some(1_000_000),
                max_output_bytes: 1 << 20,
                ..Limits::default()
            });
            if let Ok(r) = t.apply(&[Message::user("Hi")], &options)
                && let Ok(enc) = chat.encode_rendered(&r.text)
            {
                let _ = chat.decode(&enc.ids, false);
            }
        }
    }
    for t in g.tensors() {
        let _ = g.dequantize(t.name());
    }
    if let Ok(mut source) = GgufSource::new(g) {
        let names = source.gguf().hf_tensor_names().unwrap_or_default();
        for name in &names {
            let _ = source.host_tensor(name);
        }
    }
}
