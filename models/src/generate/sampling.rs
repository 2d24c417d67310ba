//! Logits processing and token choice, in transformers' order: repetition penalty,
//! min-new-tokens, then (sampling only) temperature, top-k, top-p, min-p.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::GenerationConfig;

/// Chooses the next token from a row of logits.
pub struct Sampler {
    config: GenerationConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler for `config` (seeded from `config.seed`, else 0, so runs are reproducible).
    pub fn new(config: &GenerationConfig) -> Self {
        Self {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed.unwrap_or(0)),
        }
    }

    /// The next token given the logits and every token so far (prompt and output);
    /// `new_tokens` is how many were generated already.
    pub fn next_token(&mut self, logits: &mut [f32], history: &[u32], new_tokens: usize) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            repetition_penalty(logits, history, c.repetition_penalty);
        }
        if new_tokens < c.min_new_tokens {
            for &eos in &c.eos_token_id {
                if let Some(l) = logits.get_mut(eos as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if !c.do_sample {
            return argmax(logits);
        }
        if c.temperature != 1.0 {
            logits.iter_mut().for_each(|l| *l /= c.temperature);
        }
        if c.top_k > 0 {
            top_k(logits, c.top_k);
        }
        if c.top_p < 1.0 {
            top_p(logits, c.top_p);
        }
        if let Some(p) = c.min_p {
            min_p(logits, p);
        }
        let probs = softmax(logits);
        let u = (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let mut acc = 0.0f64;
        let mut last_nonzero = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                last_nonzero = i;
                acc += p as f64;
                if u < acc {
                    return i as u32;
                }
            }
        }
        last_nonzero as u32
    }
}

/// The first index of the largest value (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// CTRL penalty: each token seen gets its logit divided by `penalty` if positive, multiplied
/// if negative (once per distinct token, as transformers' gather/scatter does).
pub fn repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &t in history {
        let t = t as usize;
        if t < logits.len() && !seen[t] {
            seen[t] = true;
            let l = &mut logits[t];
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// Keeps values >= the k-th largest (ties with it stay, as `torch.topk` thresholding).
pub fn top_k(logits: &mut [f32], k: usize) {
    if k >= logits.len() {
        return;
    }
    let mut sorted: Vec<f32> = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    logits
        .iter_mut()
        .filter(|l| **l < threshold)
        .for_each(|l| *l = f32::NEG_INFINITY);
}

/// Nucleus filtering as transformers' `TopPLogitsWarper`: sort ascending, drop the tokens
/// whose cumulative probability is `<= 1 - top_p`, always keep the most likely one.
pub fn top_p(logits: &mut [f32], top_p: f32) {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let sorted: Vec<f32> = order.iter().map(|&i| logits[i]).collect();
    let probs = softmax(&sorted);
    let mut cum = 0.0f32;
    let last = order.len().saturating_sub(1);
    for (rank, (&i, p)) in order.iter().zip(probs).enumerate() {
        cum += p;
        if cum <= 1.0 - top_p && rank < last {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}

/// Drops tokens whose probability is below `min_p` times the top probability.
pub fn min_p(logits: &mut [f32], min_p: f32) {
    let probs = softmax(logits);
    let top = probs.iter().copied().fold(0.0, f32::max);
    let threshold = min_p * top;
    for (l, p) in logits.iter_mut().zip(probs) {
        if p < threshold {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Softmax of a row (all `-inf` gives all zeros).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn greedy_is_argmax_after_penalty() {
        let mut s = Sampler::new(&GenerationConfig {
            repetition_penalty: 2.0,
            ..GenerationConfig::greedy(1)
        });
        // Token 0 (3.0) was seen: 1.5 < 2.0 of token 1.
        assert_eq!(s.next_token(&mut [3.0, 2.0, -1.0], &[0, 0], 0), 1);
    }

    #[test]
    fn penalty_divides_positive_and_multiplies_negative_once() {
        let mut l = [2.0, -2.0, 1.0];
        repetition_penalty(&mut l, &[0, 1, 1, 0], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn min_new_tokens_blocks_eos() {
        let c = GenerationConfig {
            min_new_tokens: 2,
            eos_token_id: vec![0],
            ..GenerationConfig::greedy(5)
        };
        let mut s = Sampler::new(&c);
        assert_eq!(s.next_token(&mut [9.0, 1.0], &[], 1), 1);
        assert_eq!(s.next_token(&mut [9.0, 1.0], &[], 2), 0);
    }

    #[test]
    fn top_k_keeps_ties() {
        let mut l = [1.0, 3.0, 2.0, 2.0, 0.0];
        top_k(&mut l, 2);
        assert_eq!(l, [NEG, 3.0, 2.0, 2.0, NEG]);
    }

    #[test]
    fn top_p_matches_transformers_warper() {
        // probs = [0.1, 0.2, 0.3, 0.4]; top_p = 0.6 removes cum <= 0.4 ascending: 0.1, 0.2 (0.3).
        let mut l: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
        top_p(&mut l, 0.6);
        assert_eq!(l[0], NEG);
        assert_eq!(l[1], NEG);
        assert!(l[2].is_finite() && l[3].is_finite());
        // A tiny top_p still keeps the best token.
        let mut l = vec![0.0, 1.0];
        top_p(&mut l, 1e-6);
        assert_eq!(l, vec![NEG, 1.0]);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        min_p(&mut l, 0.2); // threshold 0.1
        assert!(l[2].is_finite());
        assert_eq!(l[3], NEG);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_the_distribution() {
        let c = GenerationConfig {
            do_sample: true,
            top_k: 0,
            seed: Some(7),
            ..GenerationConfig::greedy(1)
        };
        let logits: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let draw = |c: &GenerationConfig| {
            let mut s = Sampler::new(c);
            (0..3000)
                .map(|_| s.next_token(&mut logits.clone(), &[], 0))
                .collect::<Vec<_>>()
        };
        let a = draw(&c);
        assert_eq!(a, draw(&c));
        let share0 = a.iter().filter(|&&t| t == 0).count() as f64 / a.len() as f64;
        assert!((share0 - 0.7).abs() < 0.04, "{share0}");
        let other = draw(&GenerationConfig { seed: Some(8), ..c });
        assert_ne!(a, other);
    }
}
