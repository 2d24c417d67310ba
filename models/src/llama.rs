//! Llama 1/2/3/3.1 (and the models that share its layout: SmolLM2, TinyLlama, ...).
//!
//! Pre-norm decoder: RMSNorm, attention with RoPE and grouped K/V heads, RMSNorm, SwiGLU MLP.

use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_attention::AttentionImpl;
use serde::Deserialize;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::model::{AttentionMask, CausalLm, Pass};
use crate::nn::{
    Activation, AttentionSpec, GatedMlp, KvCache, LayerCache, Linear, RmsNorm, Rope, RopeScaling,
    RopeTables, SelfAttention,
};
use crate::weights::WeightSource;

/// The `config.json` keys Llama reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LlamaConfig {
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// K/V heads (GQA); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head size; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether `lm_head` is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the attention projections (some fine-tunes).
    #[serde(default)]
    pub attention_bias: bool,
    /// Bias on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// The MLP's gate activation.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Sliding-window attention on every layer (Mistral; Llama configs have none).
    #[serde(skip)]
    pub sliding_window: Option<usize>,
    /// RoPE base (filled from either config layout).
    #[serde(skip)]
    pub rope_theta: f64,
    /// RoPE scaling (filled from either config layout).
    #[serde(skip, default = "no_scaling")]
    pub rope_scaling: RopeScaling,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".into()
}

fn no_scaling() -> RopeScaling {
    RopeScaling::None
}

impl LlamaConfig {
    /// From a parsed `config.json`.
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let mut c: Self = serde_json::from_value(config.text.clone())
            .map_err(|e| ModelError::Config(format!("llama config: {e}")))?;
        let rope = config.rope_parameters(None);
        c.rope_theta = config.rope_theta(None).unwrap_or(10000.0);
        c.rope_scaling = RopeScaling::from_hf(rope.as_ref()).map_err(ModelError::Config)?;
        if c.num_attention_heads == 0
            || c.kv_heads() == 0
            || !c.num_attention_heads.is_multiple_of(c.kv_heads())
        {
            return Err(ModelError::Config(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.num_attention_heads,
                c.kv_heads()
            )));
        }
        crate::config::check_decoder_config!("llama", c, c.head_dim(), &[c.rope_theta])?;
        Ok(c)
    }

    /// From the metadata of a `llama` GGUF file.
    pub fn from_gguf_hints(h: &crate::gguf::ModelHints) -> Result<Self, ModelError> {
        let intermediate_size = h.intermediate_size.ok_or_else(|| {
            ModelError::Config("GGUF metadata lacks llama.feed_forward_length".into())
        })?;
        let rope_scaling = match h.rope_scaling_type.as_deref() {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: f64::from(h.rope_scaling_factor.unwrap_or(1.0)),
            },
            Some(other) => {
                return Err(ModelError::Config(format!(
                    "GGUF rope scaling `{other}` is not supported"
                )));
            }
        };
        Ok(Self {
            hidden_size: h.hidden_size,
            intermediate_size,
            num_hidden_layers: h.num_hidden_layers,
            num_attention_heads: h.num_attention_heads,
            num_key_value_heads: Some(h.num_key_value_heads),
            head_dim: Some(h.head_dim),
            rms_norm_eps: f64::from(h.rms_norm_eps.unwrap_or(1e-5)),
            vocab_size: h.vocab_size,
            tie_word_embeddings: h.tie_word_embeddings,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: default_act(),
            sliding_window: h.sliding_window,
            rope_theta: f64::from(h.rope_theta.unwrap_or(10000.0)),
            rope_scaling,
        })
    }

    /// K/V heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Head size.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

/// A pre-norm decoder layer: `x += attn(norm(x)); x += mlp(norm(x))` (Llama, Mistral, Gemma 1).
#[derive(Debug, Clone)]
pub(crate) struct Layer<B: Backend> {
    input_layernorm: RmsNorm<B>,
    self_attn: SelfAttention<B>,
    post_attention_layernorm: RmsNorm<B>,
    mlp: GatedMlp<B>,
}

/// What [`Layer::load`] needs besides the weights.
pub(crate) struct LayerSpec {
    pub attention: AttentionSpec,
    pub intermediate: usize,
    pub mlp_bias: bool,
    pub activation: Activation,
    pub eps: f64,
    /// Gemma's `(1 + w)` norms.
    pub unit_offset: bool,
}

impl<B: Backend> Layer<B> {
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        p: &str,
        spec: &LayerSpec,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, eps, offset) = (spec.attention.hidden, spec.eps, spec.unit_offset);
        Ok(Self {
            input_layernorm: RmsNorm::load(
                src,
                &format!("{p}.input_layernorm"),
                h,
                eps,
                offset,
                device,
            )?,
            self_attn: SelfAttention::load(
                src,
                &format!("{p}.self_attn"),
                &spec.attention,
                device,
            )?,
            post_attention_layernorm: RmsNorm::load(
                src,
                &format!("{p}.post_attention_layernorm"),
                h,
                eps,
                offset,
                device,
            )?,
            mlp: GatedMlp::load(
                src,
                &format!("{p}.mlp"),
                h,
                spec.intermediate,
                spec.mlp_bias,
                spec.activation,
                device,
            )?,
        })
    }

    pub(crate) fn forward(
        &self,
        x: Residual<B>,
        rope: &RopeTables<B>,
        mask: Option<&AttentionMask>,
        cache: &mut LayerCache<B>,
        implementation: AttentionImpl,
    ) -> Result<Residual<B>, ModelError> {
        let (x, h) = x.norm(&self.input_layernorm);
        let attn = self
            .self_attn
            .forward(h, rope, mask, cache, implementation)?;
        // The residual add and the second norm in one pass where a kernel does both.
        let (x, h) = self.post_attention_layernorm.forward_residual(x, attn);
        Ok(Residual::pending(x, self.mlp.forward(h)))
    }
}

