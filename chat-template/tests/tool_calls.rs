//! Tool calls in model output: format detection on the real templates, each format's parser on
//! well-formed, malformed and plain output, and the calls the templates themselves render
//! (jinja2's text in `testdata/chat-template/conversations.json`) parsed back.

mod common;

use common::*;
use kiln_chat_template::{ChatTemplate, Error, Message, ToolCallFormat};
use proptest::prelude::*;
use serde_json::{Value, json};

use ToolCallFormat::{CommandR, Hermes, Llama3Json, Mistral};

fn calls(format: ToolCallFormat, output: &str) -> Vec<(String, Value, Option<String>)> {
    format
        .parse(output)
        .unwrap_or_else(|e| panic!("{output:?}: {e}"))
        .tool_calls
        .into_iter()
        .map(|c| (c.function.name, c.function.arguments, c.id))
        .collect()
}

fn call(name: &str, arguments: Value) -> (String, Value, Option<String>) {
    (name.to_owned(), arguments, None)
}

/// Asserts a malformed-call error whose message contains `needle`.
fn malformed(format: ToolCallFormat, output: &str, needle: &str) {
    match format.parse(output) {
        Err(Error::ToolCall {
            format: f, message, ..
        }) => {
            assert_eq!(f, format);
            assert!(message.contains(needle), "{output:?}: {message}");
        }
        other => panic!("{output:?}: expected a malformed tool call error, got {other:?}"),
    }
}

#[test]
fn formats_are_detected_from_the_real_templates() {
    let expected = [
        (
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
            Some(Hermes),
        ),
        ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", Some(Hermes)),
        ("Qwen-Qwen2.5-7B-Instruct", Some(Hermes)),
        ("Qwen-Qwen3-0.6B", Some(Hermes)),
        ("meta-llama-Llama-3.1-8B-Instruct", Some(Llama3Json)),
        ("meta-llama-Llama-3.2-3B-Instruct", Some(Llama3Json)),
        ("meta-llama-Llama-3.3-70B-Instruct", Some(Llama3Json)),
        ("mistralai-Mistral-Nemo-Instruct-2407", Some(Mistral)),
        ("Mistral-Small-3.2-24B-Instruct-2506", Some(Mistral)),
        ("unsloth-mistral-Devstral-Small-2507", Some(Mistral)),
        ("CohereForAI-c4ai-command-r-plus-tool_use", Some(CommandR)),
        (
            "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
            Some(CommandR),
        ),
        ("google-gemma-2-2b-it", None),
        ("microsoft-Phi-3.5-mini-instruct", None),
    ];
    for (name, want) in expected {
        let source = read_cached(&format!("llama-cpp/templates/{name}.jinja"));
        let template = ChatTemplate::from_source(name, source).expect("compiles");
        assert_eq!(ToolCallFormat::detect(&template), want, "{name}");
    }
}

#[test]
fn hermes() {
    let one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\"}}\n</tool_call>";
    assert_eq!(
        calls(Hermes, one),
        [call("get_weather", json!({"city": "서울"}))]
    );
    let out = Hermes
        .parse(&format!(
            "Let me check both.\n{one}\n<tool_call>{{\"name\": \"search\", \"arguments\": {{}}}}</tool_call><|im_end|>"
        ))
        .unwrap();
    assert_eq!(out.content, "Let me check both.");
    assert_eq!(out.tool_calls.len(), 2);
    assert_eq!(out.tool_calls[1].function.name, "search");
    // Generation stopped before the closing tag; arguments missing mean none.
    assert_eq!(
        calls(Hermes, "<tool_call>\n{\"name\": \"now\"}\n"),
        [call("now", json!({}))]
    );
    // A closing tag inside a JSON string does not end the call.
    assert_eq!(
        calls(
            Hermes,
            "<tool_call>{\"name\": \"echo\", \"arguments\": {\"s\": \"a</tool_call>b\"}}</tool_call>"
        ),
        [call("echo", json!({"s": "a</tool_call>b"}))]
    );
    // No call: the text as it is.
    let plain = Hermes.parse("  The answer is 4. \n").unwrap();
    assert_eq!(
        (plain.content.as_str(), plain.tool_calls.len()),
        ("The answer is 4.", 0)
    );

    malformed(
        Hermes,
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": }\n</tool_call>",
        "not valid JSON",
    );
    malformed(
        Hermes,
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "no `name`",
    );
    malformed(
        Hermes,
        "<tool_call>{\"name\": 3}</tool_call>",
        "non-empty string",
    );
    malformed(Hermes, "<tool_call>[1, 2]</tool_call>", "JSON object");
    malformed(
        Hermes,
        "<tool_call>{\"name\": \"a\"} trailing</tool_call>",
        "unexpected text",
    );
    malformed(Hermes, "<tool_call></tool_call>", "missing");
}

