//! Gemma (1): Llama's pre-norm layout with GeGLU, `(1 + w)` RMSNorms, embeddings scaled by
//! `sqrt(hidden_size)` and the LM head tied to the embeddings.

use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_attention::AttentionImpl;
use serde::Deserialize;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::gguf::ModelHints;
use crate::llama::{Layer, LayerSpec, Residual};
use crate::model::{AttentionMask, CausalLm, Pass};
use crate::nn::{Activation, AttentionSpec, KvCache, Linear, RmsNorm, Rope, RopeScaling};
use crate::weights::WeightSource;

/// The `config.json` keys Gemma reads (defaults as transformers' `GemmaConfig`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GemmaConfig {
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// K/V heads; defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head size (256 in every released Gemma).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Bias on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// The MLP's gate activation (`gelu` in the original configs means the tanh form).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// RoPE base (filled from either config layout).
    #[serde(skip)]
    pub rope_theta: f64,
}

pub(crate) fn default_head_dim() -> usize {
    256
}

pub(crate) fn default_eps() -> f64 {
    1e-6
}

pub(crate) fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}

/// Gemma's activation names: transformers turns the legacy `gelu` into the tanh form.
pub(crate) fn gemma_activation(name: &str) -> Result<Activation, ModelError> {
    match name {
        "gelu" => Ok(Activation::GeluTanh),
        other => Activation::from_hf(other),
    }
}

/// `sqrt(hidden_size)` as transformers stores it (an f32 scalar).
pub(crate) fn embed_scale(hidden: usize) -> f32 {
    (hidden as f64).sqrt() as f32
}

/// The GGUF `feed_forward_length`, required.
pub(crate) fn gguf_intermediate(h: &ModelHints) -> Result<usize, ModelError> {
    h.intermediate_size.ok_or_else(|| {
        ModelError::Config(format!(
            "GGUF metadata lacks {}.feed_forward_length",
            h.architecture
        ))
    })
}

impl GemmaConfig {
    /// From a parsed `config.json`.
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let mut c: Self = serde_json::from_value(config.text.clone())
            .map_err(|e| ModelError::Config(format!("gemma config: {e}")))?;
        c.rope_theta = config.rope_theta(None).unwrap_or(10000.0);
        let scaling = RopeScaling::from_hf(config.rope_parameters(None).as_ref())
            .map_err(ModelError::Config)?;
        if scaling != RopeScaling::None {
            return Err(ModelError::Config(
                "gemma: RoPE scaling is not supported".into(),
            ));
        }
        crate::config::check_decoder_config!("gemma", c, c.head_dim, &[c.rope_theta])?;
        Ok(c)
    }

    /// From the metadata of a `gemma` GGUF file.
    pub fn from_gguf_hints(h: &ModelHints) -> Result<Self, ModelError> {
        Ok(Self {
            hidden_size: h.hidden_size,
            intermediate_size: gguf_intermediate(h)?,
            num_hidden_layers: h.num_hidden_layers,
            num_attention_heads: h.num_attention_heads,
            num_key_value_heads: Some(h.num_key_value_heads),
            head_dim: h.head_dim,
            rms_norm_eps: h.rms_norm_eps.map_or(default_eps(), f64::from),
            vocab_size: h.vocab_size,
            attention_bias: false,
            hidden_act: default_act(),
            rope_theta: h.rope_theta.map_or(10000.0, f64::from),
        })
    }

    /// K/V heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
}

/// A Gemma causal LM.
pub struct Gemma<B: Backend> {
    config: GemmaConfig,
    embed_tokens: Tensor<B, 2>,
    layers: Vec<Layer<B>>,
    norm: RmsNorm<B>,
    lm_head: Linear<B>,
    rope: Rope,
    attention: AttentionImpl,
}

impl<B: Backend> Gemma<B> {
    /// Loads the weights (HF names) layer by layer.
    pub fn load(
        config: GemmaConfig,
        src: &mut dyn WeightSource,
        attention: AttentionImpl,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let embed_tokens =
            src.tensor::<B, 2>("model.embed_tokens.weight", [config.vocab_size, h], device)?;
        let spec = LayerSpec {
            attention: AttentionSpec {
                hidden: h,
                heads: config.num_attention_heads,
                kv_heads: config.kv_heads(),
                head_dim: config.head_dim,
                bias: config.attention_bias,
                scale: None,
                softcap: None,
                sliding_window: None,
                qk_norm: None,
            },
            intermediate: config.intermediate_size,
            mlp_bias: false,
            activation: gemma_activation(&config.hidden_act)?,
            eps,
            unit_offset: true,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(src, &format!("model.layers.{i}"), &spec, device))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(src, "model.norm", h, eps, true, device)?;
        // Gemma ties the head to the embeddings (`_tied_weights_keys`).
        let lm_head = Linear::from_weight(embed_tokens.clone());
        let rope = Rope::new(config.head_dim, config.rope_theta, &RopeScaling::None);
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            attention,
        })
    }

    /// The config.
    pub fn config(&self) -> &GemmaConfig {
        &self.config
    }
}

impl<B: Backend> CausalLm<B> for Gemma<B> {
    fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let pass = Pass::new(&ids, attention_mask, cache)?;
        let rope = self
            .rope
            .tables(&pass.positions, self.embed_tokens.dtype(), &ids.device());
        let mut x = Residual::new(
            embedding(self.embed_tokens.clone(), ids)
                .mul_scalar(embed_scale(self.config.hidden_size)),
        );
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &rope, pass.mask, layer_cache, self.attention)?;
        }
        cache.seq_len += pass.seq;
        let (_, h) = x.map(|t| pass.keep(t, last_only)).norm(&self.norm);
        Ok(self.lm_head.forward(h))
    }

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len())
    }
}