/// The residual stream between pre-norm layers: `x`, or `x + delta` with the sum left to the
/// next norm, which adds and normalizes in one launch where a kernel does both (the sum is
/// rounded to the dtype first, as the unfused add writes it).
pub(crate) struct Residual<B: Backend> {
    x: Tensor<B, 3>,
    delta: Option<Tensor<B, 3>>,
}

impl<B: Backend> Residual<B> {
    /// The stream `x`.
    pub(crate) fn new(x: Tensor<B, 3>) -> Self {
        Self { x, delta: None }
    }

    /// The stream `x + delta`, not yet added.
    pub(crate) fn pending(x: Tensor<B, 3>, delta: Tensor<B, 3>) -> Self {
        Self {
            x,
            delta: Some(delta),
        }
    }

    /// `(stream, norm(stream))`.
    pub(crate) fn norm(self, norm: &RmsNorm<B>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        match self.delta {
            Some(delta) => norm.forward_residual(self.x, delta),
            None => (self.x.clone(), norm.forward(self.x)),
        }
    }

    /// `f` applied to the stream's parts (a selection of positions, say).
    pub(crate) fn map(self, f: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>) -> Self {
        Self {
            x: f(self.x),
            delta: self.delta.map(f),
        }
    }
}

/// A Llama causal LM (also Mistral: [`crate::mistral`]).
pub struct Llama<B: Backend> {
    config: LlamaConfig,
    embed_tokens: Tensor<B, 2>,
    layers: Vec<Layer<B>>,
    norm: RmsNorm<B>,
    lm_head: Linear<B>,
    rope: Rope,
    attention: AttentionImpl,
}

impl<B: Backend> Llama<B> {
    /// Loads the weights (HF names) layer by layer.
    pub fn load(
        config: LlamaConfig,
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
                head_dim: config.head_dim(),
                bias: config.attention_bias,
                scale: None,
                softcap: None,
                sliding_window: config.sliding_window,
                qk_norm: None,
            },
            intermediate: config.intermediate_size,
            mlp_bias: config.mlp_bias,
            activation: Activation::from_hf(&config.hidden_act)?,
            eps,
            unit_offset: false,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(src, &format!("model.layers.{i}"), &spec, device))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(src, "model.norm", h, eps, false, device)?;
        let lm_head = if config.tie_word_embeddings || !src.contains("lm_head.weight") {
            Linear::from_weight(embed_tokens.clone())
        } else {
            Linear::load(src, "lm_head", h, config.vocab_size, false, device)?
        };
        let rope = Rope::new(config.head_dim(), config.rope_theta, &config.rope_scaling);
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
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len())
    }

    /// Runs `ids` (`[batch, seq]`) after what `cache` holds; returns logits `[batch, seq, vocab]`
    /// (only the last position when `last_only`).
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward_with(ids, None, cache, last_only)
    }

    /// [`Llama::forward`] with a padding mask; see [`CausalLm::forward_with`].
    pub fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let pass = Pass::new(&ids, mask, cache)?;
        let rope = self
            .rope
            .tables(&pass.positions, self.embed_tokens.dtype(), &ids.device());
        let mut x = Residual::new(embedding(self.embed_tokens.clone(), ids));
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &rope, pass.mask, layer_cache, self.attention)?;
        }
        cache.seq_len += pass.seq;
        let (_, h) = x.map(|t| pass.keep(t, last_only)).norm(&self.norm);
        Ok(self.lm_head.forward(h))
    }
}

impl<B: Backend> CausalLm<B> for Llama<B> {
    fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        Llama::forward_with(self, ids, attention_mask, cache, last_only)
    }

    fn new_cache(&self) -> KvCache<B> {
        Llama::new_cache(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(overrides: serde_json::Value) -> Result<LlamaConfig, ModelError> {
        let mut v = json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 112,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0
        });
        for (k, x) in overrides.as_object().unwrap() {
            v[k] = x.clone();
        }
        LlamaConfig::from_config(&ModelConfig::from_value(v)?)
    }

    #[test]
    fn configs_that_cannot_work_are_refused_naming_the_key() {
        assert!(config(json!({})).is_ok());
        for (overrides, key) in [
            (json!({"num_hidden_layers": 0}), "num_hidden_layers"),
            (json!({"hidden_size": 0}), "hidden_size"),
            (json!({"vocab_size": 0}), "vocab_size"),
            (json!({"rms_norm_eps": -1e-5}), "rms_norm_eps"),
            (json!({"rms_norm_eps": 0.0}), "rms_norm_eps"),
            (json!({"rope_theta": 0.0}), "rope_theta"),
            (json!({"rope_theta": -5.0}), "rope_theta"),
            (json!({"num_attention_heads": 0}), "num_attention_heads"),
        ] {
            let err = config(overrides.clone()).unwrap_err().to_string();
            assert!(err.contains(key), "{overrides}: {err}");
        }
    }
}
