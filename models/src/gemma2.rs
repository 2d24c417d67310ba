//! Gemma 2: Gemma with local (sliding-window) and global layers alternating, attention and
//! final logit soft-capping, `query_pre_attn_scalar` as the score scale, and four norms per
//! layer (the attention and MLP outputs are normalized before the residual sums).

use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_attention::AttentionImpl;
use serde::Deserialize;
use serde_json::Value;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::gemma::{default_act, default_eps, embed_scale, gemma_activation, gguf_intermediate};
use crate::gguf::ModelHints;
use crate::model::{AttentionMask, CausalLm, Pass, softcap};
use crate::nn::{
    Activation, AttentionSpec, GatedMlp, KvCache, LayerCache, Linear, RmsNorm, Rope, RopeScaling,
    RopeTables, SelfAttention,
};
use crate::weights::WeightSource;

/// The `config.json` keys Gemma 2 reads (defaults as transformers' `Gemma2Config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Gemma2Config {
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
    /// Head size.
    #[serde(default = "crate::gemma::default_head_dim")]
    pub head_dim: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Bias on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// The MLP's gate activation.
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    /// Scores are scaled by `query_pre_attn_scalar^-0.5`.
    #[serde(default = "default_query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f64,
    /// Window of the local layers (none: they attend globally too).
    #[serde(default = "default_sliding_window")]
    pub sliding_window: Option<usize>,
    /// `sliding_attention` or `full_attention` per layer; alternating, local first, when absent.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Attention logit soft-capping.
    #[serde(default = "default_attn_softcap")]
    pub attn_logit_softcapping: Option<f64>,
    /// Final logit soft-capping.
    #[serde(default = "default_final_softcap")]
    pub final_logit_softcapping: Option<f64>,
    /// Bidirectional attention (embedding models): not a causal LM, refused.
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
    /// RoPE base (filled from either config layout).
    #[serde(skip)]
    pub rope_theta: f64,
}

pub(crate) fn default_query_pre_attn_scalar() -> f64 {
    256.0
}

pub(crate) fn default_sliding_window() -> Option<usize> {
    Some(4096)
}

fn default_attn_softcap() -> Option<f64> {
    Some(50.0)
}

fn default_final_softcap() -> Option<f64> {
    Some(30.0)
}

/// Which layers are local (`true`): `layer_types` when given, else every layer whose
/// `(i + 1) % pattern` is nonzero (transformers' default for Gemma 2 (pattern 2) and 3 (6)).
pub(crate) fn sliding_layers(
    layer_types: Option<&[String]>,
    layers: usize,
    pattern: usize,
) -> Result<Vec<bool>, ModelError> {
    crate::config::check_layer_count("num_hidden_layers", layers)?;
    let Some(types) = layer_types else {
        return Ok((0..layers)
            .map(|i| pattern == 0 || (i + 1) % pattern != 0)
            .collect());
    };
    if types.len() != layers {
        return Err(ModelError::Config(format!(
            "layer_types names {} layers, num_hidden_layers is {layers}",
            types.len()
        )));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "sliding_attention" => Ok(true),
            "full_attention" => Ok(false),
            other => Err(ModelError::Config(format!(
                "unsupported layer type `{other}` (expected sliding_attention or full_attention)"
            ))),
        })
        .collect()
}

/// llama.cpp's Gemma 2/3 score scale for GGUF files, which do not store
/// `query_pre_attn_scalar`: `hidden / heads` for the 27B models (`layers_27b` layers), else the
/// head size (what every other released checkpoint's config says).
pub(crate) fn gguf_query_pre_attn_scalar(h: &ModelHints, layers_27b: usize) -> f64 {
    if h.num_hidden_layers == layers_27b && h.num_attention_heads > 0 {
        (h.hidden_size / h.num_attention_heads) as f64
    } else {
        h.head_dim as f64
    }
}

/// Refuses bidirectional (embedding) variants and bad windows.
pub(crate) fn check_causal(
    bidirectional: Option<bool>,
    sliding_window: Option<usize>,
) -> Result<(), ModelError> {
    if bidirectional == Some(true) {
        return Err(ModelError::Config(
            "use_bidirectional_attention models are encoders, not causal LMs".into(),
        ));
    }
    if sliding_window == Some(0) {
        return Err(ModelError::Config(
            "sliding_window must be at least 1".into(),
        ));
    }
    Ok(())
}

impl Gemma2Config {
    /// From a parsed `config.json`.
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let mut c: Self = serde_json::from_value(config.text.clone())
            .map_err(|e| ModelError::Config(format!("gemma2 config: {e}")))?;
        c.rope_theta = config.rope_theta(None).unwrap_or(10000.0);
        let scaling = RopeScaling::from_hf(config.rope_parameters(None).as_ref())
            .map_err(ModelError::Config)?;
        if scaling != RopeScaling::None {
            return Err(ModelError::Config(
                "gemma2: RoPE scaling is not supported".into(),
            ));
        }
        check_causal(c.use_bidirectional_attention, c.sliding_window)?;
        c.sliding_layers()?;
        crate::config::check_decoder_config!("gemma2", c, c.head_dim, &[c.rope_theta])?;
        Ok(c)
    }

    /// From the metadata of a `gemma2` GGUF file (every other layer local, as llama.cpp).
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
            hidden_activation: default_act(),
            query_pre_attn_scalar: gguf_query_pre_attn_scalar(h, 46),
            sliding_window: h.sliding_window.or(default_sliding_window()),
            layer_types: None,
            attn_logit_softcapping: h.attn_logit_softcapping.map(f64::from),
            final_logit_softcapping: h.final_logit_softcapping.map(f64::from),
            use_bidirectional_attention: None,
            rope_theta: h.rope_theta.map_or(10000.0, f64::from),
        })
    }

    /// K/V heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Which layers are local.
    pub fn sliding_layers(&self) -> Result<Vec<bool>, ModelError> {
        sliding_layers(self.layer_types.as_deref(), self.num_hidden_layers, 2)
    }
}

