//! Llama 1/2/3/3.1 (and the models that share its layout: SmolLM2, TinyLlama, ...).
//!
//! Pre-norm decoder: RMSNorm, attention with RoPE and grouped K/V heads, RMSNorm, SwiGLU MLP.

use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_attention::{AttentionImpl, AttentionOptions, attention};
use serde::Deserialize;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::nn::{KvCache, LayerCache, Linear, RmsNorm, Rope, RopeScaling};
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

struct Attention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    fn load(
        c: &LlamaConfig,
        src: &mut dyn WeightSource,
        p: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, hd, bias) = (c.hidden_size, c.head_dim(), c.attention_bias);
        Ok(Self {
            q_proj: Linear::load(
                src,
                &format!("{p}.q_proj"),
                h,
                c.num_attention_heads * hd,
                bias,
                device,
            )?,
            k_proj: Linear::load(
                src,
                &format!("{p}.k_proj"),
                h,
                c.kv_heads() * hd,
                bias,
                device,
            )?,
            v_proj: Linear::load(
                src,
                &format!("{p}.v_proj"),
                h,
                c.kv_heads() * hd,
                bias,
                device,
            )?,
            o_proj: Linear::load(
                src,
                &format!("{p}.o_proj"),
                c.num_attention_heads * hd,
                h,
                bias,
                device,
            )?,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope,
        start: usize,
        cache: &mut LayerCache<B>,
        implementation: AttentionImpl,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s, _] = x.dims();
        let split =
            |t: Tensor<B, 3>, heads: usize| t.reshape([b, s, heads, self.head_dim]).swap_dims(1, 2);
        let q = rope.apply(split(self.q_proj.forward(x.clone()), self.heads), start);
        let k = rope.apply(split(self.k_proj.forward(x.clone()), self.kv_heads), start);
        let v = split(self.v_proj.forward(x), self.kv_heads);
        let (k, v) = cache.append(k, v, None);
        let out = attention(implementation, q, k, v, &AttentionOptions::causal())
            .map_err(|e| ModelError::Config(e.to_string()))?;
        let out = out
            .swap_dims(1, 2)
            .reshape([b, s, self.heads * self.head_dim]);
        Ok(self.o_proj.forward(out))
    }
}

struct Mlp<B: Backend> {
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn load(
        c: &LlamaConfig,
        src: &mut dyn WeightSource,
        p: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, i, bias) = (c.hidden_size, c.intermediate_size, c.mlp_bias);
        Ok(Self {
            gate_proj: Linear::load(src, &format!("{p}.gate_proj"), h, i, bias, device)?,
            up_proj: Linear::load(src, &format!("{p}.up_proj"), h, i, bias, device)?,
            down_proj: Linear::load(src, &format!("{p}.down_proj"), i, h, bias, device)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

struct Layer<B: Backend> {
    input_layernorm: RmsNorm<B>,
    self_attn: Attention<B>,
    post_attention_layernorm: RmsNorm<B>,
    mlp: Mlp<B>,
}

/// A Llama causal LM.
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
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_layernorm: RmsNorm::load(
                    src,
                    &format!("{p}.input_layernorm"),
                    h,
                    eps,
                    false,
                    device,
                )?,
                self_attn: Attention::load(&config, src, &format!("{p}.self_attn"), device)?,
                post_attention_layernorm: RmsNorm::load(
                    src,
                    &format!("{p}.post_attention_layernorm"),
                    h,
                    eps,
                    false,
                    device,
                )?,
                mlp: Mlp::load(&config, src, &format!("{p}.mlp"), device)?,
            });
        }
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
        let [_, seq] = ids.dims();
        if seq == 0 {
            return Err(ModelError::Config(
                "forward needs at least one token".into(),
            ));
        }
        let start = cache.seq_len;
        let mut x = embedding(self.embed_tokens.clone(), ids);
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = layer.input_layernorm.forward(x.clone());
            x = x + layer
                .self_attn
                .forward(h, &self.rope, start, layer_cache, self.attention)?;
            let h = layer.post_attention_layernorm.forward(x.clone());
            x = x + layer.mlp.forward(h);
        }
        cache.seq_len += seq;
        let x = if last_only {
            x.narrow(1, seq - 1, 1)
        } else {
            x
        };
        Ok(self.lm_head.forward(self.norm.forward(x)))
    }
}
