//! `tokenizer.ggml.model = "bert"`: WordPiece.

use tokenizers::Tokenizer;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::Vocab as TokenIds;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;

use super::{SpecialToken, Vocab, tok_err};
use crate::gguf::{Gguf, GgufError};

/// Undoes llama.cpp's "phantom space" spelling of a BERT vocabulary: `▁word` was `word`,
/// `[CLS]`-style tokens are unchanged, and any other `piece` was the continuation `##piece`.
pub(super) fn unspell(token: &str) -> String {
    if let Some(word) = token.strip_prefix('\u{2581}') {
        word.to_owned()
    } else if token.starts_with('[') && token.ends_with(']') {
        token.to_owned()
    } else {
        format!("##{token}")
    }
}

pub(super) fn build(
    g: &Gguf,
    vocab: &Vocab<'_>,
    unk: Option<&SpecialToken>,
) -> Result<Tokenizer, GgufError> {
    let ids: TokenIds = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (unspell(t), i as u32))
        .collect();
    let unk = unk.map_or_else(|| "[UNK]".to_owned(), |t| unspell(&t.content));
    let model = WordPiece::builder()
        .vocab(ids)
        .unk_token(unk)
        .continuing_subword_prefix("##".to_owned())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| tok_err(g, format!("WordPiece from tokenizer.ggml.tokens: {e}")))?;
    // llama.cpp's defaults: lowercase unless told otherwise, strip accents when lowercasing.
    let lowercase = g
        .opt_bool("tokenizer.ggml.normalizer.lowercase")?
        .unwrap_or(true);
    let strip_accents = g
        .opt_bool("tokenizer.ggml.normalizer.strip_accents")?
        .unwrap_or(lowercase);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(
        true,
        true,
        Some(strip_accents),
        lowercase,
    )));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".to_owned(), true)));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::unspell;

    #[test]
    fn phantom_space_spelling_is_undone() {
        assert_eq!(unspell("▁hello"), "hello");
        assert_eq!(unspell("ing"), "##ing");
        assert_eq!(unspell("[CLS]"), "[CLS]");
    }
}
