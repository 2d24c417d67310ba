//! An architecture that kiln-models does not know, added from this crate.
//!
//! `toy_bigram` is a tiny language model whose next-token logits depend on the current token
//! only: embedding, one residual ReLU layer, an LM head. [`register`] adds it to a
//! [`Registry`]; `ChatPipeline::load_with` then loads a `config.json` with
//! `"model_type": "toy_bigram"` like any built-in model (tokenizer, chat template, generation).
//! [`write_checkpoint`] writes such a model dir, whose weights count: "one" -> "two" -> ... ->
//! "ten" -> end of sequence.
//!
//! ```
//! use burn::backend::NdArray;
//! use kiln_models::pipeline::{ChatPipeline, LoadOptions};
//! use kiln_models::registry::Registry;
//!
//! let dir = std::env::temp_dir().join(format!("toy-bigram-doc-{}", std::process::id()));
//! kiln_example_custom_arch::write_checkpoint(&dir)?;
//! let mut registry = Registry::<NdArray>::default();
//! kiln_example_custom_arch::register(&mut registry);
//! let pipeline = ChatPipeline::load_with(&dir, &LoadOptions::default(), &registry)?;
//! let ids = pipeline.prompt_ids(&[kiln_chat_template::Message::user("seven")])?;
//! assert_eq!(pipeline.tokenizer().decode(&ids, false)?, "seven");
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_models::ModelError;
use kiln_models::config::ModelConfig;
use kiln_models::model::{AttentionMask, CausalLm};
use kiln_models::nn::KvCache;
use kiln_models::registry::Registry;
use kiln_models::weights::WeightSource;

/// The `model_type` of this architecture.
pub const MODEL_TYPE: &str = "toy_bigram";

/// The `config.json` keys `toy_bigram` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToyConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the embedding and the hidden layer.
    pub hidden_size: usize,
}

impl ToyConfig {
    /// From a parsed `config.json`.
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let key = |name: &str| {
            config
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::MissingKey {
                    path: None,
                    key: name.to_owned(),
                })
        };
        Ok(Self {
            vocab_size: key("vocab_size")?,
            hidden_size: key("hidden_size")?,
        })
    }
}

/// `logits = head(x + relu(x W^T + b))` with `x` the current token's embedding.
pub struct ToyBigram<B: Backend> {
    embed: Tensor<B, 2>,
    /// `[hidden, hidden]`, transposed at load.
    hidden_t: Tensor<B, 2>,
    hidden_bias: Tensor<B, 1>,
    /// `[hidden, vocab]`, transposed at load.
    head_t: Tensor<B, 2>,
}

impl<B: Backend> ToyBigram<B> {
    /// Loads `embed.weight`, `hidden.weight`, `hidden.bias` and `head.weight`.
    pub fn load(
        config: ToyConfig,
        weights: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        Ok(Self {
            embed: weights.tensor::<B, 2>("embed.weight", [v, h], device)?,
            hidden_t: weights
                .tensor::<B, 2>("hidden.weight", [h, h], device)?
                .transpose(),
            hidden_bias: weights.tensor::<B, 1>("hidden.bias", [h], device)?,
            head_t: weights
                .tensor::<B, 2>("head.weight", [v, h], device)?
                .transpose(),
        })
    }
}

impl<B: Backend> CausalLm<B> for ToyBigram<B> {
    // Each position sees only its own token, so padding (the attention mask) changes nothing.
    fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        _attention_mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s] = ids.dims();
        if s == 0 {
            return Err(ModelError::Config(
                "forward needs at least one token".into(),
            ));
        }
        // Nothing to cache: each position sees only its own token.
        cache.seq_len += s;
        let ids = if last_only {
            ids.narrow(1, s - 1, 1)
        } else {
            ids
        };
        let s = ids.dims()[1];
        let h = self.hidden_t.dims()[0];
        let x = embedding(self.embed.clone(), ids).reshape([b * s, h]);
        let hidden = relu(
            x.clone().matmul(self.hidden_t.clone()) + self.hidden_bias.clone().unsqueeze::<2>(),
        );
        let logits = (x + hidden).matmul(self.head_t.clone());
        let vocab = logits.dims()[1];
        Ok(logits.reshape([b, s, vocab]))
    }

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(0)
    }
}

/// Adds `toy_bigram` to `registry`.
pub fn register<B: Backend>(registry: &mut Registry<B>) {
    registry.register_causal_lm(MODEL_TYPE, |config, weights, options| {
        let c = ToyConfig::from_config(config)?;
        Ok(Box::new(ToyBigram::<B>::load(c, weights, &options.device)?))
    });
}

/// The vocabulary of [`write_checkpoint`]'s model: an end-of-sequence token, then the numbers.
pub const VOCAB: [&str; 12] = [
    "</s>", "<unk>", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Writes a `toy_bigram` model dir: `config.json`, `model.safetensors`, a word-level
/// `tokenizer.json` and a `tokenizer_config.json` with a chat template (the messages' text).
///
/// Token `k` embeds to the one-hot `e_k`; the hidden layer adds `relu(0.5 e_k - 0.25) =
/// 0.25 e_k`; the head maps `e_k` to 8 on the next number (after "ten": `</s>`), so the logits
/// of token `k` are 10 at its successor and 0 elsewhere.
pub fn write_checkpoint(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let v = VOCAB.len();
    let mut embed = vec![0.0f32; v * v];
    let mut hidden = vec![0.0f32; v * v];
    let mut head = vec![0.0f32; v * v];
    for k in 0..v {
        embed[k * v + k] = 1.0;
        hidden[k * v + k] = 0.5;
    }
    for k in 2..v {
        let next = if k + 1 < v { k + 1 } else { 0 };
        head[next * v + k] = 8.0;
    }
    let bias = vec![-0.25f32; v];
    let bytes = |data: &[f32]| {
        data.iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let tensors = [
        ("embed.weight", bytes(&embed), vec![v, v]),
        ("hidden.weight", bytes(&hidden), vec![v, v]),
        ("hidden.bias", bytes(&bias), vec![v]),
        ("head.weight", bytes(&head), vec![v, v]),
    ];
    let mut views = HashMap::new();
    for (name, data, shape) in &tensors {
        views.insert(
            (*name).to_owned(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)?,
        );
    }
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;

    let config = serde_json::json!({
        "model_type": MODEL_TYPE,
        "vocab_size": v,
        "hidden_size": v,
        "eos_token_id": 0,
    });
    let vocab: serde_json::Map<String, serde_json::Value> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i.into()))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true},
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let tokenizer_config = serde_json::json!({
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "chat_template": "{% for m in messages %}{{ m['content'] }} {% endfor %}",
    });
    for (file, value) in [
        ("config.json", config),
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", tokenizer_config),
    ] {
        std::fs::write(dir.join(file), serde_json::to_string_pretty(&value)?)?;
    }
    Ok(())
}
