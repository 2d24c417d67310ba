//! GGUF (llama.cpp) files: metadata, tensors, dequantization and the tokenizer.
//!
//! [`Gguf::open`] memory-maps a GGUF v2/v3 file and parses its header, metadata and tensor
//! table; tensor data stays in the file until a tensor (or a range of its rows) is
//! dequantized. Dequantization is bit-equal with gguf-py's `gguf.quants.dequantize` for
//! F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K.
//!
//! ```no_run
//! use kiln_models::gguf::{Gguf, unpermute_qk};
//!
//! let gguf = Gguf::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let hints = gguf.hints()?; // num_hidden_layers, hidden_size, head counts, rope_theta, ...
//! let q = gguf.tensor("blk.0.attn_q.weight")?;
//! let [rows, _cols] = [q.shape()[0], q.shape()[1]];
//! // llama.cpp permutes Q/K rows of llama models for its rotary layout; undo it.
//! let q_proj = unpermute_qk(&gguf.dequantize(q.name())?, rows, hints.num_attention_heads)?;
//! let tok = gguf.tokenizer()?;
//! let ids = tok.tokenizer.encode("Hello world", false).map(|e| e.get_ids().to_vec());
//! # Ok::<(), kiln_models::gguf::GgufError>(())
//! ```
//!
//! Differences from llama.cpp and transformers worth knowing are listed on
//! [`tokenizer`] and [`Gguf::tokenizer`].

mod dequant;
mod error;
mod file;
mod hf;
mod hints;
mod metadata;
mod parse;
mod permute;
mod tensor;
pub mod tokenizer;
mod types;
mod value;

pub use dequant::dequantize_into;
pub use error::GgufError;
pub use file::Gguf;
pub use hf::HfSource;
pub use hints::ModelHints;
pub use permute::unpermute_qk;
pub use tensor::TensorInfo;
pub use tokenizer::{GgufTokenizer, SpecialToken, SpecialTokens, TokenizerKind};
pub use types::GgmlType;
pub use value::{Array, Value, ValueType};
