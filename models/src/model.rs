//! The traits a model implements, so generation and pipelines work with any architecture, and
//! the attention mask of batched inputs.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kiln_attention::KeyPadding;

use crate::ModelError;
use crate::nn::KvCache;

/// A decoder-only language model with a KV cache.
pub trait CausalLm<B: Backend> {
    /// Runs `ids` (`[batch, seq]`) after what `cache` holds; returns logits
    /// `[batch, seq, vocab]`, or `[batch, 1, vocab]` for the last position when `last_only`.
    /// Every row is a real sequence continuing at position `cache.seq_len`.
    fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward_with(ids, None, cache, last_only)
    }

    /// [`CausalLm::forward`] for a padded batch, as transformers' `forward(input_ids,
    /// attention_mask, position_ids)` inside `generate`: `attention_mask` covers the cached
    /// tokens and `ids` (`[batch, cache.seq_len + seq]`, `false` for padding), padding keys are
    /// masked everywhere, and each row's positions count its real tokens only (`cumsum - 1`
    /// over the mask, so a left-padded row starts at position 0). Logits at padding positions
    /// are unspecified (finite). `None` is an all-real mask.
    fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_mask: Option<&AttentionMask>,
        cache: &mut KvCache<B>,
        last_only: bool,
    ) -> Result<Tensor<B, 3>, ModelError>;

    /// An empty cache.
    fn new_cache(&self) -> KvCache<B>;
}

/// transformers' `attention_mask` of a batch: `[batch, len]`, `true` (1) for real tokens,
/// `false` (0) for padding. For generation it grows by one column per decoded token
/// ([`AttentionMask::push_real`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionMask {
    batch: usize,
    len: usize,
    keep: Vec<bool>,
}

impl AttentionMask {
    /// From row-major values, `keep[b * len + j]`.
    pub fn new(batch: usize, len: usize, keep: Vec<bool>) -> Result<Self, ModelError> {
        if keep.len() != batch * len {
            return Err(ModelError::Config(format!(
                "attention mask of {} values is not [{batch}, {len}]",
                keep.len()
            )));
        }
        Ok(Self { batch, len, keep })
    }

    /// From 0/1 rows of equal length (transformers' `attention_mask` as nested lists).
    pub fn from_rows(rows: &[Vec<u8>]) -> Result<Self, ModelError> {
        let len = rows.first().map_or(0, Vec::len);
        let mut keep = Vec::with_capacity(rows.len() * len);
        for (b, row) in rows.iter().enumerate() {
            if row.len() != len {
                return Err(ModelError::Config(format!(
                    "attention mask row {b} has {} values, row 0 has {len}",
                    row.len()
                )));
            }
            for &v in row {
                match v {
                    0 => keep.push(false),
                    1 => keep.push(true),
                    other => {
                        return Err(ModelError::Config(format!(
                            "attention mask row {b} holds {other}; only 0 and 1 are allowed"
                        )));
                    }
                }
            }
        }
        Self::new(rows.len(), len, keep)
    }

    /// From an int tensor of 0/1 (reads it back from the device).
    pub fn from_tensor<B: Backend>(mask: Tensor<B, 2, Int>) -> Result<Self, ModelError> {
        let [batch, len] = mask.dims();
        let values: Vec<i64> = mask
            .into_data()
            .convert::<i64>()
            .to_vec()
            .map_err(|e| ModelError::Config(format!("reading the attention mask: {e:?}")))?;
        let rows: Result<Vec<Vec<u8>>, ModelError> = values
            .chunks(len.max(1))
            .map(|row| {
                row.iter()
                    .map(|&v| {
                        u8::try_from(v).map_err(|_| {
                            ModelError::Config(format!(
                                "attention mask holds {v}; only 0 and 1 are allowed"
                            ))
                        })
                    })
                    .collect()
            })
            .collect();
        let rows = rows?;
        if len == 0 {
            return Self::new(batch, 0, Vec::new());
        }
        Self::from_rows(&rows)
    }

    /// Left padding to a common length: row `b` is `len - lengths[b]` padding tokens followed
    /// by `lengths[b]` real ones (how batched prompts are laid out for generation).
    pub fn left_padded(lengths: &[usize], len: usize) -> Result<Self, ModelError> {
        if let Some(&l) = lengths.iter().find(|&&l| l > len) {
            return Err(ModelError::Config(format!(
                "a sequence of {l} tokens does not fit a padded length of {len}"
            )));
        }
        let keep = lengths
            .iter()
            .flat_map(|&l| (0..len).map(move |j| j >= len - l))
            .collect();
        Self::new(lengths.len(), len, keep)
    }

    /// Rows.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Columns: tokens per row, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no columns.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether token `j` of row `b` is real.
    pub fn keeps(&self, b: usize, j: usize) -> bool {
        j < self.len && self.keep.get(b * self.len + j).copied().unwrap_or(false)
    }

    /// Whether every token is real (no padding at all).
    pub fn is_all_real(&self) -> bool {
        self.keep.iter().all(|&k| k)
    }

    /// Appends `n` real tokens to every row (the tokens of a decode step).
    pub fn push_real(&mut self, n: usize) {
        let len = self.len + n;
        let mut keep = Vec::with_capacity(self.batch * len);
        for b in 0..self.batch {
            keep.extend_from_slice(&self.keep[b * self.len..(b + 1) * self.len]);
            keep.extend(std::iter::repeat_n(true, n));
        }
        self.keep = keep;
        self.len = len;
    }

