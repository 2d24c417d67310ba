//! The codecs, bit-exact with bitsandbytes 0.50.2's CPU path. No burn dependency.
//!
//! - [`Quantized4bit`]: blockwise NF4/FP4 (blocksizes 32..4096), optional double quantization
//!   of the absmax ([`NestedAbsmax`]).
//! - [`quantize_blockwise_8bit`]: blockwise 8-bit with a 256-entry code such as
//!   [`dynamic_map`] (the codec behind double quantization).
//! - [`Int8Rowwise`], [`quantize_rows`], [`int8_linear`]: row-wise absmax int8 and the LLM.int8
//!   mixed-precision decomposition.
//!
//! Inputs may be `f32`, [`half::f16`] or [`half::bf16`] ([`Element`]); NaN and infinities are
//! rejected with [`QuantError::NonFinite`](crate::QuantError::NonFinite).

mod blockwise8;
mod fourbit;
pub(crate) mod int8;
mod tables;
mod torch_sum;

pub use crate::element::{Element, FloatDtype};
pub use blockwise8::{dequantize_blockwise_8bit, quantize_blockwise_8bit};
pub use fourbit::{
    Absmax, DEFAULT_BLOCKSIZE, FourBitType, NESTED_BLOCKSIZE, NestedAbsmax, Quantized4bit,
    VALID_BLOCKSIZES, check_blocksize,
};
pub use int8::{
    DEFAULT_INT8_THRESHOLD, Int8Decomposition, Int8Rowwise, int8_linear, quantize_rows,
};
pub use tables::{dynamic_map, fp4_code, nf4_code};
