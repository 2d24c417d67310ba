//! GGUF tokenizers against HF ids: llama.cpp's tokenizer test vocabularies (ids made by the
//! original HF tokenizers, `add_special_tokens=False`) and transformers' tokenizer loaded from
//! the real SmolLM2 and Gemma 3 GGUFs (`scripts/reference/gguf_tokenizer.py`).

mod gguf_util;

use gguf_util::*;
use kiln_models::gguf::{Gguf, GgufTokenizer, TokenizerKind};

/// llama.cpp's `.inp`/`.out` pair: inputs separated by `\n__ggml_vocab_test__\n`, one line of
/// space-separated ids per input (read as llama.cpp's `test-tokenizer-0` reads them).
fn vocab_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = format!("llama-cpp/vocab/ggml-vocab-{name}.gguf");
    let inp = std::fs::read_to_string(artifact(&format!("{base}.inp"))).expect("inp");
    let out = std::fs::read_to_string(artifact(&format!("{base}.out"))).expect("out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(sep) {
            Some(i) => {
                texts.push(rest[..i].to_owned());
                rest = &rest[i + sep.len()..];
            }
            None => {
                texts.push(rest.to_owned());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|x| x.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out disagree on the case count"
    );
    texts.into_iter().zip(ids).collect()
}

fn tokenizer(rel: &str) -> GgufTokenizer {
    Gguf::open(artifact(rel))
        .expect("open")
        .tokenizer()
        .expect("tokenizer")
}

fn check_vocab(name: &str) {
    let tok = tokenizer(&format!("llama-cpp/vocab/ggml-vocab-{name}.gguf"));
    let cases = vocab_cases(name);
    assert!(cases.len() >= 40, "{name}: only {} cases", cases.len());
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok
            .tokenizer
            .encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        if &got != want {
            failures.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_cpp_vocab_llama_bpe() {
    check_vocab("llama-bpe");
}

#[test]
fn llama_cpp_vocab_qwen2() {
    check_vocab("qwen2");
}

#[test]
fn llama_cpp_vocab_gpt2() {
    check_vocab("gpt-2");
}

#[test]
fn llama_cpp_vocab_llama_spm() {
    check_vocab("llama-spm");
}

#[test]
fn llama_cpp_vocab_bert_bge() {
    check_vocab("bert-bge");
}

#[test]
fn llama_cpp_vocab_more_pre_tokenizers() {
    // starcoder/refact share SmolLM's pre-tokenizer; command-r adds NFC; qwen35 its own regex;
    // phi-3 is SentencePiece.
    for name in ["starcoder", "refact", "command-r", "qwen35", "phi-3"] {
        check_vocab(name);
    }
}

fn check_transformers_fixture(label: &str, rel: &str) -> GgufTokenizer {
    let doc = json(&format!("tokenizer_{label}.json"));
    let tok = tokenizer(rel);
    assert_eq!(
        tok.tokenizer.get_vocab_size(true) as u64,
        doc["vocab_size"].as_u64().expect("vocab_size"),
        "{label}"
    );
    for (role, got) in [
        ("bos_token", &tok.special.bos),
        ("eos_token", &tok.special.eos),
        ("unk_token", &tok.special.unk),
        ("pad_token", &tok.special.pad),
    ] {
        assert_eq!(
            got.as_ref().map(|t| t.content.as_str()),
            doc[role].as_str(),
            "{label} {role}"
        );
    }
    assert_eq!(
        tok.chat_template.as_deref(),
        doc["chat_template"].as_str(),
        "{label} chat template"
    );
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 25);
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let plain = tok.tokenizer.encode(text, false).expect("encode");
        let with = tok.tokenizer.encode(text, true).expect("encode");
        if plain.get_ids() != ids(&case["ids"]).as_slice() {
            failures.push(format!(
                "{text:?} (no specials)\n  got  {:?}\n  want {:?}",
                plain.get_ids(),
                ids(&case["ids"])
            ));
        }
        if with.get_ids() != ids(&case["ids_with_special"]).as_slice() {
            failures.push(format!(
                "{text:?} (with specials)\n  got  {:?}\n  want {:?}",
                with.get_ids(),
                ids(&case["ids_with_special"])
            ));
        }
        let decoded = tok
            .tokenizer
            .decode(plain.get_ids(), false)
            .expect("decode");
        if decoded != text {
            failures.push(format!("{text:?} decodes to {decoded:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    tok
}

#[test]
fn smollm2_matches_transformers() {
    let tok = check_transformers_fixture("smollm2", SMOLLM2);
    assert_eq!(
        tok.kind,
        TokenizerKind::ByteLevelBpe {
            pre: "smollm".to_owned()
        }
    );
    assert!(!tok.add_bos);
    assert_eq!(tok.stop_ids(), vec![2]);
    // transformers' own GGUF tokenizer has no SmolLM pre-tokenizer and keeps numbers whole
    // (with a leading space); kiln isolates every digit like SmolLM2's tokenizer.json. Only
    // texts with numeric characters may differ.
    let doc = json("tokenizer_smollm2.json");
    for case in doc["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        if case["ids"] != case["ids_transformers_gguf"] {
            assert!(
                text.chars().any(char::is_numeric),
                "{text:?}: differs from transformers without a number"
            );
        }
    }
}

#[test]
fn gemma3_matches_transformers() {
    let tok = check_transformers_fixture("gemma3", GEMMA3);
    assert_eq!(tok.kind, TokenizerKind::SentencePieceBpe);
    assert!(tok.add_bos && !tok.add_space_prefix);
    let ids = tok
        .tokenizer
        .encode("<start_of_turn>user\nHi<end_of_turn>", false)
        .expect("encode");
    assert_eq!(ids.get_ids()[0], 105, "<start_of_turn> is one token");
}

#[test]
fn bert_adds_cls_and_sep() {
    let tok = tokenizer("llama-cpp/vocab/ggml-vocab-bert-bge.gguf");
    assert_eq!(tok.kind, TokenizerKind::WordPiece);
    let enc = tok.tokenizer.encode("Hello world", true).expect("encode");
    let ids = enc.get_ids();
    assert_eq!((ids[0], ids[ids.len() - 1]), (101, 102));
    assert_eq!(
        tok.special.cls.as_ref().map(|t| t.content.as_str()),
        Some("[CLS]")
    );
    assert_eq!(
        tok.tokenizer.decode(ids, true).expect("decode"),
        "hello world"
    );
}

#[test]
fn missing_tokenizer_metadata_is_an_error_naming_the_key() {
    let g = Gguf::open(fixture("synthetic.gguf")).expect("open");
    let err = g.tokenizer().unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
}
