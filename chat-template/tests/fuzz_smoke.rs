//! A bounded run of the `chat_template` fuzz target on stable: the seed cases of
//! `fuzz/seeds/chat_template/` (a template, a 0 byte, a JSON case) mutated by splicing Jinja
//! fragments into the template, byte edits of the template and odd JSON values in the case, then
//! rendered within tight limits by the target's body (`fuzz/bodies/chat_template.rs`, the same
//! code the target runs). Every render must end in `Ok` or `Err` quickly; engine panics are
//! caught and returned as errors. The fixed RNG seed keeps the run the same everywhere;
//! `cargo fuzz` (see `fuzz/README.md`) searches far longer.

use std::time::{Duration, Instant};

use kiln_chat_template::ChatTemplate;
use proptest::prelude::*;
use serde_json::{Value, json};

#[path = "../../fuzz/bodies/chat_template.rs"]
mod body;
#[path = "../../fuzz/smoke.rs"]
mod smoke;

use smoke::ByteEdit;

/// Each render must end well within this in a debug build.
const QUICK: Duration = Duration::from_secs(5);

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
    /// A byte edit of the template.
    Bytes(ByteEdit),
    /// Replace the case's `which`-th message content or key with an odd value.
    CaseValue(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<usize>()).prop_map(|(at, f)| Edit::Fragment(at, f)),
        1 => smoke::flip().prop_map(Edit::Bytes),
        1 => smoke::insert(8).prop_map(Edit::Bytes),
        1 => smoke::remove(32).prop_map(Edit::Bytes),
        1 => smoke::truncate().prop_map(Edit::Bytes),
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
            Edit::Bytes(e) => e.apply(&mut template),
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
        }
    }
    let mut out = template;
    out.push(0);
    out.extend(serde_json::to_vec(&case).expect("serializes"));
    out
}

#[test]
fn seeds_render() {
    for (i, seed) in smoke::seeds("chat_template").iter().enumerate() {
        let split = seed.iter().position(|&b| b == 0).expect("a 0 byte");
        let source = std::str::from_utf8(&seed[..split]).expect("UTF-8");
        ChatTemplate::from_source("seed", source).unwrap_or_else(|e| panic!("seed {i}: {e}"));
        body::run(seed);
    }
}

proptest! {
    #![proptest_config(smoke::config())]

    #[test]
    fn mutated_templates_render_or_fail_quickly(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let all = smoke::seeds("chat_template");
        let data: &Vec<u8> = seed.get(&all);
        let data = mutate(data, &edits);
        let start = Instant::now();
        body::run(&data);
        prop_assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }
}