    /// Position ids of the last `seq` columns, per row: the number of real tokens before each
    /// one (transformers' `cumsum(-1) - 1`); padding tokens get 0.
    pub fn positions(&self, seq: usize) -> Vec<Vec<usize>> {
        let from = self.len.saturating_sub(seq);
        (0..self.batch)
            .map(|b| {
                let mut real = 0usize;
                let mut out = Vec::with_capacity(seq);
                for j in 0..self.len {
                    let keep = self.keeps(b, j);
                    if j >= from {
                        out.push(if keep { real } else { 0 });
                    }
                    real += usize::from(keep);
                }
                out
            })
            .collect()
    }

    /// The padding of the last `k_len` columns as kiln-attention takes it (a layer whose cache
    /// keeps a window sees only the most recent keys); `None` when they are all real.
    pub fn key_padding(&self, k_len: usize) -> Option<KeyPadding> {
        let from = self.len.saturating_sub(k_len);
        let keep: Vec<bool> = (0..self.batch)
            .flat_map(|b| (from..self.len).map(move |j| (b, j)))
            .map(|(b, j)| self.keeps(b, j))
            .collect();
        if keep.iter().all(|&k| k) {
            return None;
        }
        Some(KeyPadding::Mask {
            k_len: self.len - from,
            keep,
        })
    }
}

/// What every layer of one forward pass shares: the positions of the new tokens and the mask.
pub(crate) struct Pass<'a> {
    /// Position ids, one row for the whole batch or one per row.
    pub positions: Vec<Vec<usize>>,
    /// The padding mask, when there is padding.
    pub mask: Option<&'a AttentionMask>,
    /// New tokens per row.
    pub seq: usize,
}

impl<'a> Pass<'a> {
    /// Checks `ids` against the cache and the mask and derives the positions.
    pub fn new<B: Backend>(
        ids: &Tensor<B, 2, Int>,
        mask: Option<&'a AttentionMask>,
        cache: &KvCache<B>,
    ) -> Result<Self, ModelError> {
        let [batch, seq] = ids.dims();
        if seq == 0 || batch == 0 {
            return Err(ModelError::Config(
                "forward needs at least one token".into(),
            ));
        }
        if let Some(cached) = cache.batch()
            && cached != batch
        {
            return Err(ModelError::Config(format!(
                "a batch of {batch} does not continue a cache of {cached} sequences"
            )));
        }
        let start = cache.seq_len;
        let Some(mask) = mask.filter(|m| !m.is_all_real() || m.len() != start + seq) else {
            return Ok(Self {
                positions: vec![(start..start + seq).collect()],
                mask: None,
                seq,
            });
        };
        if mask.batch() != batch || mask.len() != start + seq {
            return Err(ModelError::Config(format!(
                "attention mask is [{}, {}]; [{batch}, {}] expected ({start} cached + {seq} new tokens)",
                mask.batch(),
                mask.len(),
                start + seq
            )));
        }
        Ok(Self {
            positions: mask.positions(seq),
            mask: Some(mask),
            seq,
        })
    }

    /// The hidden states whose logits are wanted: all, or the last position.
    pub fn keep<B: Backend>(&self, x: Tensor<B, 3>, last_only: bool) -> Tensor<B, 3> {
        if last_only {
            x.narrow(1, self.seq - 1, 1)
        } else {
            x
        }
    }
}

/// `cap * tanh(x / cap)` (Gemma 2's final logit soft-capping).
pub(crate) fn softcap<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    cap: Option<f64>,
) -> Tensor<B, D> {
    match cap {
        Some(cap) => x.div_scalar(cap).tanh().mul_scalar(cap),
        None => x,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_real_tokens_like_transformers() {
        // transformers: cumsum(-1) - 1, padding filled with 0.
        let m = AttentionMask::from_rows(&[
            vec![0, 0, 1, 1, 1],
            vec![1, 1, 1, 1, 1],
            vec![1, 0, 1, 0, 1],
        ])
        .unwrap();
        assert_eq!(
            m.positions(5),
            vec![
                vec![0, 0, 0, 1, 2],
                vec![0, 1, 2, 3, 4],
                vec![0, 0, 1, 0, 2]
            ]
        );
        assert_eq!(m.positions(2), vec![vec![1, 2], vec![3, 4], vec![0, 2]]);
    }

    #[test]
    fn left_padding_and_decode_steps() {
        let mut m = AttentionMask::left_padded(&[3, 1], 3).unwrap();
        assert_eq!(
            m,
            AttentionMask::from_rows(&[vec![1, 1, 1], vec![0, 0, 1]]).unwrap()
        );
        m.push_real(1);
        assert_eq!(m.len(), 4);
        assert_eq!(m.positions(1), vec![vec![3], vec![1]]);
        // A window layer sees the last 2 keys: no padding there.
        assert_eq!(m.key_padding(2), None);
        assert_eq!(
            m.key_padding(3),
            Some(KeyPadding::Mask {
                k_len: 3,
                keep: vec![true, true, true, false, true, true]
            })
        );
        assert!(AttentionMask::left_padded(&[4], 3).is_err());
    }

    #[test]
    fn malformed_masks_are_errors() {
        assert!(AttentionMask::from_rows(&[vec![1, 2]]).is_err());
        assert!(AttentionMask::from_rows(&[vec![1, 1], vec![1]]).is_err());
        assert!(AttentionMask::new(2, 2, vec![true; 3]).is_err());
        let t = Tensor::<burn::backend::NdArray, 2, Int>::from_data(
            burn::tensor::TensorData::new(vec![1i64, 0, 1, -1], [2, 2]),
            &Default::default(),
        );
        assert!(AttentionMask::from_tensor(t).is_err());
    }
}
