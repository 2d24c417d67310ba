//! The KV cache: keys and values of the tokens seen so far, per layer.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// One layer's cached keys and values, `[batch, kv_heads, seq, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct LayerCache<B: Backend> {
    kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> LayerCache<B> {
    /// Appends new keys/values and returns everything cached, ready for attention.
    /// `window` keeps only the last `window` positions (sliding-window layers).
    pub fn append(
        &mut self,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        window: Option<usize>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        let full = (k.clone(), v.clone());
        let (k, v) = match window {
            Some(w) if k.dims()[2] > w => {
                let len = k.dims()[2];
                (k.narrow(2, len - w, w), v.narrow(2, len - w, w))
            }
            _ => (k, v),
        };
        self.kv = Some((k, v));
        full
    }

    /// Cached positions (at most the window of a sliding-window layer).
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.kv.is_none()
    }

    /// The batch size of what is cached.
    pub fn batch(&self) -> Option<usize> {
        self.kv.as_ref().map(|(k, _)| k.dims()[0])
    }
}

/// The cache of a whole model.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// Per layer.
    pub layers: Vec<LayerCache<B>>,
    /// Tokens processed so far (the position of the next token).
    pub seq_len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| LayerCache { kv: None }).collect(),
            seq_len: 0,
        }
    }

    /// The batch size of what is cached (`None` while empty).
    pub fn batch(&self) -> Option<usize> {
        self.layers.iter().find_map(LayerCache::batch)
    }
}
