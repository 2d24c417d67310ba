//! Gemma 3 (text): Gemma 2's layer with RMSNorms on each query and key head, five local layers
//! per global one (`layer_types`), and separate RoPE bases for local (10k) and global (1M,
//! optionally scaled) layers; no soft-capping unless the config asks for it.
//!
//! Multimodal Gemma 3 checkpoints hold the same text model under `language_model.model.*`
//! (transformers 4) or `model.language_model.*` (transformers 5); both load here, images aside.

use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};
use kiln_attention::AttentionImpl;
use serde::Deserialize;
use serde_json::Value;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::gemma::{default_act, default_eps, embed_scale, gemma_activation, gguf_intermediate};
use crate::gemma2::{
    SandwichLayer, check_causal, default_query_pre_attn_scalar, default_sliding_window,
    gguf_query_pre_attn_scalar, positive, sliding_layers,
};
use crate::gguf::ModelHints;
use crate::model::{AttentionMask, CausalLm, Pass, softcap};
use crate::nn::{AttentionSpec, KvCache, Linear, RmsNorm, Rope, RopeScaling};
use crate::weights::WeightSource;

/// transformers' `Gemma3TextConfig` RoPE bases: global and local layers.
pub const DEFAULT_ROPE_THETA: (f64, f64) = (1_000_000.0, 10_000.0);

/// The `config.json` keys Gemma 3 reads (defaults as transformers' `Gemma3TextConfig`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Gemma3Config {
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
    /// RMSNorm epsilon (also of the Q/K norms).
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
    /// Window of the local layers.
    #[serde(default = "default_sliding_window")]
    pub sliding_window: Option<usize>,
    /// `sliding_attention` or `full_attention` per layer; from `sliding_window_pattern`
    /// (default 6: every sixth layer global) when absent.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Attention logit soft-capping.
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Final logit soft-capping.
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Bidirectional attention (EmbeddingGemma): not a causal LM, refused.
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
    /// Global layers' RoPE base (filled from either config layout).
    #[serde(skip)]
    pub rope_theta: f64,
    /// Global layers' RoPE scaling (Gemma 3 4B+: linear, factor 8).
    #[serde(skip, default = "no_scaling")]
    pub rope_scaling: RopeScaling,
    /// Local layers' RoPE base (`rope_local_base_freq` in transformers 4 configs).
    #[serde(skip)]
    pub rope_local_base_freq: f64,
    /// Which layers are local (filled from `layer_types` or the pattern).
    #[serde(skip)]
    pub sliding: Vec<bool>,
}

fn no_scaling() -> RopeScaling {
    RopeScaling::None
}

impl Gemma3Config {
    /// From a parsed `config.json` (`gemma3_text`, or the `text_config` of `gemma3`).
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let mut c: Self = serde_json::from_value(config.text.clone())
            .map_err(|e| ModelError::Config(format!("gemma3 config: {e}")))?;
        check_causal(c.use_bidirectional_attention, c.sliding_window)?;
        let pattern = match positive(config, "sliding_window_pattern")? {
            Some(p) => p,
            None => positive(config, "_sliding_window_pattern")?.unwrap_or(6),
        };
        c.sliding = sliding_layers(c.layer_types.as_deref(), c.num_hidden_layers, pattern)?;
        let per_type = config.get("rope_parameters").is_some_and(|p| {
            p.get("full_attention").is_some() || p.get("sliding_attention").is_some()
        });
        let scaling =
            |p: Option<Value>| RopeScaling::from_hf(p.as_ref()).map_err(ModelError::Config);
        if per_type {
            // transformers 5: one parameter set per layer type.
            let global = config.rope_parameters(Some("full_attention"));
            let local = config.rope_parameters(Some("sliding_attention"));
            c.rope_theta = theta(global.as_ref()).unwrap_or(DEFAULT_ROPE_THETA.0);
            c.rope_local_base_freq = theta(local.as_ref()).unwrap_or(DEFAULT_ROPE_THETA.1);
            c.rope_scaling = scaling(global)?;
            if scaling(local)? != RopeScaling::None {
                return Err(ModelError::Config(
                    "gemma3: RoPE scaling of the sliding layers is not supported".into(),
                ));
            }
        } else {
            // transformers 4: `rope_theta` and `rope_scaling` are the global layers', the local
            // base is `rope_local_base_freq`.
            c.rope_theta = config.rope_theta(None).unwrap_or(DEFAULT_ROPE_THETA.0);
            c.rope_scaling = scaling(config.rope_parameters(None))?;
            c.rope_local_base_freq = config
                .get("rope_local_base_freq")
                .and_then(Value::as_f64)
                .unwrap_or(DEFAULT_ROPE_THETA.1);
        }
        crate::config::check_decoder_config!(
            "gemma3",
            c,
            c.head_dim,
            &[c.rope_theta, c.rope_local_base_freq]
        )?;
        Ok(c)
    }

    /// From the metadata of a `gemma3` GGUF file. What the file does not state is what
    /// transformers and llama.cpp assume: every sixth layer global, a local RoPE base of 10k,
    /// `query_pre_attn_scalar` from the head size (27B: `hidden / heads`); the file's RoPE
    /// scaling applies to the global layers.
    pub fn from_gguf_hints(h: &ModelHints) -> Result<Self, ModelError> {
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
        let sliding_window = h.sliding_window.or(default_sliding_window());
        check_causal(None, sliding_window)?;
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
            query_pre_attn_scalar: gguf_query_pre_attn_scalar(h, 62),
            sliding_window,
            layer_types: None,
            attn_logit_softcapping: h.attn_logit_softcapping.map(f64::from),
            final_logit_softcapping: h.final_logit_softcapping.map(f64::from),
            use_bidirectional_attention: None,
            rope_theta: h.rope_theta.map_or(DEFAULT_ROPE_THETA.0, f64::from),
            rope_scaling,
            rope_local_base_freq: DEFAULT_ROPE_THETA.1,
            sliding: sliding_layers(None, h.num_hidden_layers, 6)?,
        })
    }

    /// K/V heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
}

