//! Strided perplexity of a causal LM, as transformers' "Perplexity of fixed-length models".
//!
//! Windows of `context` tokens start every `stride` tokens. A window scores only the tokens the
//! previous windows did not (transformers sets their labels to -100), each with up to
//! `context - 1` tokens of context, so with `stride < context` every token after the first is
//! scored exactly once. With `stride == context` (no overlap) the first token of every window
//! has no context and is not scored, as in transformers' loop.
//! Perplexity is `exp(nll_sum / tokens)`.
//!
//! ```
//! use kiln_models::eval::perplexity::plan_windows;
//! // 1024 tokens, context 512, stride 256: three windows, 511 + 256 + 256 scored tokens.
//! let w = plan_windows(1024, 512, 256).unwrap();
//! let spans: Vec<_> = w.iter().map(|w| (w.begin, w.score_from, w.end)).collect();
//! assert_eq!(spans, [(0, 1, 512), (256, 512, 768), (512, 768, 1024)]);
//! ```

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_chat_template::Tokenizer;
use rayon::prelude::*;
use serde::Serialize;

use crate::ModelError;
use crate::model::CausalLm;

/// The window settings (transformers' `max_length` and `stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PerplexityConfig {
    /// Tokens per window (the model's context for the evaluation), at least 2.
    pub context: usize,
    /// How far each window starts after the previous one, `1..=context`.
    pub stride: usize,
}

impl Default for PerplexityConfig {
    /// Context 512, stride 256.
    fn default() -> Self {
        Self {
            context: 512,
            stride: 256,
        }
    }
}

impl PerplexityConfig {
    /// Checks that `context >= 2` and `1 <= stride <= context`.
    pub fn validate(&self) -> Result<(), ModelError> {
        let (context, stride) = (self.context, self.stride);
        if context < 2 {
            return Err(ModelError::Config(format!(
                "perplexity context must be at least 2 tokens, got {context}"
            )));
        }
        if stride == 0 || stride > context {
            return Err(ModelError::Config(format!(
                "perplexity stride must be in 1..={context} (the context), got {stride}"
            )));
        }
        Ok(())
    }
}

/// One window: tokens `begin..end` go through the model, tokens `score_from..end` are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First token of the window.
    pub begin: usize,
    /// First scored token (`begin + 1` in the first window, the previous `end` after).
    pub score_from: usize,
    /// One past the last token.
    pub end: usize,
}

impl Window {
    /// Tokens scored in this window.
    pub fn scored(&self) -> usize {
        self.end - self.score_from
    }
}

/// The windows transformers' loop visits over `len` tokens.
pub fn plan_windows(len: usize, context: usize, stride: usize) -> Result<Vec<Window>, ModelError> {
    PerplexityConfig { context, stride }.validate()?;
    if len < 2 {
        return Err(ModelError::Config(format!(
            "perplexity needs at least 2 tokens, the text has {len}"
        )));
    }
    let mut windows = Vec::new();
    let mut prev_end = 0;
    let mut begin = 0;
    loop {
        let end = (begin + context).min(len);
        windows.push(Window {
            begin,
            score_from: prev_end.max(begin + 1),
            end,
        });
        prev_end = end;
        if end == len {
            return Ok(windows);
        }
        begin += stride;
    }
}

/// The score of one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowScore {
    /// Which tokens it covered and scored.
    #[serde(flatten)]
    pub window: Window,
    /// Sum of `-ln p(token | context)` over its scored tokens.
    pub nll_sum: f64,
}

/// Where an evaluation stands, after each window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerplexityProgress {
    /// Windows done.
    pub windows_done: usize,
    /// Windows in all.
    pub windows: usize,
    /// Tokens scored so far.
    pub tokens_scored: usize,
    /// Tokens to score in all.
    pub tokens: usize,
    /// Perplexity of the tokens scored so far.
    pub ppl: f64,
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perplexity {
    /// `exp(mean_nll)`.
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token (nats).
    pub mean_nll: f64,
    /// Sum of the negative log-likelihoods.
    pub nll_sum: f64,
    /// Tokens scored (all but the first when `stride < context`).
    pub tokens: usize,
    /// The settings.
    pub config: PerplexityConfig,
    /// Each window's score.
    pub windows: Vec<WindowScore>,
}

