//! The traits a model implements, so generation and pipelines work with any architecture.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::ModelError;
use crate::nn::KvCache;

/// A decoder-only language model with a KV cache.
pub trait CausalLm<B: Backend> {
    /// Runs `ids` (`[batch, seq]`) after what `cache` holds; returns logits
    /// `[batch, seq, vocab]`, or `[batch, 1, vocab]` for the last position when `last_only`.
    fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError>;

    /// An empty cache.
    fn new_cache(&self) -> KvCache<B>;
}

impl<B: Backend> CausalLm<B> for crate::llama::Llama<B> {
    fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        crate::llama::Llama::forward(self, ids, cache, last_only)
    }

    fn new_cache(&self) -> KvCache<B> {
        crate::llama::Llama::new_cache(self)
    }
}

/// A bidirectional encoder (BERT and kin): a hidden state for every token.
pub trait Encoder<B: Backend> {
    /// Last hidden states `[batch, seq, hidden]` of `ids` (`[batch, seq]`).
    ///
    /// `token_type_ids` (segment ids) are zeros when `None`; `attention_mask` (1 = token,
    /// 0 = padding) is all ones when `None`. Both have the shape of `ids`.
    fn encode(
        &self,
        ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, ModelError>;

    /// Width of the hidden states.
    fn hidden_size(&self) -> usize;

    /// The longest sequence the encoder takes (its position embeddings).
    fn max_positions(&self) -> usize;
}
