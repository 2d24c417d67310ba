//! The subcommands.

pub mod chat;
pub mod common;
pub mod embed;
pub mod generate;
pub mod inspect;
pub mod perplexity;
pub mod quantize;
pub mod template;