#[test]
fn llama3_json() {
    let args = json!({"city": "Paris", "days": 2});
    assert_eq!(
        calls(
            Llama3Json,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}<|eom_id|>"
        ),
        [call("get_weather", args.clone())]
    );
    assert_eq!(
        calls(
            Llama3Json,
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}"
        ),
        [call("get_weather", args)]
    );
    assert_eq!(
        calls(
            Llama3Json,
            "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": {\"q\": 1}}"
        ),
        [call("a", json!({})), call("b", json!({"q": 1}))]
    );
    // Prose, an answer that is JSON, code for the code interpreter: no calls.
    for text in [
        "It is sunny in Paris.",
        "{\"answer\": 4}",
        "{not json at all",
        "<|python_tag|>import math\nprint(math.pi)",
    ] {
        let out = Llama3Json.parse(text).unwrap();
        assert!(out.tool_calls.is_empty(), "{text}");
        assert_eq!(out.content, text);
    }
    malformed(
        Llama3Json,
        "<|python_tag|>{\"name\": \"a\", \"parameters\": {",
        "not valid JSON",
    );
    malformed(
        Llama3Json,
        "{\"name\": \"a\", \"parameters\": {\"x\": 1,}}",
        "not valid JSON",
    );
    malformed(
        Llama3Json,
        "<|python_tag|>{\"parameters\": {}}",
        "no `name`",
    );
    malformed(
        Llama3Json,
        "{\"name\": \"a\", \"parameters\": {}} and more",
        "unexpected text",
    );
}

#[test]
fn mistral() {
    let out = Mistral
        .parse("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"Kx7pQ2mZ1\"}, {\"name\": \"now\", \"arguments\": \"{}\"}]</s>")
        .unwrap();
    assert_eq!(out.content, "");
    assert_eq!(out.tool_calls[0].id.as_deref(), Some("Kx7pQ2mZ1"));
    assert_eq!(
        out.tool_calls[0].function.arguments,
        json!({"city": "Paris"})
    );
    // Arguments given as a JSON string stay a string, as the API form carries them.
    assert_eq!(out.tool_calls[1].function.arguments, json!("{}"));
    assert_eq!(
        calls(
            Mistral,
            "Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]now[ARGS]{}"
        ),
        [
            call("get_weather", json!({"city": "Paris"})),
            call("now", json!({}))
        ]
    );
    assert_eq!(
        calls(
            Mistral,
            "[TOOL_CALLS]get_weather[CALL_ID]abc123xyz[ARGS]{\"city\": \"Paris\"}</s>"
        ),
        [(
            "get_weather".to_owned(),
            json!({"city": "Paris"}),
            Some("abc123xyz".to_owned())
        )]
    );
    let plain = Mistral.parse("Bonjour !</s>").unwrap();
    assert_eq!(
        (plain.content.as_str(), plain.tool_calls.len()),
        ("Bonjour !", 0)
    );

    malformed(
        Mistral,
        "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {]",
        "not valid JSON",
    );
    malformed(
        Mistral,
        "[TOOL_CALLS]get_weather[ARGS]{\"city\": Paris}",
        "not valid JSON",
    );
    malformed(
        Mistral,
        "[TOOL_CALLS]get_weather{\"city\": \"Paris\"}",
        "[ARGS]",
    );
    malformed(
        Mistral,
        "[TOOL_CALLS]get weather[ARGS]{}",
        "invalid function name",
    );
    malformed(Mistral, "[TOOL_CALLS]{\"name\": \"a\"}", "JSON list");
    malformed(Mistral, "[TOOL_CALLS][{\"arguments\": {}}]", "no `name`");
}

