//! Batched generation: left-padded prompts decoded together, each row stopping on its own.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::{Generation, GenerationConfig, Sampler, StopReason, TextStream, Timing};
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
    /// When the row's first and last new tokens were chosen.
    first: Option<Instant>,
    last: Option<Instant>,
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
            first: None,
            last: None,
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
    let longest = rows.iter().map(|r| r.budget).max().unwrap_or(0);
    cache.reserve(width.saturating_add(longest));
    // Greedy choices are made on the device (only the ids come back); the eos ids are masked
    // there while `min_new_tokens` forbids them.
    let on_device = !config.do_sample && config.repetition_penalty == 1.0;
    let mut eos_mask: Option<Tensor<B, 3>> = None;
    let started = Instant::now();
    let mut interrupted = false;
    let mut step = 0usize;
    while !interrupted && rows.iter().any(|r| r.stop.is_none()) {
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [batch, seq]), device);
        let logits = model.forward_with(ids, Some(&mask), &mut cache, true)?;
        let [_, _, vocab] = logits.dims();
        let mut all: Vec<f32>;
        let mut chosen: Option<Vec<u32>> = None;
        if on_device {
            let logits = if step < config.min_new_tokens && !config.eos_token_id.is_empty() {
                let m = eos_mask
                    .get_or_insert_with(|| eos_bias::<B>(&config.eos_token_id, vocab, &logits));
                logits + m.clone()
            } else {
                logits
            };
            chosen = Some(greedy_ids(logits, batch, step)?);
            all = Vec::new();
        } else {
            all = logits
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| ModelError::Config(format!("reading logits: {e:?}")))?;
            if all.iter().any(|l| l.is_nan()) {
                return Err(non_finite(step));
            }
        }
        step += 1;
        let now = Instant::now();
        let mut chunks = all.chunks_mut(vocab.max(1));
        for (i, row) in rows.iter_mut().enumerate() {
            let logits = chunks.next();
            if row.stop.is_some() {
                continue;
            }
            let next = match (&chosen, logits) {
                (Some(ids), _) => ids[i],
                (None, Some(logits)) => {
                    row.sampler
                        .next_token(logits, &row.history, row.tokens.len())
                }
                (None, None) => {
                    return Err(ModelError::Config(format!(
                        "the model gave no logits for row {i}"
                    )));
                }
            };
            row.first.get_or_insert(now);
            row.last = Some(now);
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
        .zip(&lengths)
        .map(|(r, &prompt_tokens)| Generation {
            timing: Timing {
                prompt_tokens,
                batch,
                prefill: r.first.map_or(Duration::ZERO, |t| t - started),
                decode: match (r.first, r.last) {
                    (Some(a), Some(b)) => b - a,
                    _ => Duration::ZERO,
                },
            },
            tokens: r.tokens,
            text: r.stream.text().to_owned(),
            stop: r.stop.unwrap_or(StopReason::Interrupted),
        })
        .collect())
}

/// Each row's argmax of `logits` (`[batch, 1, vocab]`), chosen on the device: the ids and the
/// rows' NaN flags come back in one read. One kernel where there is one (see
/// [`crate::nn::argmax_rows`]), else burn's ops.
fn greedy_ids<B: Backend>(
    logits: Tensor<B, 3>,
    batch: usize,
    step: usize,
) -> Result<Vec<u32>, ModelError> {
    let reading = |e: String| ModelError::Config(format!("reading token ids: {e}"));
    if let Some(picked) = crate::nn::argmax_rows(&logits) {
        let picked = picked.map_err(reading)?;
        if picked.len() != batch {
            return Err(reading(format!("{} ids for {batch} rows", picked.len())));
        }
        if picked.iter().any(|&(_, nan)| nan) {
            return Err(non_finite(step));
        }
        return Ok(picked.into_iter().map(|(id, _)| id).collect());
    }
    let nan = logits.clone().is_nan().any().int();
    let ids = Tensor::cat(vec![logits.argmax(2).reshape([batch]), nan], 0);
    let mut ids: Vec<i64> = ids
        .into_data()
        .convert::<i64>()
        .to_vec()
        .map_err(|e| reading(format!("{e:?}")))?;
    if ids.pop() != Some(0) {
        return Err(non_finite(step));
    }
    Ok(ids.into_iter().map(|i| i as u32).collect())
}

fn non_finite(step: usize) -> ModelError {
    ModelError::Input(format!(
        "the model's logits are NaN at new token {}: its weights or activations hold \
         non-finite values",
        step + 1
    ))
}

/// `[1, 1, vocab]`: `-inf` at the eos ids, 0 elsewhere, in the logits' dtype.
fn eos_bias<B: Backend>(eos: &[u32], vocab: usize, like: &Tensor<B, 3>) -> Tensor<B, 3> {
    let mut bias = vec![0.0f32; vocab];
    for &t in eos {
        if let Some(b) = bias.get_mut(t as usize) {
            *b = f32::NEG_INFINITY;
        }
    }
    Tensor::<B, 3>::from_data(
        TensorData::new(bias, [1, 1, vocab]),
        (&like.device(), like.dtype()),
    )
}
