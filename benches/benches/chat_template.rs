//! Chat template rendering speed: the Llama 3.1 template with 3 tools and a 10-turn conversation
//! (`testdata/chat-template/bench_conversation.json`), the input transformers' speed is measured
//! on by `scripts/reference/bench_chat_template.py`.
//!
//! `cargo bench -p kiln-benches --bench chat_template` runs the criterion bench. With
//! `KILN_BENCH_PYTHON=<python with transformers>` set, the same run also times transformers on
//! the same input and prints the ratio.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use criterion::Criterion;
use kiln_chat_template::{ApplyOptions, ChatTemplate, Conversation, PreparedChat, SpecialTokens};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache").join("kiln"))
}

fn cached(rel: &str) -> PathBuf {
    let path = cache_dir().join(rel);
    assert!(
        path.exists(),
        "missing {}: run `cargo xtask fetch`",
        path.display()
    );
    path
}

/// The template and tokenizer `bench_conversation.json` names (in the artifact cache).
const TEMPLATE: &str = "llama-cpp/templates/meta-llama-Llama-3.1-8B-Instruct.jinja";
const TOKENIZER: &str = "tokenizers/llama3_1";

struct Input {
    template: ChatTemplate,
    conversation: Conversation,
    options: ApplyOptions,
    /// The same messages and tools, converted once (a chat session's way).
    prepared: PreparedChat,
    /// `options` without the tools (they are in `prepared`).
    prepared_options: ApplyOptions,
}

fn input() -> Input {
    let spec_path = repo_root().join("testdata/chat-template/bench_conversation.json");
    let template = ChatTemplate::from_file(cached(TEMPLATE)).expect("template");
    let special = SpecialTokens::from_dir(cached(TOKENIZER)).expect("special tokens");
    let conversation = Conversation::from_file(&spec_path).expect("conversation");
    let options = ApplyOptions {
        add_generation_prompt: true,
        tools: conversation.tools.clone(),
        special_tokens: special,
        ..ApplyOptions::default()
    };
    let prepared =
        PreparedChat::new(&conversation.messages, conversation.tools.as_deref()).expect("prepares");
    let prepared_options = ApplyOptions {
        tools: None,
        ..options.clone()
    };
    Input {
        template,
        conversation,
        options,
        prepared,
        prepared_options,
    }
}

/// `apply_json`: converts the JSON messages and tools on every call.
fn render(input: &Input) -> String {
    input
        .template
        .apply_json(&input.conversation.messages, &input.options)
        .expect("renders")
        .text
}

/// `apply_prepared`: messages and tools converted once.
fn render_prepared(input: &Input) -> String {
    input
        .template
        .apply_prepared(&input.prepared, &input.prepared_options)
        .expect("renders")
        .text
}

/// Mean microseconds per render over `iterations`, best of `repeats`.
fn time_kiln(input: &Input, f: fn(&Input) -> String, iterations: u32, repeats: u32) -> f64 {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(f(input));
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .fold(f64::INFINITY, f64::min)
}

fn json_number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\": "))? + key.len() + 4;
    let end = json[at..].find([',', '}'])? + at;
    json[at..end].trim().parse().ok()
}

fn main() {
    let input = input();
    let rendered = render(&input);
    assert_eq!(render_prepared(&input), rendered, "prepared render differs");
    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("chat_template/llama3.1_tools3_turns10/apply_json", |b| {
        b.iter(|| render(&input))
    });
    criterion.bench_function(
        "chat_template/llama3.1_tools3_turns10/apply_prepared",
        |b| b.iter(|| render_prepared(&input)),
    );
    criterion.final_summary();

    let Some(python) = std::env::var_os("KILN_BENCH_PYTHON") else {
        println!(
            "set KILN_BENCH_PYTHON to a Python with transformers to compare with transformers"
        );
        return;
    };
    let script = repo_root().join("scripts/reference/bench_chat_template.py");
    let out = Command::new(python)
        .arg(script)
        .output()
        .expect("runs python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        eprintln!(
            "transformers bench failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    };
    let py_us = json_number(line, "us_per_render_min").expect("us_per_render_min");
    let py_bytes = json_number(line, "rendered_bytes").unwrap_or(0.0);
    if py_bytes as usize != rendered.len() {
        eprintln!(
            "transformers rendered {py_bytes} bytes, kiln {}: the inputs differ, no comparison",
            rendered.len()
        );
        std::process::exit(1);
    }
    // kiln is timed right after transformers, so both see the same machine state.
    let kiln_us = time_kiln(&input, render, 2000, 7);
    let prepared_us = time_kiln(&input, render_prepared, 2000, 7);
    let record = format!(
        "{{\"bench\": \"chat_template\", \"input\": \"Llama 3.1 template, 3 tools, 10 turns\", \
         \"kiln_apply_json_us\": {kiln_us:.3}, \"kiln_apply_prepared_us\": {prepared_us:.3}, \
         \"transformers_us\": {py_us:.3}, \"speedup_apply_json\": {:.2}, \
         \"speedup_apply_prepared\": {:.2}, \"reference\": {line}}}",
        py_us / kiln_us,
        py_us / prepared_us
    );
    println!("{record}");
    kiln_benches::write_record("chat_template", &record);
}
