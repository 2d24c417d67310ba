#![allow(missing_docs)]
mod common;
use common::*;
use kiln_chat_template::{ApplyOptions, ChatTemplate, Limits};
use serde_json::{Value, json};
#[test]
fn probe() {
    if let Ok(src) = std::env::var("PROBE") {
        let t = std::time::Instant::now();
        let tpl = ChatTemplate::from_source("probe", src);
        let r = tpl.and_then(|tpl| {
            tpl.apply_json(
                &[json!({"role":"user","content":"hi"})],
                &ApplyOptions::default(),
            )
        });
        match r {
            Ok(r) => eprintln!(
                "OK len={} head={:?}",
                r.text.len(),
                &r.text[..r.text.len().min(200)]
            ),
            Err(e) => eprintln!("ERR {e}"),
        }
        eprintln!("took {:?}", t.elapsed());
    }
}
#[test]
fn long_chats() {
    let Ok(n) = std::env::var("PROBE_N") else {
        return;
    };
    let n: usize = n.parse().unwrap();
    let fixture = fixture("templates.json");
    let special = special_tokens(&fixture["special_tokens"]);
    let tools_case = &fixture["cases"]["tools"];
    let mut msgs =
        vec![json!({"role":"system","content":"You are a helpful assistant. ".repeat(10)})];
    for i in 0..n {
        msgs.push(json!({"role":"user","content": format!("question {i} ") + &"lorem ipsum dolor sit amet ".repeat(10)}));
        msgs.push(json!({"role":"assistant","content": format!("answer {i} ") + &"consectetur adipiscing elit ".repeat(10)}));
    }
    msgs.push(json!({"role":"user","content":"last"}));
    for (name, entry) in fixture["templates"].as_object().unwrap() {
        let rel = entry["source"].as_str().unwrap();
        let source = if rel.ends_with("tokenizer_config.json") {
            let config: Value = serde_json::from_str(&read_cached(rel)).unwrap();
            config["chat_template"].as_str().unwrap().to_owned()
        } else {
            read_cached(rel)
        };
        let t = ChatTemplate::from_source(name.clone(), source)
            .unwrap()
            .with_limits(Limits {
                fuel: Some(u64::MAX / 128),
                ..Limits::default()
            });
        let mut opts = ApplyOptions::generation_prompt();
        opts.special_tokens = special.clone();
        opts.tools = tools_case["tools"].as_array().cloned();
        let start = std::time::Instant::now();
        let r = t.apply_json(&msgs, &opts);
        eprintln!(
            "TIME {name} {:?} {}",
            start.elapsed(),
            match &r {
                Ok(r) => format!("ok {}", r.text.len()),
                Err(e) => format!(
                    "err {}",
                    e.to_string().chars().take(100).collect::<String>()
                ),
            }
        );
    }
}
