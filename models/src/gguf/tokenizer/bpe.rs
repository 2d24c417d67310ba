//! `tokenizer.ggml.model = "gpt2"`: byte-level BPE.

use std::collections::HashMap;
use std::sync::OnceLock;

use tokenizers::SplitDelimiterBehavior;
use tokenizers::Tokenizer;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeBuilder, Vocab as BpeVocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

use super::{Vocab, tok_err};
use crate::gguf::{Gguf, GgufError};

/// Llama 3's split regex (transformers' and the Llama 3 tokenizer.json).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split regex: single digits.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5's split regex: combining marks stay with letters.
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's split regex (also Llama 4).
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `tokenizer.ggml.pre` value splits text before byte-level BPE.
#[derive(Clone, Copy)]
enum Pre {
    /// GPT-2's own regex inside `ByteLevel` (also the fallback for unknown values).
    Gpt2,
    /// One regex, then `ByteLevel` without its regex; optionally NFC first and Llama 3's
    /// `ignore_merges` (a word that is itself a token is taken whole).
    Regex {
        regex: &'static str,
        nfc: bool,
        ignore_merges: bool,
    },
    /// Single digits, then GPT-2's regex (StarCoder, SmolLM); optionally NFC first.
    Digits { nfc: bool },
}

/// `tokenizer.ggml.pre` values with a dedicated pre-tokenizer. Any other value gets GPT-2's
/// regex, as in transformers (a warning is logged).
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "dbrx",
    "smaug-bpe",
    "qwen2",
    "deepseek-r1-qwen",
    "qwen35",
    "gpt-4o",
    "llama4",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
];

fn pre_for(pre: &str) -> Option<Pre> {
    let regex = |regex, nfc, ignore_merges| Pre::Regex {
        regex,
        nfc,
        ignore_merges,
    };
    Some(match pre {
        "default" | "gpt-2" => Pre::Gpt2,
        "llama-bpe" | "llama3" | "llama-v3" => regex(LLAMA3, false, true),
        "dbrx" | "smaug-bpe" => regex(LLAMA3, false, false),
        "qwen2" | "deepseek-r1-qwen" => regex(QWEN2, true, false),
        "qwen35" => regex(QWEN35, false, false),
        "gpt-4o" | "llama4" => regex(GPT4O, false, false),
        "smollm" | "starcoder" | "refact" => Pre::Digits { nfc: false },
        "command-r" => Pre::Digits { nfc: true },
        _ => return None,
    })
}

/// GPT-2's map from bytes to printable characters (`bytes_to_unicode`).
fn byte_chars() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            map[b as usize] = if printable {
                char::from(b)
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap_or('\u{FFFD}')
            };
        }
        map
    })
}

/// Whether every character of `token` is in the byte-level alphabet.
pub(super) fn is_byte_level_spelled(token: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<char>> = OnceLock::new();
    let set = SET.get_or_init(|| byte_chars().iter().copied().collect());
    token.chars().all(|c| set.contains(&c))
}

fn byte_level_spelling(token: &str) -> String {
    if is_byte_level_spelled(token) {
        token.to_owned()
    } else {
        let map = byte_chars();
        token.bytes().map(|b| map[b as usize]).collect()
    }
}

fn split(g: &Gguf, regex: &str) -> Result<PreTokenizerWrapper, GgufError> {
    Split::new(
        SplitPattern::Regex(regex.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(PreTokenizerWrapper::Split)
    .map_err(|e| tok_err(g, format!("split regex: {e}")))
}

pub(super) fn build(g: &Gguf, vocab: &Vocab<'_>, pre: &str) -> Result<Tokenizer, GgufError> {
    let pre_kind = pre_for(pre).unwrap_or_else(|| {
        tracing::warn!(
            file = %g.path().display(),
            "tokenizer.ggml.pre `{pre}` has no dedicated pre-tokenizer; using GPT-2's regex"
        );
        Pre::Gpt2
    });
    // Later duplicates win, as in a Python dict.
    let ids: HashMap<String, u32> = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (byte_level_spelling(t), i as u32))
        .collect();
    let merges = g
        .get_str_array("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| tok_err(g, format!("tokenizer.ggml.merges #{i} `{m}` has no space")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ignore_merges = matches!(
        pre_kind,
        Pre::Regex {
            ignore_merges: true,
            ..
        }
    );
    let bpe_vocab: BpeVocab = ids.into_iter().collect();
    let model = BpeBuilder::new()
        .vocab_and_merges(bpe_vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| tok_err(g, format!("BPE from tokenizer.ggml.tokens/merges: {e}")))?;
    let mut tokenizer = Tokenizer::new(model);
    let gpt2_level = ByteLevel::new(false, true, true);
    let (pre_tokenizer, nfc) = match pre_kind {
        Pre::Gpt2 => (PreTokenizerWrapper::ByteLevel(gpt2_level), false),
        Pre::Regex { regex, nfc, .. } => (
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                split(g, regex)?,
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
            ])),
            nfc,
        ),
        Pre::Digits { nfc } => (
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(gpt2_level),
            ])),
            nfc,
        ),
    };
    if nfc {
        tokenizer.with_normalizer(Some(NFC));
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let map = byte_chars();
        let distinct: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
        assert_eq!(map[b'A' as usize], 'A');
        // Tokens already in the alphabet stay; others are spelled byte by byte.
        assert_eq!(byte_level_spelling("é"), "é");
        assert_eq!(byte_level_spelling("a b"), "aĠb");
        assert_eq!(byte_level_spelling("€"), "âĤ¬");
        assert!(is_byte_level_spelled("ĠHello"));
        assert!(!is_byte_level_spelled("a b"));
    }
}
