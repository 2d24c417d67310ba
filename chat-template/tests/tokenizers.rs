//! Tokenization against transformers and llama.cpp's tokenizer goldens.
//!
//! Inputs: llama.cpp's `ggml-vocab-*.gguf.inp` (artifact cache). Expected ids: the matching `.out`
//! (HF token ids) where transformers 5 still produces them, else the ids transformers produced,
//! committed in `testdata/chat-template/tokenizers.json` by `scripts/reference/chat_templates.py`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use kiln_chat_template::{Builtin, ChatTemplate, SpecialTokens, Tokenizer};
use serde_json::Value;

/// Tokenizers are large (Gemma's tokenizer.json is 33 MB): load each once for all tests.
fn load(dir: &std::path::Path) -> Arc<Tokenizer> {
    static CACHE: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<Tokenizer>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().expect("lock");
    cache
        .entry(dir.to_owned())
        .or_insert_with(|| Arc::new(Tokenizer::from_dir(dir).expect("tokenizer loads")))
        .clone()
}

fn vocab_inputs(vocab: &str) -> Vec<String> {
    let raw = read_cached(&format!("llama-cpp/vocab/ggml-vocab-{vocab}.gguf.inp"));
    let mut parts: Vec<String> = raw
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts
}

fn vocab_outputs(vocab: &str) -> Vec<Vec<u32>> {
    let raw = read_cached(&format!("llama-cpp/vocab/ggml-vocab-{vocab}.gguf.out"));
    let mut lines: Vec<&str> = raw.split('\n').collect();
    lines.pop();
    lines
        .iter()
        .map(|l| {
            l.split_whitespace()
                .map(|x| x.parse().expect("token id"))
                .collect()
        })
        .collect()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).expect("id lists")
}

fn suites() -> Vec<(String, Value)> {
    let fixture = fixture("tokenizers.json");
    let map = fixture["tokenizers"]
        .as_object()
        .expect("tokenizers")
        .clone();
    assert_eq!(
        map.len(),
        6,
        "expected Llama 3, Llama 3.1, Qwen3, BERT, Gemma 3 and Mistral"
    );
    map.into_iter().collect()
}