#[test]
fn command_r() {
    let out = CommandR
        .parse("I will search.\nAction: ```json\n[\n    {\n        \"tool_name\": \"internet_search\",\n        \"parameters\": {\"query\": \"서울 날씨\"}\n    },\n    {\"tool_name\": \"directly-answer\", \"parameters\": {}}\n]\n```")
        .unwrap();
    assert_eq!(out.content, "I will search.");
    assert_eq!(out.tool_calls.len(), 1, "directly-answer is no call");
    assert_eq!(out.tool_calls[0].function.name, "internet_search");
    assert_eq!(
        out.tool_calls[0].function.arguments,
        json!({"query": "서울 날씨"})
    );
    // Command R7B.
    assert_eq!(
        calls(
            CommandR,
            "<|START_THINKING|>Look it up.<|END_THINKING|><|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n]<|END_ACTION|>"
        ),
        [(
            "get_weather".to_owned(),
            json!({"city": "Paris"}),
            Some("0".to_owned())
        )]
    );
    // Closing markers inside JSON strings do not end the list.
    assert_eq!(
        calls(
            CommandR,
            "Action: ```json\n[{\"tool_name\": \"md\", \"parameters\": {\"code\": \"```py\\nx\\n```\"}}]\n```"
        ),
        [call("md", json!({"code": "```py\nx\n```"}))]
    );
    assert_eq!(
        calls(
            CommandR,
            "<|START_ACTION|>[{\"tool_call_id\": \"1\", \"tool_name\": \"f\", \"parameters\": {\"s\": \"<|END_ACTION|>\"}}]<|END_ACTION|>"
        ),
        [(
            "f".to_owned(),
            json!({"s": "<|END_ACTION|>"}),
            Some("1".to_owned())
        )]
    );
    assert!(
        CommandR
            .parse("Paris is sunny.")
            .unwrap()
            .tool_calls
            .is_empty()
    );

    malformed(
        CommandR,
        "Action: ```json\n[{\"tool_name\": \"a\", \"parameters\": {}\n```",
        "not valid JSON",
    );
    malformed(
        CommandR,
        "Action: ```json\n{\"tool_name\": \"a\"}\n```",
        "JSON list",
    );
    malformed(
        CommandR,
        "Action: ```json\n[{\"name\": \"a\"}]\n```",
        "no `tool_name`",
    );
    malformed(
        CommandR,
        "<|START_ACTION|>[{\"tool_name\": \"a\"}] oops<|END_ACTION|>",
        "unexpected text",
    );
}

#[test]
fn parsed_calls_become_an_assistant_message() {
    let message: Message = Hermes
        .parse("<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>")
        .unwrap()
        .into_message();
    assert_eq!(message.role, "assistant");
    assert_eq!(message.content, None);
    assert_eq!(message.tool_calls[0].kind, "function");
    let text = Hermes.parse("Hello.").unwrap().into_message();
    assert_eq!(text.text(), "Hello.");
    assert!(text.tool_calls.is_empty());
}

