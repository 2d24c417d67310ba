//! A bounded run of the `chat_template` fuzz target on stable: the seed cases of
//! `fuzz/seeds/chat_template/` (a template, a 0 byte, a JSON case) mutated by splicing Jinja
//! fragments into the template, byte edits of either part and odd JSON values in the case, then
//! rendered within tight limits. Every render must end in `Ok` or `Err` quickly; engine panics
//! are caught and returned as errors. The fixed RNG seed keeps the run the same everywhere;
//! `cargo fuzz` (see `fuzz/README.md`) searches far longer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use kiln_chat_template::{ApplyOptions, ChatTemplate, Conversation, Limits, SpecialTokens};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{Value, json};

/// Each render must end well within this in a debug build.
const QUICK: Duration = Duration::from_secs(5);

/// The seed inputs, sorted by name.
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/chat_template");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect()
}

/// The `chat_template` fuzz target's body: template source, 0 byte, JSON case.
fn render(data: &[u8]) {
    let (source, case) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let Ok(template) = ChatTemplate::from_source("fuzz", source) else {
        return;
    };
    let template = template.with_limits(Limits {
        fuel: Some(1_000_000),
        max_output_bytes: 1 << 20,
        ..Limits::default()
    });
    let case: Value = serde_json::from_slice(case)
        .unwrap_or_else(|_| json!([{"role": "user", "content": "Hello"}]));
    let Ok(conversation) = Conversation::from_value(&case, Path::new("case.json")) else {
        return;
    };
    let flag = |key: &str| case.get(key).and_then(Value::as_bool).unwrap_or(false);
    let options = ApplyOptions {
        add_generation_prompt: flag("add_generation_prompt"),
        continue_final_message: flag("continue_final_message"),
        tools: conversation.tools,
        documents: conversation.documents,
        extra: case
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        special_tokens: SpecialTokens {
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            ..SpecialTokens::default()
        },
        now: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..ApplyOptions::default()
    };
    let _ = template.has_generation();
    let _ = template.apply_json(&conversation.messages, &options);
}

/// Pieces of Jinja that real and hostile templates are made of.
const FRAGMENTS: &[&str] = &[
    "{{ messages | tojson }}",
    "{{ messages[0]['content'] * 100000 }}",
    "{% for m in messages %}{{ m.role }}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(x=0) %}{% set ns.x = [ns.x, ns.x] %}",
    "{% set ns.self = ns %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{{ loop.cycle() }}",
    "{{ 'a' | center(10000000000) }}",
    "{{ x | tojson(indent=10000000000) }}",
    "{{ '{:>10000000000}'.format(1) }}",
    "{{ '%10000000000d' | format(1) }}",
    "{{ raise_exception('no') }}",
    "{{ strftime_now('%A %d %B %Y %H:%M:%S %j %U %%') }}",
    "{% generation %}{{ m }}{% endgeneration %}",
    "{{ tools | map(attribute='function') | list }}",
    "{{ (messages | last).content.split(' ') | reverse | join('|') }}",
    "{% if add_generation_prompt %}{{ bos_token ~ eos_token }}{% endif %}",
    "{{ 10 ** 10 ** 10 }}",
    "{{ 1 // 0 }}",
    "{{ [1, 2][5] }}",
    "{{ {'a': 1}.items() | list }}",
    "{%",
    "}}",
    "{# #}",
    "{%- raw %}{{{% endraw -%}",
];

/// One change to a seed case.
#[derive(Debug, Clone)]
enum Edit {
    /// Splice `FRAGMENTS[i]` into the template, after a tag.
    Fragment(usize, usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// Replace the case's `which`-th message content or key with an odd value.
    CaseValue(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<usize>()).prop_map(|(at, f)| Edit::Fragment(at, f)),
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(w, v)| Edit::CaseValue(w, v)),
    ]
}

fn odd_value(i: usize) -> Value {
    let values = [
        json!(null),
        json!(""),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!([]),
        json!({}),
        json!([{"type": "text", "text": "x"}, {"type": "image"}]),
        json!({"role": "tool", "content": {"nested": [1, [2, [3]]]}}),
        json!("\u{0}\u{1f}\u{2581}\u{10ffff}"),
        json!([{"type": "function", "function": {"name": "f", "arguments": "{bad"}}]),
    ];
    values[i % values.len()].clone()
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let split = seed.iter().position(|&b| b == 0).unwrap_or(seed.len());
    let mut template = seed[..split].to_vec();
    let mut case: Value =
        serde_json::from_slice(seed.get(split + 1..).unwrap_or_default()).unwrap_or(json!([]));
    for e in edits {
        let len = template.len();
        match e {
            Edit::Fragment(at, f) => {
                // Between tags, where a fragment keeps the template well-formed.
                let mut ends = vec![0, len];
                ends.extend(
                    template
                        .windows(2)
                        .enumerate()
                        .filter(|(_, w)| *w == b"}}" || *w == b"%}")
                        .map(|(i, _)| i + 2),
                );
                let at = ends[at % ends.len()];
                template.splice(at..at, FRAGMENTS[f % FRAGMENTS.len()].bytes());
            }
            Edit::Flip(at, bit) if len > 0 => template[at % len] ^= 1 << bit,
            Edit::Insert(at, bytes) => {
                let at = at % (len + 1);
                template.splice(at..at, bytes.iter().copied());
            }
            Edit::Remove(at, n) if len > 0 => {
                let at = at % len;
                template.drain(at..(at + n).min(len));
            }
            Edit::Truncate(n) => template.truncate(n % (len + 1)),
            Edit::CaseValue(which, value) => {
                let messages = case
                    .get_mut("messages")
                    .and_then(Value::as_array_mut)
                    .filter(|m| !m.is_empty());
                if let Some(messages) = messages {
                    let n = messages.len();
                    let m = &mut messages[which % n];
                    let key = ["content", "role", "tool_calls", "name"][(which / n) % 4];
                    if let Some(m) = m.as_object_mut() {
                        m.insert(key.into(), odd_value(*value));
                    }
                } else if let Some(obj) = case.as_object_mut() {
                    obj.insert("tools".into(), odd_value(*value));
                }
            }
            _ => {}
        }
    }
    let mut out = template;
    out.push(0);
    out.extend(serde_json::to_vec(&case).expect("serializes"));
    out
}

#[test]
fn seeds_render() {
    for (i, seed) in seeds().iter().enumerate() {
        let split = seed.iter().position(|&b| b == 0).expect("a 0 byte");
        let source = std::str::from_utf8(&seed[..split]).expect("UTF-8");
        ChatTemplate::from_source("seed", source).unwrap_or_else(|e| panic!("seed {i}: {e}"));
        render(seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(20261205),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_templates_render_or_fail_quickly(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let all = seeds();
        let data: &Vec<u8> = seed.get(&all);
        let data = mutate(data, &edits);
        let start = Instant::now();
        render(&data);
        prop_assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }
}
