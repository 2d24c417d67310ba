//! Batched generation: left-padded prompts decoded together, each row stopping on its own.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::{Generation, GenerationConfig, Sampler, StopReason, TextStream};
use crate::ModelError;
use crate::model::{AttentionMask, CausalLm};

/// One prompt's state while the batch runs.
struct Row {
    budget: usize,
    sampler: Sampler,
    history: Vec<u32>,
    tokens: Vec<u32>,
    stream: TextStream,
    /// `None` while the row is still generating.
    stop: Option<StopReason>,
    /// What the row is fed once finished (its outputs are ignored): its last token.
    filler: u32,
}

/// Generates after each of `prompts`, in one left-padded batch (as transformers' `generate`
/// with `padding_side="left"` and an `attention_mask`).
///
/// Each row sees only its own tokens, at positions counted over its real tokens, and stops on
/// its own: an id of `config.eos_token_id`, a stop string, or its new-token budget. A finished
/// row produces no more tokens (it is still fed its last token, whose outputs are dropped, until
/// every row is done). Every row has its own sampler seeded from `config.seed`, so row `i`
/// equals [`super::generate`] of `prompts[i]` alone (up to float rounding of the padded batch);
/// identical prompts give identical samples.
///
/// `on_text(row, delta)` receives each row's final text deltas (see [`super::generate`]);
/// returning `Break` stops every unfinished row with [`StopReason::Interrupted`].
pub fn generate_batch<B: Backend, M: CausalLm<B> + ?Sized>(
    model: &M,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    device: &B::Device,
    decode: &dyn Fn(&[u32]) -> String,
    on_text: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
) -> Result<Vec<Generation>, ModelError> {
    config.validate()?;
    if prompts.is_empty() {
        return Err(ModelError::Config(
            "cannot generate for an empty batch of prompts".into(),
        ));
    }
    let mut rows = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        let Some(&last) = prompt.last() else {
            return Err(ModelError::Config(format!(
                "cannot generate from an empty prompt (prompt {i} of the batch)"
            )));
        };
        let budget = config.new_token_budget(prompt.len());
        rows.push(Row {
            budget,
            sampler: Sampler::new(config),
            history: prompt.clone(),
            tokens: Vec::new(),
            stream: TextStream::new(&config.stop_strings),
            stop: (budget == 0).then_some(StopReason::MaxTokens),
            filler: last,
        });
    }
    let batch = prompts.len();
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let width = lengths.iter().copied().max().unwrap_or(0);
    let mut mask = AttentionMask::left_padded(&lengths, width)?;
    // Left padding: any valid id does, the mask hides it; use the row's first token.
    let mut input: Vec<i64> = Vec::with_capacity(batch * width);
    for prompt in prompts {
        let pad = prompt[0] as i64;
        input.extend(std::iter::repeat_n(pad, width - prompt.len()));
        input.extend(prompt.iter().map(|&t| t as i64));
    }
    let mut seq = width;
    let mut cache = model.new_cache();
    let mut interrupted = false;
    while !interrupted && rows.iter().any(|r| r.stop.is_none()) {
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [batch, seq]), device);
        let logits = model.forward_with(ids, Some(&mask), &mut cache, true)?;
        let [_, _, vocab] = logits.dims();
        let mut all: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| ModelError::Config(format!("reading logits: {e:?}")))?;
        for (i, (row, logits)) in rows.iter_mut().zip(all.chunks_mut(vocab)).enumerate() {
            if row.stop.is_some() {
                continue;
            }
            let next = row
                .sampler
                .next_token(logits, &row.history, row.tokens.len());
            row.tokens.push(next);
            row.history.push(next);
            row.filler = next;
            if config.eos_token_id.contains(&next) {
                row.stop = Some(StopReason::Eos(next));
            } else {
                let text = decode(&row.tokens);
                let (delta, hit) = row.stream.push(&text);
                let flow = if delta.is_empty() {
                    ControlFlow::Continue(())
                } else {
                    on_text(i, delta)
                };
                if let Some(s) = hit {
                    row.stop = Some(StopReason::StopString(s));
                } else if flow.is_break() {
                    interrupted = true;
                    break;
                } else if row.tokens.len() >= row.budget {
                    row.stop = Some(StopReason::MaxTokens);
                }
            }
            if row.stop.is_some() {
                let rest = row.stream.finish();
                if !rest.is_empty() {
                    let _ = on_text(i, rest);
                }
            }
        }
        input = rows.iter().map(|r| r.filler as i64).collect();
        seq = 1;
        mask.push_real(1);
    }
    Ok(rows
        .into_iter()
        .map(|r| Generation {
            tokens: r.tokens,
            text: r.stream.text().to_owned(),
            stop: r.stop.unwrap_or(StopReason::Interrupted),
        })
        .collect())
}
