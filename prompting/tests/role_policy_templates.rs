//! Role policies inferred from the real chat templates in the artifact cache.

use std::path::PathBuf;

use kiln_prompting::{RolePolicy, SystemRole};

fn cache_dir() -> PathBuf {
    match std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")),
    }
}

fn read(relative: &str) -> String {
    let path = cache_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo xtask fetch` to download the test artifacts",
            path.display()
        )
    })
}

/// The `chat_template` string of a cached `tokenizer_config.json`.
fn config_template(family: &str) -> String {
    let config = read(&format!("tokenizers/{family}/tokenizer_config.json"));
    let v: serde_json::Value = serde_json::from_str(&config).expect("valid tokenizer_config.json");
    v["chat_template"]
        .as_str()
        .unwrap_or_else(|| panic!("{family}: tokenizer_config.json has no chat_template string"))
        .to_owned()
}

fn describe(p: &RolePolicy) -> (&'static str, bool) {
    let system = match p.system_role() {
        SystemRole::Native => "native",
        SystemRole::FoldIntoUser => "fold",
        _ => "other",
    };
    (system, p.requires_alternation())
}

#[test]
fn every_cached_template_gets_the_expected_policy() {
    let dir = cache_dir().join("llama-cpp/templates");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot list {}: {e}; run `cargo xtask fetch` to download the test artifacts",
            dir.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jinja"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 70,
        "expected the 70 cached templates, found {}",
        names.len()
    );

    let mut special = Vec::new();
    for name in &names {
        let src = read(&format!("llama-cpp/templates/{name}"));
        let policy = RolePolicy::infer(&src);
        if policy != RolePolicy::native() {
            special.push((
                name.trim_end_matches(".jinja").to_owned(),
                describe(&policy),
            ));
        }
    }
    // Every other template accepts a system role and any role order.
    assert_eq!(
        special,
        vec![
            (
                "Mistral-Small-3.2-24B-Instruct-2506".to_owned(),
                ("native", true)
            ),
            ("google-gemma-2-2b-it".to_owned(), ("fold", true)),
            (
                "mistralai-Ministral-3-14B-Reasoning-2512".to_owned(),
                ("native", true)
            ),
            (
                "mistralai-Mistral-Nemo-Instruct-2407".to_owned(),
                ("native", true)
            ),
        ]
    );
}

#[test]
fn family_presets_match_inference() {
    let gemma2 = read("llama-cpp/templates/google-gemma-2-2b-it.jinja");
    assert_eq!(RolePolicy::infer(&gemma2), RolePolicy::gemma());
    let nemo = read("llama-cpp/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja");
    assert_eq!(RolePolicy::infer(&nemo), RolePolicy::strict_alternation());
    // Gemma 3 folds a system message itself but still demands alternation.
    assert_eq!(
        RolePolicy::infer(&config_template("gemma3")),
        RolePolicy::strict_alternation()
    );
    for family in ["llama3", "llama3_1", "qwen3"] {
        assert_eq!(
            RolePolicy::infer(&config_template(family)),
            RolePolicy::native(),
            "{family}"
        );
    }
}

/// The chat template of Mistral-7B-Instruct-v0.1 (its `tokenizer_config.json`);
/// the cached Mistral tokenizer config carries no template.
const MISTRAL_V01: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

#[test]
fn mistral_v1_has_no_system_role() {
    assert_eq!(RolePolicy::infer(MISTRAL_V01), RolePolicy::mistral_v1());
}
