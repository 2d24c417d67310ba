//! Generation: prefill, decode against the KV cache, sample, stream, stop.

mod batch;
mod config;
mod sampling;
mod text;

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;

pub use batch::generate_batch;
pub use config::GenerationConfig;
pub use sampling::{Sampler, argmax, min_p, repetition_penalty, softmax, top_k, top_p};
pub use text::TextStream;

use crate::ModelError;
use crate::model::CausalLm;

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "value")]
pub enum StopReason {
    /// An end-of-sequence token (its id).
    Eos(u32),
    /// A stop string (cut from the text).
    StopString(String),
    /// The new-token budget is spent.
    MaxTokens,
    /// The caller's callback asked to stop (e.g. Ctrl-C).
    Interrupted,
}

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids (an end-of-sequence token that stopped generation included).
    pub tokens: Vec<u32>,
    /// The new text, stop string removed.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// How long it took.
    pub timing: Timing,
}

/// Equal tokens, text and stop reason (timings differ from run to run).
impl PartialEq for Generation {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens && self.text == other.text && self.stop == other.stop
    }
}

/// Where the time of a generation went (as llama.cpp's timings print it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Prompt tokens of this row (padding excluded).
    pub prompt_tokens: usize,
    /// Rows of the batch it ran in.
    pub batch: usize,
    /// From the start of the prefill to the first new token chosen (time to first token,
    /// load excluded).
    pub prefill: std::time::Duration,
    /// From the first new token to the last one.
    pub decode: std::time::Duration,
}

/// Generates after `prompt` (a batch of one of [`generate_batch`]).
///
/// `decode` turns generated ids into text (the tokenizer's decode without special tokens);
/// `on_text` receives text deltas as soon as they are final (no broken UTF-8, nothing that
/// could still turn out to be part of a stop string) and may return `Break` to stop.
pub fn generate<B: Backend, M: CausalLm<B> + ?Sized>(
    model: &M,
    prompt: &[u32],
    config: &GenerationConfig,
    device: &B::Device,
    decode: &dyn Fn(&[u32]) -> String,
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, ModelError> {
    let mut out = generate_batch::<B, M>(
        model,
        std::slice::from_ref(&prompt.to_vec()),
        config,
        device,
        decode,
        &mut |_, delta| on_text(delta),
    )?;
    out.pop()
        .ok_or_else(|| ModelError::Config("batch of one gave no result".into()))
}
