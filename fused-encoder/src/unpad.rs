//! Padding removal: pack the real tokens of a right-padded batch, and unpack them.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::EncoderError;

/// The layout of a right-padded batch with its pad tokens removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpadded {
    batch: usize,
    padded_len: usize,
    /// Flat indices (`row * padded_len + col`) of the real tokens, in order.
    indices: Vec<i64>,
    /// Cumulative sequence lengths, `batch + 1` entries starting at 0.
    cu_seqlens: Vec<usize>,
    max_seqlen: usize,
}

impl Unpadded {
    /// From per-sequence lengths and the padded length.
    pub fn from_lengths(lengths: &[usize], padded_len: usize) -> Result<Self, EncoderError> {
        let mut indices = Vec::with_capacity(lengths.iter().sum());
        let mut cu_seqlens = Vec::with_capacity(lengths.len() + 1);
        cu_seqlens.push(0);
        for (row, &length) in lengths.iter().enumerate() {
            if length > padded_len {
                return Err(EncoderError::LengthTooLong {
                    index: row,
                    length,
                    padded: padded_len,
                });
            }
            let start = (row * padded_len) as i64;
            indices.extend(start..start + length as i64);
            cu_seqlens.push(cu_seqlens[row] + length);
        }
        Ok(Self {
            batch: lengths.len(),
            padded_len,
            indices,
            cu_seqlens,
            max_seqlen: lengths.iter().copied().max().unwrap_or(0),
        })
    }

    /// From a `[batch][padded_len]` attention mask of 1 (token) and 0 (pad), as HF tokenizers
    /// return it for right padding.
    pub fn from_mask(mask: &[Vec<u32>]) -> Result<Self, EncoderError> {
        let padded_len = mask.first().map_or(0, Vec::len);
        let mut lengths = Vec::with_capacity(mask.len());
        for (row, m) in mask.iter().enumerate() {
            if m.len() != padded_len {
                return Err(EncoderError::Shape(format!(
                    "mask row {row} has {} entries, row 0 has {padded_len}",
                    m.len()
                )));
            }
            let length = m.iter().take_while(|&&x| x != 0).count();
            if m[length..].iter().any(|&x| x != 0) {
                return Err(EncoderError::NotRightPadded { row });
            }
            lengths.push(length);
        }
        Self::from_lengths(&lengths, padded_len)
    }

    /// Total number of real tokens.
    pub fn total_tokens(&self) -> usize {
        self.indices.len()
    }

    /// Cumulative sequence lengths (`batch + 1` entries), the varlen attention layout.
    pub fn cu_seqlens(&self) -> &[usize] {
        &self.cu_seqlens
    }

    /// The longest sequence.
    pub fn max_seqlen(&self) -> usize {
        self.max_seqlen
    }

    fn index_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        Tensor::from_data(
            TensorData::new(self.indices.clone(), [self.indices.len()]),
            device,
        )
    }

    /// `[batch, padded_len, hidden]` -> `[total_tokens, hidden]`.
    pub fn unpad<B: Backend>(&self, padded: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, len, hidden] = padded.dims();
        debug_assert_eq!((batch, len), (self.batch, self.padded_len));
        let flat = padded.reshape([batch * len, hidden]);
        let indices = self.index_tensor(&flat.device());
        flat.select(0, indices)
    }

    /// `[total_tokens, hidden]` -> `[batch, padded_len, hidden]`, pads filled with zeros.
    pub fn pad<B: Backend>(&self, packed: Tensor<B, 2>) -> Result<Tensor<B, 3>, EncoderError> {
        let [total, hidden] = packed.dims();
        if total != self.total_tokens() {
            return Err(EncoderError::Shape(format!(
                "{total} packed tokens, the layout has {}",
                self.total_tokens()
            )));
        }
        let device = packed.device();
        let zeros = Tensor::<B, 2>::zeros([self.batch * self.padded_len, hidden], &device);
        let out = zeros.select_assign(
            0,
            self.index_tensor(&device),
            packed,
            burn::tensor::IndexingUpdateOp::Add,
        );
        Ok(out.reshape([self.batch, self.padded_len, hidden]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    #[test]
    fn layout_from_mask() {
        let u =
            Unpadded::from_mask(&[vec![1, 1, 1, 0], vec![1, 0, 0, 0], vec![1, 1, 1, 1]]).unwrap();
        assert_eq!(u.cu_seqlens(), &[0, 3, 4, 8]);
        assert_eq!(u.max_seqlen(), 4);
        assert_eq!(u.total_tokens(), 8);
    }

    #[test]
    fn bad_masks_are_errors() {
        assert_eq!(
            Unpadded::from_mask(&[vec![1, 0, 1]]),
            Err(EncoderError::NotRightPadded { row: 0 })
        );
        assert!(matches!(
            Unpadded::from_mask(&[vec![1, 1], vec![1]]),
            Err(EncoderError::Shape(_))
        ));
        assert_eq!(
            Unpadded::from_lengths(&[5], 4),
            Err(EncoderError::LengthTooLong {
                index: 0,
                length: 5,
                padded: 4
            })
        );
    }

    #[test]
    fn unpad_then_pad_keeps_tokens_and_zeroes_pads() {
        let device = Default::default();
        let x = Tensor::<NdArray, 3>::random([3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let u = Unpadded::from_lengths(&[5, 2, 0], 5).unwrap();
        let packed = u.unpad(x.clone());
        assert_eq!(packed.dims(), [7, 4]);
        // Packed row 5 is sequence 1, token 0.
        packed.clone().slice([5..6, 0..4]).into_data().assert_eq(
            &x.clone()
                .slice([1..2, 0..1, 0..4])
                .reshape([1, 4])
                .into_data(),
            true,
        );
        let back = u.pad(packed).unwrap();
        back.clone()
            .slice([0..2, 0..2, 0..4])
            .into_data()
            .assert_eq(&x.slice([0..2, 0..2, 0..4]).into_data(), true);
        let pads = back.slice([1..3, 2..5, 0..4]).abs().sum().into_scalar();
        assert_eq!(pads, 0.0);
    }
}
