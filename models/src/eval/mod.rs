//! Evaluating language models: strided perplexity.

pub mod perplexity;

pub use perplexity::{
    Perplexity, PerplexityConfig, PerplexityProgress, Window, WindowScore, encode_text, perplexity,
    plan_windows,
};