/// A Gemma 2/3 decoder layer: both sublayers are normalized on the way in and on the way out.
///
/// `x += post_attention_norm(attn(input_norm(x))); x += post_ffw_norm(mlp(pre_ffw_norm(x)))`
#[derive(Debug, Clone)]
pub(crate) struct SandwichLayer<B: Backend> {
    input_layernorm: RmsNorm<B>,
    self_attn: SelfAttention<B>,
    post_attention_layernorm: RmsNorm<B>,
    pre_feedforward_layernorm: RmsNorm<B>,
    mlp: GatedMlp<B>,
    post_feedforward_layernorm: RmsNorm<B>,
}

impl<B: Backend> SandwichLayer<B> {
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        p: &str,
        attention: &AttentionSpec,
        intermediate: usize,
        activation: Activation,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let h = attention.hidden;
        let norm = |src: &mut dyn WeightSource, name: &str| {
            RmsNorm::load(src, &format!("{p}.{name}"), h, eps, true, device)
        };
        Ok(Self {
            input_layernorm: norm(src, "input_layernorm")?,
            post_attention_layernorm: norm(src, "post_attention_layernorm")?,
            pre_feedforward_layernorm: norm(src, "pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm(src, "post_feedforward_layernorm")?,
            self_attn: SelfAttention::load(src, &format!("{p}.self_attn"), attention, device)?,
            mlp: GatedMlp::load(
                src,
                &format!("{p}.mlp"),
                h,
                intermediate,
                false,
                activation,
                device,
            )?,
        })
    }

    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: Option<&AttentionMask>,
        cache: &mut LayerCache<B>,
        implementation: AttentionImpl,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let h = self.input_layernorm.forward(x.clone());
        let h = self
            .self_attn
            .forward(h, rope, mask, cache, implementation)?;
        let x = x + self.post_attention_layernorm.forward(h);
        let h = self.pre_feedforward_layernorm.forward(x.clone());
        let h = self.mlp.forward(h);
        Ok(x + self.post_feedforward_layernorm.forward(h))
    }
}

/// A Gemma 2 causal LM.
pub struct Gemma2<B: Backend> {
    config: Gemma2Config,
    embed_tokens: Tensor<B, 2>,
    layers: Vec<SandwichLayer<B>>,
    norm: RmsNorm<B>,
    lm_head: Linear<B>,
    rope: Rope,
    attention: AttentionImpl,
}

impl<B: Backend> Gemma2<B> {
    /// Loads the weights (HF names) layer by layer.
    pub fn load(
        config: Gemma2Config,
        src: &mut dyn WeightSource,
        attention: AttentionImpl,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let embed_tokens =
            src.tensor::<B, 2>("model.embed_tokens.weight", [config.vocab_size, h], device)?;
        let activation = gemma_activation(&config.hidden_activation)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for (i, sliding) in config.sliding_layers()?.into_iter().enumerate() {
            let spec = AttentionSpec {
                hidden: h,
                heads: config.num_attention_heads,
                kv_heads: config.kv_heads(),
                head_dim: config.head_dim,
                bias: config.attention_bias,
                scale: Some(config.query_pre_attn_scalar.powf(-0.5)),
                softcap: config.attn_logit_softcapping,
                sliding_window: config.sliding_window.filter(|_| sliding),
                qk_norm: None,
            };
            let p = format!("model.layers.{i}");
            layers.push(SandwichLayer::load(
                src,
                &p,
                &spec,
                config.intermediate_size,
                activation,
                eps,
                device,
            )?);
        }
        let norm = RmsNorm::load(src, "model.norm", h, eps, true, device)?;
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
    pub fn config(&self) -> &Gemma2Config {
        &self.config
    }
}

impl<B: Backend> CausalLm<B> for Gemma2<B> {
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
        let mut x = embedding(self.embed_tokens.clone(), ids)
            .mul_scalar(embed_scale(self.config.hidden_size));
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &rope, pass.mask, layer_cache, self.attention)?;
        }
        cache.seq_len += pass.seq;
        let x = pass.keep(x, last_only);
        let logits = self.lm_head.forward(self.norm.forward(x));
        Ok(softcap(logits, self.config.final_logit_softcapping))
    }

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len())
    }
}

/// A config value as a positive integer, for error messages naming the key.
pub(crate) fn positive(config: &ModelConfig, key: &str) -> Result<Option<usize>, ModelError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&x| x > 0)
            .and_then(|x| usize::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| {
                ModelError::Config(format!("{key} must be a positive integer, got {v}"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layer_patterns_match_transformers() {
        // Gemma 2: local, global, local, ...; Gemma 3: five local, one global.
        assert_eq!(
            sliding_layers(None, 4, 2).unwrap(),
            [true, false, true, false]
        );
        let g3 = sliding_layers(None, 12, 6).unwrap();
        assert_eq!(g3.iter().filter(|&&s| !s).count(), 2);
        assert!(!g3[5] && !g3[11] && g3[0] && g3[6]);
        let err = sliding_layers(Some(&["chunked_attention".into()]), 1, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chunked_attention"), "{err}");
        assert!(sliding_layers(Some(&["full_attention".into()]), 2, 2).is_err());
    }
}
