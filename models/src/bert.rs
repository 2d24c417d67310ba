//! BERT encoders (BERT, MiniLM and the sentence-transformers models built on them).
//!
//! Post-norm layers: embeddings (word + position + token type) then LayerNorm; each layer runs
//! self-attention over the unpadded keys, a dense projection, residual + LayerNorm, a GELU MLP,
//! residual + LayerNorm. Weights load under transformers' names, with or without the `bert.`
//! prefix that task heads (`BertForMaskedLM`, ...) add.

use burn::tensor::activation::{gelu, gelu_approximate, relu, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, ElementConversion, Int, Tensor};
use kiln_attention::AttentionImpl;
use serde::Deserialize;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::model::Encoder;
use crate::nn::Linear;
use crate::weights::WeightSource;

/// The `config.json` keys BERT reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// MLP activation (`gelu` is the exact, erf-based GELU).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence (rows of the position embeddings).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Segment (token type) count.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// The padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_positions() -> usize {
    512
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// From a parsed `config.json`; rejects what this implementation does not compute.
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_value(config.text.clone())
            .map_err(|e| ModelError::Config(format!("bert config: {e}")))?;
        crate::config::check_layer_count("bert: num_hidden_layers", c.num_hidden_layers)?;
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(ModelError::Config(format!(
                "bert: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        if c.position_embedding_type != "absolute" {
            return Err(ModelError::Config(format!(
                "bert: position_embedding_type `{}` is not supported (only `absolute`)",
                c.position_embedding_type
            )));
        }
        if c.type_vocab_size == 0 {
            return Err(ModelError::Config("bert: type_vocab_size is 0".into()));
        }
        Activation::from_hf(&c.hidden_act)?;
        Ok(c)
    }

    /// Head size.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }
}

/// The MLP activations of BERT-family configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x Φ(x)` with erf (`gelu`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    /// From transformers' `hidden_act` name.
    pub fn from_hf(name: &str) -> Result<Self, ModelError> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(ModelError::Config(format!(
                "hidden_act `{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
            ))),
        }
    }

    fn apply<const D: usize, B: Backend>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::Relu => relu(x),
            Self::Silu => silu(x),
        }
    }
}

