//! # kiln-quant
//!
//! bitsandbytes-exact quantization for Rust: blockwise NF4/FP4 with double quantization,
//! row-wise int8 and the LLM.int8 outlier decomposition, the HF + bitsandbytes checkpoint
//! format in both directions, and (with the `burn` feature) the `Linear4bit` / `Linear8bitLt`
//! modules for burn.
//!
//! The compatibility target is bitsandbytes 0.50.2 (its CPU path): packed codes, absmax, nested
//! absmax and offset are bit-identical to what it writes, and checkpoints load in
//! transformers + bitsandbytes. Where kiln differs, `COMPATIBILITY.md` says so.
//!
//! ```
//! use kiln_quant::codec::{FourBitType, Quantized4bit};
//!
//! let weight: Vec<f32> = (0..4096).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
//! let q = Quantized4bit::quantize(&weight, &[64, 64], FourBitType::Nf4, 64, true)?;
//! assert_eq!(q.packed().len(), 2048); // two codes per byte
//! let back: Vec<f32> = q.dequantize();
//! let max_err = back.iter().zip(&weight).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(max_err < 0.2);
//! # Ok::<(), kiln_quant::QuantError>(())
//! ```
//!
//! A whole model directory: [`checkpoint::quantize_checkpoint`] and [`checkpoint::Checkpoint`].
//! The codec layer ([`codec`], [`checkpoint`], [`QuantConfig`]) builds without burn
//! (`default-features = false`).

pub mod checkpoint;
pub mod codec;
mod config;
mod element;
mod error;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod gpu;
#[cfg(feature = "burn")]
pub mod nn;

pub use config::{QuantBits, QuantConfig};
pub use error::{QuantError, Result};
/// The `half` crate, whose `f16` / `bf16` the codecs accept.
pub use half;
