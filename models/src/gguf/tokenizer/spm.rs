//! `tokenizer.ggml.model = "llama"`: SentencePiece BPE with byte fallback.
//!
//! GGUF stores the SentencePiece vocabulary and scores but no merges; the merges are rebuilt
//! from the vocabulary the way transformers' `generate_merges` does (every split of a token into
//! two tokens, best-scored first), so HF's BPE with these merges reproduces SentencePiece.

use std::cmp::Ordering;
use std::collections::HashMap;

use tokenizers::Tokenizer;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BpeBuilder, Vocab as BpeVocab};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence};

use super::{SpecialToken, Vocab, tok_err};
use crate::gguf::{Gguf, GgufError};

const SPACE: &str = "\u{2581}";

/// Python's `str.isspace`: Unicode whitespace plus the ASCII information separators.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Gemma files store tokens of two or more spaces as real spaces; the vocabulary the model was
/// trained with spells them with `▁` (transformers' `gemma_tokenizer` renames them the same way).
pub(super) fn respell_whitespace(token: &str) -> String {
    let all_space = token.chars().all(py_isspace);
    if token.contains(' ') && all_space {
        SPACE.repeat(token.chars().count())
    } else {
        token.to_owned()
    }
}

fn is_gemma(arch: &str) -> bool {
    matches!(arch, "gemma" | "gemma2" | "gemma3")
}

/// transformers' `generate_merges(vocab, vocab_scores)` with scores given: for each token (in
/// first-seen order) every split into two vocabulary tokens, ordered by the pieces' ids; then a
/// stable sort by (score, left length, right length), highest first.
fn generate_merges(
    order: &[&str],
    scores: &HashMap<&str, f64>,
    ids: &BpeVocab,
) -> Vec<(String, String)> {
    struct M<'a> {
        left: &'a str,
        right: &'a str,
        score: f64,
        left_len: usize,
        right_len: usize,
    }
    let mut merges: Vec<M<'_>> = Vec::new();
    for &token in order {
        let score = scores.get(token).copied().unwrap_or(0.0);
        let start = merges.len();
        for (i, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(i);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push(M {
                    left,
                    right,
                    score,
                    left_len: left.chars().count(),
                    right_len: right.chars().count(),
                });
            }
        }
        merges[start..].sort_by_key(|m| (ids.get(m.left), ids.get(m.right)));
    }
    merges.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(b.left_len.cmp(&a.left_len))
            .then(b.right_len.cmp(&a.right_len))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_owned(), m.right.to_owned()))
        .collect()
}

pub(super) fn build(
    g: &Gguf,
    vocab: &Vocab<'_>,
    unk: Option<&SpecialToken>,
    add_space_prefix: bool,
) -> Result<Tokenizer, GgufError> {
    let gemma = is_gemma(g.arch()?);
    let tokens: Vec<String> = if gemma {
        vocab.tokens.iter().map(|t| respell_whitespace(t)).collect()
    } else {
        vocab.tokens.to_vec()
    };
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut scores: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    if gemma {
        // Gemma's scores do not follow its merge order; its token order does.
        for (i, t) in tokens.iter().enumerate() {
            if scores.insert(t, -(i as f64)).is_none() {
                order.push(t);
            }
        }
    } else {
        let file_scores = g.get_f32_array("tokenizer.ggml.scores")?;
        if file_scores.len() != tokens.len() {
            return Err(tok_err(
                g,
                format!(
                    "tokenizer.ggml.scores has {} entries for {} tokens",
                    file_scores.len(),
                    tokens.len()
                ),
            ));
        }
        for (t, &s) in tokens.iter().zip(file_scores) {
            if scores.insert(t, f64::from(s)).is_none() {
                order.push(t);
            }
        }
    }
    // Later duplicates win, as in a Python dict.
    let bpe_vocab: BpeVocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = generate_merges(&order, &scores, &bpe_vocab);
    let mut builder = BpeBuilder::new()
        .vocab_and_merges(bpe_vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(respell_if(gemma, &unk.content));
    }
    let model = builder
        .build()
        .map_err(|e| tok_err(g, format!("BPE from tokenizer.ggml.tokens/scores: {e}")))?;

    let mut tokenizer = Tokenizer::new(model);
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new(SPACE.to_owned())));
    }
    let replace = Replace::new(" ", SPACE).map_err(|e| tok_err(g, e.to_string()))?;
    normalizers.push(NormalizerWrapper::Replace(replace));
    tokenizer.with_normalizer(Some(Sequence::new(normalizers)));

    let unreplace = Replace::new(SPACE, " ").map_err(|e| tok_err(g, e.to_string()))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(unreplace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if add_space_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

fn respell_if(gemma: bool, token: &str) -> String {
    if gemma {
        respell_whitespace(token)
    } else {
        token.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_whitespace_tokens_are_respelled() {
        assert_eq!(respell_whitespace("   "), "▁▁▁");
        assert_eq!(respell_whitespace("\n\n"), "\n\n");
        assert_eq!(respell_whitespace(" a"), " a");
    }

    #[test]
    fn merges_follow_scores_then_lengths() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let vocab: BpeVocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let scores: HashMap<&str, f64> = [("ab", -1.0), ("bc", -2.0), ("abc", -0.5)]
            .into_iter()
            .collect();
        let merges = generate_merges(&tokens, &scores, &vocab);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        // abc (-0.5): splits a|bc and ab|c, the longer left piece first; then ab, then bc.
        assert_eq!(
            pairs,
            vec![("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]
        );
    }
}