fn theta(p: Option<&Value>) -> Option<f64> {
    p?.get("rope_theta").and_then(Value::as_f64)
}

/// Where the text model's weights are: `model` (text-only checkpoints and GGUF), or the
/// multimodal layouts.
fn text_prefix(src: &dyn WeightSource) -> &'static str {
    ["model", "language_model.model", "model.language_model"]
        .into_iter()
        .find(|p| src.contains(&format!("{p}.embed_tokens.weight")))
        .unwrap_or("model")
}

/// A Gemma 3 causal LM (text).
pub struct Gemma3<B: Backend> {
    config: Gemma3Config,
    embed_tokens: Tensor<B, 2>,
    layers: Vec<SandwichLayer<B>>,
    norm: RmsNorm<B>,
    lm_head: Linear<B>,
    global_rope: Rope,
    local_rope: Rope,
    attention: AttentionImpl,
}

impl<B: Backend> Gemma3<B> {
    /// Loads the weights (HF names) layer by layer.
    pub fn load(
        config: Gemma3Config,
        src: &mut dyn WeightSource,
        attention: AttentionImpl,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        if config.sliding.len() != config.num_hidden_layers {
            return Err(ModelError::Config(format!(
                "gemma3: {} layer types for {} layers",
                config.sliding.len(),
                config.num_hidden_layers
            )));
        }
        let prefix = text_prefix(src);
        let embed_tokens = src.tensor::<B, 2>(
            &format!("{prefix}.embed_tokens.weight"),
            [config.vocab_size, h],
            device,
        )?;
        let activation = gemma_activation(&config.hidden_activation)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for (i, &sliding) in config.sliding.iter().enumerate() {
            let spec = AttentionSpec {
                hidden: h,
                heads: config.num_attention_heads,
                kv_heads: config.kv_heads(),
                head_dim: config.head_dim,
                bias: config.attention_bias,
                scale: Some(config.query_pre_attn_scalar.powf(-0.5)),
                softcap: config.attn_logit_softcapping,
                sliding_window: config.sliding_window.filter(|_| sliding),
                qk_norm: Some((eps, true)),
            };
            layers.push(SandwichLayer::load(
                src,
                &format!("{prefix}.layers.{i}"),
                &spec,
                config.intermediate_size,
                activation,
                eps,
                device,
            )?);
        }
        let norm = RmsNorm::load(src, &format!("{prefix}.norm"), h, eps, true, device)?;
        let lm_head = Linear::from_weight(embed_tokens.clone());
        let global_rope = Rope::new(config.head_dim, config.rope_theta, &config.rope_scaling);
        let local_rope = Rope::new(
            config.head_dim,
            config.rope_local_base_freq,
            &RopeScaling::None,
        );
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            global_rope,
            local_rope,
            attention,
        })
    }

    /// The config.
    pub fn config(&self) -> &Gemma3Config {
        &self.config
    }
}

impl<B: Backend> CausalLm<B> for Gemma3<B> {
    fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let pass = Pass::new(&ids, attention_mask, cache)?;
        let device = ids.device();
        let dtype = self.embed_tokens.dtype();
        let global = self.global_rope.tables(&pass.positions, dtype, &device);
        let local = self.local_rope.tables(&pass.positions, dtype, &device);
        let mut x = embedding(self.embed_tokens.clone(), ids)
            .mul_scalar(embed_scale(self.config.hidden_size));
        let layers = self.layers.iter().zip(&self.config.sliding);
        for ((layer, &sliding), layer_cache) in layers.zip(cache.layers.iter_mut()) {
            let rope = if sliding { &local } else { &global };
            x = layer.forward(x, rope, pass.mask, layer_cache, self.attention)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 112,
            "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 16, "vocab_size": 128
        })
    }

    #[test]
    fn transformers_4_layout_reads_local_base_pattern_and_scaling() {
        let mut v = base();
        v["rope_theta"] = json!(1000000.0);
        v["rope_local_base_freq"] = json!(20000.0);
        v["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
        v["sliding_window_pattern"] = json!(3);
        let c = Gemma3Config::from_config(&ModelConfig::from_value(v).unwrap()).unwrap();
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.rope_local_base_freq, 2e4);
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 8.0 });
        assert_eq!(c.sliding, [true, true, false, true, true, false, true]);
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(c.query_pre_attn_scalar, 256.0);
        assert_eq!(c.final_logit_softcapping, None);
    }

    #[test]
    fn multimodal_wrapper_and_defaults() {
        let v = json!({"model_type": "gemma3", "text_config": base()});
        let c = Gemma3Config::from_config(&ModelConfig::from_value(v).unwrap()).unwrap();
        assert_eq!((c.rope_theta, c.rope_local_base_freq), DEFAULT_ROPE_THETA);
        assert_eq!(c.sliding.iter().filter(|s| !**s).count(), 1);
        let mut v = base();
        v["use_bidirectional_attention"] = json!(true);
        let err = Gemma3Config::from_config(&ModelConfig::from_value(v).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bidirectional"), "{err}");
    }
}
