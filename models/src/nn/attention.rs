//! The self-attention block every decoder shares: Q/K/V projections, optional Q/K norms,
//! RoPE, the KV cache, kiln-attention, the output projection.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_attention::{AttentionImpl, AttentionOptions, Window, attention_with_kvcache};

use crate::ModelError;
use crate::model::AttentionMask;
use crate::nn::{LayerCache, Linear, RmsNorm, RopeTables};
use crate::weights::WeightSource;

/// The hyper-parameters of one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// K/V heads (a divisor of `heads`).
    pub kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// Bias on the four projections.
    pub bias: bool,
    /// Score scale; `1/sqrt(head_dim)` when `None` (Gemma 2/3: `query_pre_attn_scalar^-0.5`).
    pub scale: Option<f64>,
    /// Attention logit soft-capping (Gemma 2).
    pub softcap: Option<f64>,
    /// transformers' `sliding_window` of this layer: the query sees itself and the
    /// `sliding_window - 1` tokens before it, and the cache keeps no more than that.
    pub sliding_window: Option<usize>,
    /// RMSNorm of each query and key head before RoPE (Gemma 3): `(eps, add_unit_offset)`.
    pub qk_norm: Option<(f64, bool)>,
}

/// The Q, K and V projections: one Linear with the three outputs side by side where the
/// weights allow it (dense, GPU backends: one launch instead of three), else three.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum Qkv<B: Backend> {
    Fused(Linear<B>),
    Split {
        q: Linear<B>,
        k: Linear<B>,
        v: Linear<B>,
    },
}

/// `o_proj(attention(rope(q_norm(q_proj x)), rope(k_norm(k_proj x)), v_proj x))`.
#[derive(Debug, Clone)]
pub struct SelfAttention<B: Backend> {
    qkv: Qkv<B>,
    o_proj: Linear<B>,
    q_norm: Option<RmsNorm<B>>,
    k_norm: Option<RmsNorm<B>>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    options: AttentionOptions,
}

impl<B: Backend> SelfAttention<B> {
    /// Loads `{prefix}.{q,k,v,o}_proj` (and `{prefix}.{q,k}_norm` when the spec has Q/K norms).
    pub fn load(
        source: &mut dyn WeightSource,
        prefix: &str,
        spec: &AttentionSpec,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let AttentionSpec {
            hidden: h,
            heads,
            kv_heads,
            head_dim: hd,
            bias,
            ..
        } = *spec;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || hd == 0 {
            return Err(ModelError::Config(format!(
                "{heads} attention heads, {kv_heads} key/value heads of size {hd}: the query heads \
                 must be a nonzero multiple of the key/value heads"
            )));
        }
        if spec.sliding_window == Some(0) {
            return Err(ModelError::Config(
                "sliding_window must be at least 1".into(),
            ));
        }
        let linear = |src: &mut dyn WeightSource, name: &str, i, o| {
            Linear::load(src, &format!("{prefix}.{name}"), i, o, bias, device)
        };
        let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{prefix}.{n}"));
        let (nq, nkv) = (heads * hd, kv_heads * hd);
        let mut parts = Linear::load_fused(source, &names, h, &[nq, nkv, nkv], bias, device)?;
        let qkv = match (parts.pop(), parts.pop(), parts.pop()) {
            (Some(fused), None, None) => Qkv::Fused(fused),
            (Some(v), Some(k), Some(q)) => Qkv::Split { q, k, v },
            _ => unreachable!("load_fused gives one Linear or one per name"),
        };
        let o_proj = linear(source, "o_proj", heads * hd, h)?;
        let (q_norm, k_norm) = match spec.qk_norm {
            Some((eps, offset)) => (
                Some(RmsNorm::load(
                    source,
                    &format!("{prefix}.q_norm"),
                    hd,
                    eps,
                    offset,
                    device,
                )?),
                Some(RmsNorm::load(
                    source,
                    &format!("{prefix}.k_norm"),
                    hd,
                    eps,
                    offset,
                    device,
                )?),
            ),
            None => (None, None),
        };
        let mut options = AttentionOptions::causal();
        options.scale = spec.scale;
        options.softcap = spec.softcap;
        if let Some(w) = spec.sliding_window {
            options.window = Window::sliding(w);
        }
        Ok(Self {
            qkv,
            o_proj,
            q_norm,
            k_norm,
            heads,
            kv_heads,
            head_dim: hd,
            options,
        })
    }

    /// `[batch, seq, hidden]` after what `cache` holds -> `[batch, seq, hidden]`.
    /// `mask` is the whole batch's padding mask (cached tokens included), if any.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: Option<&AttentionMask>,
        cache: &mut LayerCache<B>,
        implementation: AttentionImpl,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s, _] = x.dims();
        let split =
            |t: Tensor<B, 3>, heads: usize| t.reshape([b, s, heads, self.head_dim]).swap_dims(1, 2);
        let (mut q, mut k, v) = match &self.qkv {
            Qkv::Fused(qkv) => {
                // Split into heads first, then into Q/K/V heads: views, no copies (a reshape
                // of a narrowed view would copy).
                let (h, kvh) = (self.heads, self.kv_heads);
                let y = qkv.forward(x).reshape([b, s, h + 2 * kvh, self.head_dim]);
                let part = |from: usize, n: usize| y.clone().narrow(2, from, n).swap_dims(1, 2);
                (part(0, h), part(h, kvh), part(h + kvh, kvh))
            }
            Qkv::Split { q, k, v } => (
                split(q.forward(x.clone()), self.heads),
                split(k.forward(x.clone()), self.kv_heads),
                split(v.forward(x), self.kv_heads),
            ),
        };
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        // RoPE and the cache writes in one launch where a kernel does them.
        let (kb, vb, start) = cache.take_room(k.dims(), k.dtype(), &k.device());
        let (q, cached) = match rope.apply_and_append(q, k, v, kb, vb, start) {
            Ok((q, kb, vb)) => (q, cache.commit(kb, vb, start + s)),
            Err((q, k, v, kb, vb)) => {
                let (q, k) = (rope.apply(q), rope.apply(k));
                (q, cache.write(kb, vb, start, k, v))
            }
        };
        let padding = mask.and_then(|m| m.key_padding(cached.len));
        let options = match padding {
            None => std::borrow::Cow::Borrowed(&self.options),
            Some(p) => std::borrow::Cow::Owned(self.options.clone().with_key_padding(p)),
        };
        let out =
            attention_with_kvcache(implementation, q, cached.k, cached.v, cached.len, &options)
                .map_err(|e| ModelError::Config(e.to_string()))?;
        // `[batch, heads, seq, head_dim]` -> `[batch, seq, heads * head_dim]`; one position's
        // heads already lie in that order (no copy for a decode step).
        let out = if s == 1 {
            out.reshape([b, s, self.heads * self.head_dim])
        } else {
            out.swap_dims(1, 2)
                .reshape([b, s, self.heads * self.head_dim])
        };
        Ok(self.o_proj.forward(out))
    }
}
