//! Generation: prefill, decode against the KV cache, sample, stream, stop.

mod config;
mod sampling;
mod text;

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

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
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New token ids (an end-of-sequence token that stopped generation included).
    pub tokens: Vec<u32>,
    /// The new text, stop string removed.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
}

/// Generates after `prompt` (batch of one).
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
    config.validate()?;
    if prompt.is_empty() {
        return Err(ModelError::Config(
            "cannot generate from an empty prompt".into(),
        ));
    }
    let budget = config.new_token_budget(prompt.len());
    let mut sampler = Sampler::new(config);
    let mut cache = model.new_cache();
    let mut history: Vec<u32> = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut stream = TextStream::new(&config.stop_strings);
    let mut input: Vec<u32> = prompt.to_vec();
    let mut stop = StopReason::MaxTokens;
    while tokens.len() < budget {
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                input.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                [1, input.len()],
            ),
            device,
        );
        let logits = model.forward(ids, &mut cache, true)?;
        let mut row: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| ModelError::Config(format!("reading logits: {e:?}")))?;
        let next = sampler.next_token(&mut row, &history, tokens.len());
        tokens.push(next);
        history.push(next);
        input = vec![next];
        if config.eos_token_id.contains(&next) {
            stop = StopReason::Eos(next);
            break;
        }
        let text = decode(&tokens);
        let (delta, hit) = stream.push(&text);
        let flow = if delta.is_empty() {
            ControlFlow::Continue(())
        } else {
            on_text(delta)
        };
        if let Some(s) = hit {
            stop = StopReason::StopString(s);
            break;
        }
        if flow.is_break() {
            stop = StopReason::Interrupted;
            break;
        }
    }
    let rest = stream.finish();
    if !rest.is_empty() && stop != StopReason::Interrupted {
        let _ = on_text(rest);
    }
    Ok(Generation {
        tokens,
        text: stream.text().to_owned(),
        stop,
    })
}