/// LayerNorm over the last dimension, with weight and bias.
#[derive(Debug, Clone)]
struct LayerNorm<B: Backend> {
    weight: Tensor<B, 1>,
    bias: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// `{prefix}.weight`/`.bias`, or the TF-era `{prefix}.gamma`/`.beta`.
    fn load(
        src: &mut dyn WeightSource,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let (w, b) = if !src.contains(&format!("{prefix}.weight"))
            && src.contains(&format!("{prefix}.gamma"))
        {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(Self {
            weight: src.tensor::<B, 1>(&format!("{prefix}.{w}"), [dim], device)?,
            bias: src.tensor::<B, 1>(&format!("{prefix}.{b}"), [dim], device)?,
            eps,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(2);
        let normed = centered * var.add_scalar(self.eps).sqrt().recip();
        normed * self.weight.clone().unsqueeze::<3>() + self.bias.clone().unsqueeze::<3>()
    }
}

struct SelfAttention<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
    heads: usize,
    head_dim: usize,
}

/// Which keys are padding, in the two forms the attention paths use.
struct PaddingMask<B: Backend> {
    /// `[batch, 1, 1, seq]`: `f32::MIN` on padded keys, else 0 (transformers' additive mask).
    additive: Tensor<B, 4>,
    /// `[batch, 1, 1, seq]`: true on padded keys.
    padded: Tensor<B, 4, Bool>,
}

impl<B: Backend> SelfAttention<B> {
    fn load(
        c: &BertConfig,
        src: &mut dyn WeightSource,
        p: &str,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let h = c.hidden_size;
        Ok(Self {
            query: Linear::load(src, &format!("{p}.self.query"), h, h, true, device)?,
            key: Linear::load(src, &format!("{p}.self.key"), h, h, true, device)?,
            value: Linear::load(src, &format!("{p}.self.value"), h, h, true, device)?,
            output: Linear::load(src, &format!("{p}.output.dense"), h, h, true, device)?,
            output_norm: LayerNorm::load(
                src,
                &format!("{p}.output.LayerNorm"),
                h,
                c.layer_norm_eps,
                device,
            )?,
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
        })
    }

    /// Attention, output projection, residual and LayerNorm.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &PaddingMask<B>,
        implementation: AttentionImpl,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s, _] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([b, s, self.heads, self.head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let context = match implementation {
            AttentionImpl::Eager | AttentionImpl::Auto => {
                let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
                softmax(scores + mask.additive.clone(), 3).matmul(v)
            }
            AttentionImpl::Sdpa => {
                let padded = mask.padded.clone().expand([b, self.heads, s, s]);
                let options = AttentionModuleOptions {
                    scale: Some(scale),
                    softcap: None,
                    is_causal: false,
                };
                burn::tensor::module::attention(q, k, v, Some(padded), None, options)
            }
            AttentionImpl::Flash => {
                return Err(ModelError::Config(
                    "bert: the flash attention kernels do not take a padding mask; use eager or sdpa"
                        .into(),
                ));
            }
        };
        let context = context
            .swap_dims(1, 2)
            .reshape([b, s, self.heads * self.head_dim]);
        Ok(self.output_norm.forward(x + self.output.forward(context)))
    }
}

struct Layer<B: Backend> {
    attention: SelfAttention<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
}

/// A BERT encoder (no pooler, no task head): token ids in, last hidden states out.
pub struct Bert<B: Backend> {
    config: BertConfig,
    word_embeddings: Tensor<B, 2>,
    position_embeddings: Tensor<B, 2>,
    token_type_embeddings: Tensor<B, 2>,
    embeddings_norm: LayerNorm<B>,
    layers: Vec<Layer<B>>,
    activation: Activation,
    attention: AttentionImpl,
}

impl<B: Backend> Bert<B> {
    /// Loads the weights (transformers' names, `bert.` prefix optional) layer by layer.
    pub fn load(
        config: BertConfig,
        src: &mut dyn WeightSource,
        attention: AttentionImpl,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let activation = Activation::from_hf(&config.hidden_act)?;
        let prefix = if !src.contains("embeddings.word_embeddings.weight")
            && src.contains("bert.embeddings.word_embeddings.weight")
        {
            "bert."
        } else {
            ""
        };
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let e = format!("{prefix}embeddings");
        let word_embeddings = src.tensor::<B, 2>(
            &format!("{e}.word_embeddings.weight"),
            [config.vocab_size, h],
            device,
        )?;
        let position_embeddings = src.tensor::<B, 2>(
            &format!("{e}.position_embeddings.weight"),
            [config.max_position_embeddings, h],
            device,
        )?;
        let token_type_embeddings = src.tensor::<B, 2>(
            &format!("{e}.token_type_embeddings.weight"),
            [config.type_vocab_size, h],
            device,
        )?;
        let embeddings_norm = LayerNorm::load(src, &format!("{e}.LayerNorm"), h, eps, device)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            let inter = config.intermediate_size;
            layers.push(Layer {
                attention: SelfAttention::load(&config, src, &format!("{p}.attention"), device)?,
                intermediate: Linear::load(
                    src,
                    &format!("{p}.intermediate.dense"),
                    h,
                    inter,
                    true,
                    device,
                )?,
                output: Linear::load(src, &format!("{p}.output.dense"), inter, h, true, device)?,
                output_norm: LayerNorm::load(
                    src,
                    &format!("{p}.output.LayerNorm"),
                    h,
                    eps,
                    device,
                )?,
            });
        }
        Ok(Self {
            config,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
            activation,
            attention,
        })
    }

    /// The config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Last hidden states `[batch, seq, hidden]` of `ids` (`[batch, seq]`).
    ///
    /// `token_type_ids` default to zeros, `attention_mask` (1 = token, 0 = padding) to ones.
    /// Padded positions get hidden states too (their queries see the unpadded keys), as in
    /// transformers.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s] = ids.dims();
        if b == 0 || s == 0 {
            return Err(ModelError::Config(
                "bert: forward needs at least one sequence of one token".into(),
            ));
        }
        if s > self.config.max_position_embeddings {
            return Err(ModelError::Config(format!(
                "bert: {s} tokens exceed max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        let device = ids.device();
        check_range("input ids", &ids, self.config.vocab_size)?;
        let token_type_ids = match token_type_ids {
            Some(t) => {
                check_shape("token_type_ids", &t, [b, s])?;
                check_range("token type ids", &t, self.config.type_vocab_size)?;
                t
            }
            None => Tensor::zeros([b, s], &device),
        };
        let mask = match attention_mask {
            Some(m) => {
                check_shape("attention_mask", &m, [b, s])?;
                m
            }
            None => Tensor::ones([b, s], &device),
        };
        let padded = mask.equal_elem(0).reshape([b, 1, 1, s]);
        let additive =
            Tensor::<B, 4>::zeros([b, 1, 1, s], &device).mask_fill(padded.clone(), f32::MIN);
        let mask = PaddingMask { additive, padded };

        let words = embedding(self.word_embeddings.clone(), ids);
        let positions = self
            .position_embeddings
            .clone()
            .narrow(0, 0, s)
            .unsqueeze::<3>();
        let types = embedding(self.token_type_embeddings.clone(), token_type_ids);
        let mut x = self.embeddings_norm.forward(words + positions + types);
        for layer in &self.layers {
            x = layer.attention.forward(x, &mask, self.attention)?;
            let inner = self.activation.apply(layer.intermediate.forward(x.clone()));
            x = layer.output_norm.forward(x + layer.output.forward(inner));
        }
        Ok(x)
    }
}

fn check_shape<B: Backend>(
    what: &str,
    t: &Tensor<B, 2, Int>,
    expected: [usize; 2],
) -> Result<(), ModelError> {
    if t.dims() != expected {
        return Err(ModelError::Config(format!(
            "bert: {what} has shape {:?}, the input ids {expected:?}",
            t.dims()
        )));
    }
    Ok(())
}

/// Out-of-range ids would index past an embedding table: reject them instead.
fn check_range<B: Backend>(
    what: &str,
    t: &Tensor<B, 2, Int>,
    size: usize,
) -> Result<(), ModelError> {
    let min: i64 = t.clone().min().into_scalar().elem();
    let max: i64 = t.clone().max().into_scalar().elem();
    if min < 0 || max >= size as i64 {
        return Err(ModelError::Config(format!(
            "bert: {what} range from {min} to {max}, outside the table of {size}"
        )));
    }
    Ok(())
}

impl<B: Backend> Encoder<B> for Bert<B> {
    fn encode(
        &self,
        ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward(ids, token_type_ids, attention_mask)
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn max_positions(&self) -> usize {
        self.config.max_position_embeddings
    }
}