/// The assistant turns jinja2 rendered for the tool-call conversations, parsed back with the
/// format detected from the same template, give the calls of the conversation.
#[test]
fn calls_rendered_by_the_templates_parse_back() {
    let fixture = fixture("conversations.json");
    // (template, the text that opens the assistant turn with calls, the text that closes it)
    let turns = [
        (
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
            "<|im_start|>assistant\n<tool_call>",
            "<|im_end|>",
        ),
        (
            "mistralai-Mistral-Nemo-Instruct-2407",
            "[TOOL_CALLS]",
            "</s>",
        ),
        (
            "CohereForAI-c4ai-command-r-plus-tool_use",
            "Action:\n```json",
            "]```",
        ),
    ];
    let mut checked = 0;
    for (name, open, close) in turns {
        let source = read_cached(&format!("llama-cpp/templates/{name}.jinja"));
        let template = ChatTemplate::from_source(name, source).expect("compiles");
        let format = ToolCallFormat::detect(&template).expect("a tool-call format");
        for case in ["ko_tool_calls", "parallel_tool_calls", "string_arguments"] {
            let Some(text) = fixture["templates"][name]["results"][case]["text"].as_str() else {
                continue;
            };
            let messages = case_messages(&fixture["cases"][case]);
            let want: Vec<&Value> = messages
                .iter()
                .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
                .flatten()
                .collect();
            let start = text.find(open).expect("the calls are rendered");
            let end = start + text[start..].find(close).expect("turn end") + close.len();
            let parsed = format
                .parse(&text[start..end])
                .unwrap_or_else(|e| panic!("{name} / {case}: {e}"));
            assert_eq!(parsed.tool_calls.len(), want.len(), "{name} / {case}");
            for (got, want) in parsed.tool_calls.iter().zip(&want) {
                assert_eq!(
                    got.function.name, want["function"]["name"],
                    "{name} / {case}"
                );
                let want_args = match &want["function"]["arguments"] {
                    Value::String(s) => serde_json::from_str(s).unwrap(),
                    other => other.clone(),
                };
                // Hermes prints string arguments as they are, so they parse as JSON.
                let got_args = match &got.function.arguments {
                    Value::String(s) => serde_json::from_str(s).unwrap(),
                    other => other.clone(),
                };
                assert_eq!(got_args, want_args, "{name} / {case}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} calls checked");
}

/// Tool calling as a chat does it, on the real templates: the conversation up to an assistant
/// turn with calls is rendered with a generation prompt; what jinja2's render of the whole
/// conversation has after that prompt, up to the end of the turn, is what the model would write.
/// Parsed with the detected format it gives the calls of the conversation (names, arguments,
/// ids), and the parsed message, put back in place of the original, renders the conversation as
/// jinja2 did (its SHA-256 in the fixture).
#[test]
fn tool_calls_round_trip_through_the_templates() {
    let fixture = fixture("conversations.json");
    let special = special_tokens(&fixture["special_tokens"]);
    let now = fixture_now(&fixture["meta"]);
    // (template, its format, the text that ends an assistant turn with calls)
    let templates = [
        ("meta-llama-Llama-3.1-8B-Instruct", Llama3Json, "<|eot_id|>"),
        (
            "meta-llama-Llama-3.3-70B-Instruct",
            Llama3Json,
            "<|eot_id|>",
        ),
        (
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
            Hermes,
            "<|im_end|>",
        ),
        (
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
            Hermes,
            "<|im_end|>",
        ),
        ("Qwen-Qwen2.5-7B-Instruct", Hermes, "<|im_end|>"),
        ("mistralai-Mistral-Nemo-Instruct-2407", Mistral, "</s>"),
        ("Mistral-Small-3.2-24B-Instruct-2506", Mistral, "</s>"),
    ];
    let mut turns = std::collections::BTreeMap::new();
    for (name, format, end) in templates {
        let entry = &fixture["templates"][name];
        let template = ChatTemplate::from_source(name, fixture_template_source(entry)).unwrap();
        assert_eq!(ToolCallFormat::detect(&template), Some(format), "{name}");
        for (case_name, expected) in entry["results"].as_object().expect("results") {
            let Some(want_hash) = expected.get("sha256_16").and_then(Value::as_str) else {
                continue; // jinja2 refused the conversation
            };
            // `tool_calls: []` is a key a typed message without calls does not write.
            if case_name == "empty_tool_calls" {
                continue;
            }
            let case = &fixture["cases"][case_name];
            let Ok(messages) = case_messages(case)
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<Vec<Message>, _>>()
            else {
                continue;
            };
            let options = case_options(case, &special, now);
            let full = template.apply(&messages, &options).unwrap().text;
            assert_eq!(&sha256(&full)[..16], want_hash, "{name} / {case_name}");
            for (i, original) in messages.iter().enumerate() {
                if original.role != "assistant" || original.tool_calls.is_empty() {
                    continue;
                }
                let mut prompt_options = options.clone();
                prompt_options.add_generation_prompt = true;
                prompt_options.continue_final_message = false;
                let prompt = template
                    .apply(&messages[..i], &prompt_options)
                    .unwrap()
                    .text;
                let rest = match full.strip_prefix(prompt.as_str()) {
                    Some(rest) => rest,
                    // Mistral puts the tools before the last user turn, so an earlier prompt is
                    // no prefix of the whole chat: the turn starts at its `[TOOL_CALLS]`, found
                    // counting from the end the call turns (or the calls, for templates that
                    // write one `[TOOL_CALLS]` per call).
                    None if format == Mistral => {
                        let calls = |ms: &[Message]| -> usize {
                            ms.iter().map(|m| m.tool_calls.len()).sum()
                        };
                        let per_call = full.matches("[TOOL_CALLS]").count() == calls(&messages);
                        let from_end = if per_call {
                            calls(&messages[i..])
                        } else {
                            messages[i..]
                                .iter()
                                .filter(|m| !m.tool_calls.is_empty())
                                .count()
                        };
                        let (at, _) = full
                            .rmatch_indices("[TOOL_CALLS]")
                            .nth(from_end - 1)
                            .expect("the call turn is rendered");
                        &full[at..]
                    }
                    None => panic!("{name} / {case_name}: the render does not extend the prompt"),
                };
                let output = &rest[..rest.find(end).expect("the turn ends") + end.len()];
                let parsed = match format.parse(output) {
                    Ok(parsed) => parsed,
                    // Arguments that are a string of invalid JSON, printed as they are, are a
                    // malformed call; any other refusal is a bug.
                    Err(Error::ToolCall { .. })
                        if original.tool_calls.iter().any(|c| {
                            c.function.arguments.as_str().is_some_and(|s| {
                                serde_json::from_str::<Value>(s).is_err() && output.contains(s)
                            })
                        }) =>
                    {
                        continue;
                    }
                    Err(e) => panic!("{name} / {case_name}: {e}\n{output}"),
                };
                assert_eq!(
                    parsed.tool_calls.len(),
                    original.tool_calls.len(),
                    "{name} / {case_name}: {output}"
                );
                for (got, want) in parsed.tool_calls.iter().zip(&original.tool_calls) {
                    assert_eq!(
                        got.function.name, want.function.name,
                        "{name} / {case_name}"
                    );
                    let json = |v: &Value| match v {
                        Value::String(s) => serde_json::from_str(s).unwrap_or(v.clone()),
                        other => other.clone(),
                    };
                    assert_eq!(
                        json(&got.function.arguments),
                        json(&want.function.arguments),
                        "{name} / {case_name}: {output}"
                    );
                    if got.id.is_some() {
                        assert_eq!(got.id, want.id, "{name} / {case_name}");
                    }
                }
                // A call whose arguments were a JSON string comes back as an object: the same
                // arguments, which a template may print with other spacing; the parsed text
                // around calls is trimmed.
                let text = original.text();
                if original
                    .tool_calls
                    .iter()
                    .any(|c| c.function.arguments.is_string())
                    || text.trim() != text
                {
                    *turns.entry(name).or_insert(0) += 1;
                    continue;
                }
                let mut replayed = messages.clone();
                replayed[i] = parsed.into_message();
                let again = template.apply(&replayed, &options).unwrap().text;
                assert_eq!(
                    &sha256(&again)[..16],
                    want_hash,
                    "{name} / {case_name}: with the parsed calls the render differs from \
                     jinja2's:\n{again}"
                );
                *turns.entry(name).or_insert(0) += 1;
            }
        }
    }
    eprintln!("assistant turns with calls round-tripped: {turns:?}");
    for (name, _, _) in templates {
        let n = turns.get(name).copied().unwrap_or(0);
        assert!(
            n >= 5,
            "{name}: only {n} assistant turns with calls round-tripped"
        );
    }
}

proptest! {
    /// No output makes a parser panic: it gives calls, no calls, or an error.
    #[test]
    fn parsers_never_panic(parts in prop::collection::vec(prop::sample::select(vec![
        "<tool_call>", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]",
        "Action:", "```json", "```", "<|START_ACTION|>", "<|END_ACTION|>", "{", "}", "[", "]",
        "\"name\"", "\"tool_name\"", ":", ",", ";", "\"x\"", "1", "é", " ", "\n", "</s>",
        "<|eom_id|>", "{\"name\": \"f\", \"arguments\": {}}",
    ]), 0..24)) {
        let output: String = parts.concat();
        for format in [Hermes, Llama3Json, Mistral, CommandR] {
            match format.parse(&output) {
                Ok(out) => prop_assert!(out.tool_calls.iter().all(|c| !c.function.name.is_empty())),
                Err(Error::ToolCall { offset, .. }) => prop_assert!(offset <= output.len()),
                Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
            }
        }
    }
}