/// Strided perplexity of `ids` under `model`; `on_progress` is called after every window.
pub fn perplexity<B: Backend, M: CausalLm<B> + ?Sized>(
    model: &M,
    ids: &[u32],
    config: &PerplexityConfig,
    device: &B::Device,
    on_progress: &mut dyn FnMut(&PerplexityProgress),
) -> Result<Perplexity, ModelError> {
    let plan = plan_windows(ids.len(), config.context, config.stride)?;
    let tokens: usize = plan.iter().map(Window::scored).sum();
    let mut windows = Vec::with_capacity(plan.len());
    let mut nll_sum = 0.0f64;
    let mut scored = 0usize;
    for (i, w) in plan.iter().enumerate() {
        let window_nll = window_nll(model, &ids[w.begin..w.end], w.score_from - w.begin, device)?;
        if !window_nll.is_finite() {
            return Err(ModelError::Config(format!(
                "window {} (tokens {}..{}): the model's logits are not finite (NaN or inf; \
                 an overflow in a half-precision dtype?)",
                i + 1,
                w.begin,
                w.end
            )));
        }
        nll_sum += window_nll;
        scored += w.scored();
        windows.push(WindowScore {
            window: *w,
            nll_sum: window_nll,
        });
        on_progress(&PerplexityProgress {
            windows_done: i + 1,
            windows: plan.len(),
            tokens_scored: scored,
            tokens,
            ppl: (nll_sum / scored as f64).exp(),
        });
    }
    let mean_nll = nll_sum / tokens as f64;
    Ok(Perplexity {
        ppl: mean_nll.exp(),
        mean_nll,
        nll_sum,
        tokens,
        config: *config,
        windows,
    })
}

/// Sum of `-ln p(ids[t] | ids[..t])` for `t` in `first..ids.len()` (`first >= 1`), one forward.
fn window_nll<B: Backend, M: CausalLm<B> + ?Sized>(
    model: &M,
    ids: &[u32],
    first: usize,
    device: &B::Device,
) -> Result<f64, ModelError> {
    let len = ids.len();
    let n = len - first;
    let input = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, len]),
        device,
    );
    let mut cache = model.new_cache();
    let logits = model.forward(input, &mut cache, false)?;
    // Position t - 1 predicts token t. The log-sum-exp runs on the host in f64: an f32 sum
    // over a large vocabulary drops the small terms and biases every nll low.
    let [_, _, vocab] = logits.dims();
    let rows: Vec<f32> = logits
        .narrow(1, first - 1, n)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| ModelError::Config(format!("reading logits: {e:?}")))?;
    let nll = rows
        .par_chunks(vocab)
        .zip(&ids[first..])
        .map(|(row, &target)| {
            let target = row.get(target as usize).copied().ok_or_else(|| {
                ModelError::Config(format!(
                    "token id {target} is outside the model's vocabulary of {vocab}"
                ))
            })?;
            Ok(log_sum_exp(row) - target as f64)
        })
        .collect::<Result<Vec<f64>, ModelError>>()?;
    Ok(nll.iter().sum())
}

/// `ln(sum(exp(row)))` in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// Tokenizes `text` as transformers' `tokenizer(text)` does (special tokens such as BOS are
/// added when the tokenizer's post-processor adds them) and keeps the first `max_tokens`.
pub fn encode_text(
    tokenizer: &Tokenizer,
    text: &str,
    max_tokens: Option<usize>,
) -> Result<Vec<u32>, ModelError> {
    let mut ids = tokenizer.encode_text(text)?.ids;
    if let Some(n) = max_tokens {
        ids.truncate(n);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_after_the_first_is_scored_once() {
        for (len, context, stride) in [
            (1024, 512, 256),
            (1000, 512, 256),
            (10, 4, 3),
            (10, 4, 1),
            (7, 16, 8),
            (2, 2, 1),
            (513, 512, 511),
        ] {
            let w = plan_windows(len, context, stride).unwrap();
            let mut covered = vec![0; len];
            for w in &w {
                assert!(w.end - w.begin <= context);
                assert!(w.score_from > w.begin && w.score_from <= w.end);
                (w.score_from..w.end).for_each(|t| covered[t] += 1);
            }
            assert_eq!(covered[0], 0);
            assert!(
                covered[1..].iter().all(|&c| c == 1),
                "{len} {context} {stride}"
            );
            assert_eq!(w.last().unwrap().end, len);
        }
    }

    #[test]
    fn without_overlap_each_window_start_is_unscored() {
        // transformers: trg_len == the window, nothing is masked, and the shifted labels drop
        // the window's first token.
        let w = plan_windows(10, 4, 4).unwrap();
        let spans: Vec<_> = w.iter().map(|w| (w.begin, w.score_from, w.end)).collect();
        assert_eq!(spans, [(0, 1, 4), (4, 5, 8), (8, 9, 10)]);
        assert_eq!(w.iter().map(Window::scored).sum::<usize>(), 10 - 3);
    }

    #[test]
    fn windows_follow_transformers_loop() {
        // range(0, 1000, 256) with max_length 512: the last window starts at 512 and ends at
        // 1000, scoring the 232 tokens after 768.
        let w = plan_windows(1000, 512, 256).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[2].begin, w[2].score_from, w[2].end, w[2].scored()),
            (512, 768, 1000, 232)
        );
        // A text shorter than the context: one window.
        assert_eq!(
            plan_windows(7, 16, 8).unwrap(),
            [Window {
                begin: 0,
                score_from: 1,
                end: 7
            }]
        );
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(plan_windows(100, 1, 1).is_err());
        assert!(plan_windows(100, 8, 0).is_err());
        assert!(
            plan_windows(100, 8, 9)
                .unwrap_err()
                .to_string()
                .contains("stride")
        );
        assert!(
            plan_windows(1, 8, 4)
                .unwrap_err()
                .to_string()
                .contains("2 tokens")
        );
    }
}
