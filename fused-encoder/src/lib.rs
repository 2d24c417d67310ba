//! BetterTransformer-style fast path for BERT-family encoders on burn.
//!
//! The first piece is padding removal: a batch padded to its longest sequence wastes
//! compute on pad tokens; [`Unpadded`] packs only the real tokens into
//! `[total_tokens, hidden]` with the cumulative sequence lengths that varlen attention
//! kernels take, and puts them back afterwards.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::Tensor;
//! use kiln_fused_encoder::Unpadded;
//!
//! let device = Default::default();
//! let hidden = Tensor::<NdArray, 3>::ones([2, 4, 8], &device);
//! let layout = Unpadded::from_lengths(&[4, 1], 4).unwrap();
//! let packed = layout.unpad(hidden);
//! assert_eq!(packed.dims(), [5, 8]);
//! assert_eq!(layout.cu_seqlens(), &[0, 4, 5]);
//! ```

mod unpad;

pub use unpad::Unpadded;

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncoderError {
    /// A sequence length larger than the padded length.
    #[error("sequence {index} has length {length}, longer than the padded length {padded}")]
    LengthTooLong {
        /// Which sequence of the batch.
        index: usize,
        /// Its length.
        length: usize,
        /// The padded length.
        padded: usize,
    },
    /// A padding mask whose real tokens are not a prefix of the row (right padding).
    #[error("row {row} of the attention mask is not right-padded (a 1 follows a 0)")]
    NotRightPadded {
        /// The offending row.
        row: usize,
    },
    /// Tensor shapes that do not fit the layout.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