fn vars(special: &SpecialTokens) -> BTreeMap<String, String> {
    special
        .template_vars()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn special_tokens_match_transformers() {
    for (name, entry) in suites() {
        let tok = load(&cached(entry["dir"].as_str().expect("dir")));
        let want: BTreeMap<String, String> =
            serde_json::from_value(entry["special_tokens"].clone()).expect("special tokens");
        assert_eq!(vars(tok.special_tokens()), want, "{name}");
    }
}

#[test]
fn llama_cpp_vocab_goldens() {
    for (name, entry) in suites() {
        let dir = cached(entry["dir"].as_str().expect("dir"));
        let vocab = entry["vocab"].as_str().expect("vocab");
        let inputs = vocab_inputs(vocab);
        assert_eq!(
            inputs.len() as u64,
            entry["vocab_inputs"].as_u64().unwrap_or(0),
            "{name}"
        );
        let expected = if entry["upstream_out_matches_transformers"].as_bool() == Some(true) {
            vocab_outputs(vocab)
        } else {
            ids(&entry["transformers_ids"])
        };
        let tok = load(&dir);
        for (i, (input, want)) in inputs.iter().zip(&expected).enumerate() {
            let got = tok.encode_rendered(input).expect("encodes");
            assert_eq!(&got.ids, want, "{name} ({vocab}.inp #{i}): {input:?}");
            assert!(got.attention_mask.iter().all(|&m| m == 1));
        }
        // The tokenizer.json as written, without transformers 5's rebuild.
        let raw =
            tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
        let raw = Tokenizer::from_tokenizer(raw, SpecialTokens::default());
        let raw_expected = match entry.get("tokenizers_lib_ids") {
            Some(v) => ids(v),
            None => expected.clone(),
        };
        for (i, (input, want)) in inputs.iter().zip(&raw_expected).enumerate() {
            let got = raw.encode_rendered(input).expect("encodes");
            assert_eq!(
                &got.ids, want,
                "{name} raw tokenizer.json (#{i}): {input:?}"
            );
        }
    }
}

#[test]
fn decode_matches_transformers() {
    for (name, entry) in suites() {
        let tok = load(&cached(entry["dir"].as_str().expect("dir")));
        let d = &entry["decode"];
        let ids: Vec<u32> = serde_json::from_value(d["ids"].clone()).expect("ids");
        assert_eq!(
            tok.decode(&ids, false).expect("decodes"),
            d["text"].as_str().unwrap_or_default(),
            "{name}"
        );
        assert_eq!(
            tok.decode(&ids, true).expect("decodes"),
            d["text_skip_special"].as_str().unwrap_or_default(),
            "{name} skip_special_tokens"
        );
    }
}

#[test]
fn chat_template_then_tokenize_matches_transformers() {
    let templates = fixture("templates.json");
    let now = fixture_now(&templates["meta"]);
    let mut checked = 0;
    for (name, entry) in suites() {
        let Some(chats) = entry.get("chats").and_then(Value::as_object) else {
            continue;
        };
        let dir = cached(entry["dir"].as_str().expect("dir"));
        let tok = load(&dir);
        let template = match entry["template"].as_str() {
            Some("builtin/mistral") => ChatTemplate::builtin(Builtin::Mistral),
            _ => ChatTemplate::from_model_dir(&dir).expect("template"),
        };
        for (case_name, want) in chats {
            let case = &templates["cases"][case_name];
            let opts = case_options(case, tok.special_tokens(), now);
            let got = template.apply_json(&case_messages(case), &opts);
            let Some(text) = want.get("text").and_then(Value::as_str) else {
                assert!(
                    got.is_err(),
                    "{name}/{case_name}: transformers failed, kiln rendered"
                );
                continue;
            };
            let got = got.unwrap_or_else(|e| panic!("{name}/{case_name}: {e}"));
            assert_eq!(got.text, text, "{name}/{case_name}");
            let enc = tok.encode_rendered(&got.text).expect("encodes");
            let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).expect("ids");
            let want_mask: Vec<u32> =
                serde_json::from_value(want["attention_mask"].clone()).expect("mask");
            assert_eq!(enc.ids, want_ids, "{name}/{case_name} ids");
            assert_eq!(
                enc.attention_mask, want_mask,
                "{name}/{case_name} attention mask"
            );
            let decoded = tok.decode(&enc.ids, false).expect("decodes");
            assert_eq!(
                decoded,
                want["decoded"].as_str().unwrap_or_default(),
                "{name}/{case_name} decode"
            );
            let skipped = tok.decode(&enc.ids, true).expect("decodes");
            assert_eq!(
                skipped,
                want["decoded_skip_special"].as_str().unwrap_or_default(),
                "{name}/{case_name} decode skip_special_tokens"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} tokenized chats checked");
}

#[test]
fn terminators_cover_eos_end_of_turn_and_generation_config() {
    let dir = cached("tokenizers/llama3");
    let tok = load(&dir);
    let template = ChatTemplate::from_model_dir(&dir).expect("template");
    let eos = tok.token_to_id("<|end_of_text|>").expect("eos id");
    let eot = tok.token_to_id("<|eot_id|>").expect("eot id");
    // eos from tokenizer_config.json, then <|eot_id|> because the template writes it.
    assert_eq!(
        tok.terminators(&template, None).expect("terminators"),
        vec![eos, eot]
    );
    let tmp = std::env::temp_dir().join(format!(
        "kiln-chat-gen_config-config-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let gen_config = tmp.join("generation_config.json");
    std::fs::write(
        &gen_config,
        r#"{"eos_token_id": [128001, 128008, 128009], "bos_token_id": 128000}"#,
    )
    .expect("write");
    assert_eq!(
        tok.terminators(&template, Some(&gen_config))
            .expect("terminators"),
        vec![eos, eot, 128_008]
    );
    std::fs::write(&gen_config, r#"{"eos_token_id": "x"}"#).expect("write");
    let err = tok
        .terminators(&template, Some(&gen_config))
        .expect_err("bad eos_token_id");
    assert!(err.to_string().contains("eos_token_id"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();

    // Gemma 3: eos is <end_of_turn>, which the template also writes: listed once.
    let dir = cached("tokenizers/gemma3");
    let tok = load(&dir);
    let template = ChatTemplate::from_model_dir(&dir).expect("template");
    let end = tok.token_to_id("<end_of_turn>").expect("id");
    assert_eq!(
        tok.terminators(&template, None).expect("terminators"),
        vec![end]
    );
}

#[test]
fn assistant_mask_follows_generation_spans() {
    let dir = cached("tokenizers/qwen3");
    let tok = load(&dir);
    let fixture = fixture("generation.json");
    let entry = &fixture["templates"]["chatml_generation"];
    let template = ChatTemplate::from_source(
        "chatml_generation",
        entry["template"].as_str().expect("template"),
    )
    .expect("ok");
    let messages = fixture["cases"]["two_turns"]
        .as_array()
        .expect("messages")
        .clone();
    let out = template
        .apply_json(&messages, &kiln_chat_template::ApplyOptions::default())
        .expect("renders");
    let enc = tok.encode_rendered(&out.text).expect("encodes");
    let mask = tok.assistant_mask(&enc, &out.assistant_spans);
    // Exactly the tokens of the two assistant contents (each ends with <|im_end|>) are masked.
    let masked: Vec<u32> = enc
        .ids
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m == 1)
        .map(|(i, _)| *i)
        .collect();
    let text = tok.decode(&masked, false).expect("decodes");
    assert_eq!(
        text,
        "I am an assistant. How can I help?<|im_end|>4<|im_end|>"
    );
}
