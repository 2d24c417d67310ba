//! Llama, Mistral, Gemma 1/2/3 and BERT on burn.
//!
//! ```
//! use kiln_models::config::{Architecture, ModelConfig};
//! let config = ModelConfig::from_value(serde_json::json!({"model_type": "llama", "rope_theta": 1e4})).unwrap();
//! assert_eq!(config.require_architecture().unwrap(), Architecture::Llama);
//! assert_eq!(config.rope_theta(None), Some(1e4));
//! ```

pub mod bert;
pub mod config;
pub mod embed;
mod error;

pub use error::ModelError;
pub mod eval;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod kernel_cache;
pub mod llama;
pub mod mistral;
pub mod model;
pub mod nn;
pub mod pipeline;
pub mod registry;
pub mod resolve;
pub mod weights;
