use serde::Deserialize;

use super::*;
use crate::testing::ScriptedGenerator;
use crate::{Completion, from_fn};

#[derive(Debug, Deserialize, PartialEq)]
struct Verdict {
    label: String,
    confidence: f64,
}

fn classify() -> Step<String, Verdict> {
    Step::json("classify", |text: &String| {
        vec![Message::user(format!("Classify as JSON: {text}"))]
    })
}

#[test]
fn retries_tell_the_model_what_was_wrong_and_keep_the_history() {
    let g = ScriptedGenerator::new([
        "I would say positive.",
        "{\"label\": \"positive\"}",
        "{\"label\": \"positive\", \"confidence\": 0.9}",
    ]);
    let (v, trace) = Chain::new(classify())
        .run_traced(&g, "great!".to_owned())
        .unwrap();
    assert_eq!(
        v,
        Verdict {
            label: "positive".into(),
            confidence: 0.9
        }
    );
    let calls = g.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[2].messages,
        vec![
            Message::user("Classify as JSON: great!"),
            Message::assistant("I would say positive."),
            Message::user(
                "Your reply could not be used: the reply contains no JSON object or array. \
                 Reply again with only the corrected JSON and no other text."
            ),
            Message::assistant("{\"label\": \"positive\"}"),
            Message::user(
                "Your reply could not be used: the JSON object does not have the expected \
                 structure: missing field `confidence` at line 1 column 21. \
                 Reply again with only the corrected JSON and no other text."
            ),
        ]
    );
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].name, "classify");
    assert_eq!(trace[0].messages, calls[2].messages);
    assert_eq!(trace[0].rejected.len(), 2);
    assert_eq!(
        trace[0].reply,
        "{\"label\": \"positive\", \"confidence\": 0.9}"
    );
}

#[test]
fn exhausted_retries_carry_every_attempt() {
    let g = ScriptedGenerator::new(["no", "{\"label\": 1}", "{broken"]);
    let err = Chain::new(classify()).run(&g, "x".to_owned()).unwrap_err();
    let Error::RetriesExhausted { step, attempts } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(step, "classify");
    let problems: Vec<&str> = attempts.iter().map(|a| a.problem.as_str()).collect();
    assert_eq!(
        problems,
        [
            "the reply contains no JSON object or array",
            "the JSON object does not have the expected structure: invalid type: integer `1`, expected a string at line 1 column 11",
            "the JSON object is never closed (the reply may have been cut off)",
        ]
    );
    assert_eq!(attempts[2].reply, "{broken");
    assert_eq!(
        err.to_string(),
        "chain step `classify`: no usable reply after 3 attempt(s); last problem: \
         the JSON object is never closed (the reply may have been cut off) in reply \"{broken\""
    );
    assert_eq!(g.remaining(), 0);
}

#[test]
fn zero_retries_means_one_attempt() {
    let g = ScriptedGenerator::new(["nothing", "unused"]);
    let err = Chain::new(classify().max_retries(0))
        .run(&g, "x".to_owned())
        .unwrap_err();
    assert!(matches!(err, Error::RetriesExhausted { ref attempts, .. } if attempts.len() == 1));
    assert_eq!(g.remaining(), 1);
}

#[test]
fn a_cut_off_reply_is_reported_as_such() {
    let g = from_fn(|_: &[Message], _: &GenerationParams| {
        Ok(Completion::new("{\"label\": \"pos", StopReason::MaxTokens))
    });
    let err = Chain::new(classify().max_retries(1))
        .run(&g, "x".to_owned())
        .unwrap_err();
    let Error::RetriesExhausted { attempts, .. } = err else {
        panic!("unexpected error");
    };
    assert_eq!(
        attempts[1].problem,
        "the JSON object is never closed (the reply may have been cut off) (the reply hit the token limit)"
    );
}

#[test]
fn steps_map_and_validation_compose() {
    let g = ScriptedGenerator::new([
        "  Rust is a systems language.  ",
        "{\"label\": \"tech\", \"confidence\": 1.5}",
        "{\"label\": \"tech\", \"confidence\": 0.8}",
        "",
        "Tech, 80%.",
    ]);
    let chain = Chain::new(Step::text("summarize", |t: &String| {
        vec![Message::user(format!("Summarize: {t}"))]
    }))
    .then(
        classify()
            .validate(|v| {
                if (0.0..=1.0).contains(&v.confidence) {
                    Ok(())
                } else {
                    Err(format!(
                        "confidence {} is not between 0 and 1",
                        v.confidence
                    ))
                }
            })
            .params(GenerationParams::default().temperature(0.2)),
    )
    .map(|v| format!("{} ({:.0}%)", v.label, v.confidence * 100.0))
    .then(Step::text("explain", |s: &String| {
        vec![Message::user(format!("Explain {s}"))]
    }));
    assert_eq!(chain.steps(), ["summarize", "classify", "explain"]);

    let (out, trace) = chain.run_traced(&g, "Rust ...".to_owned()).unwrap();
    assert_eq!(out, "Tech, 80%.");
    let calls = g.calls();
    assert_eq!(
        calls[1].messages[0],
        Message::user("Classify as JSON: Rust is a systems language.")
    );
    assert_eq!(calls[1].params.temperature, 0.2);
    assert_eq!(
        calls[2].messages[2].text(),
        "Your reply could not be used: the answer was rejected: confidence 1.5 is not between 0 and 1. \
         Reply again with only the corrected JSON and no other text."
    );
    assert_eq!(calls[3].messages, [Message::user("Explain tech (80%)")]);
    assert_eq!(
        calls[4].messages[2].text(),
        "Your reply could not be used: the reply is empty. Please answer again."
    );
    let names: Vec<&str> = trace.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["summarize", "classify", "explain"]);
}

#[test]
fn generator_failure_names_the_step() {
    let g = ScriptedGenerator::new(["fine"]);
    let chain = Chain::new(Step::text("one", |s: &String| {
        vec![Message::user(s.as_str())]
    }))
    .then(Step::text("two", |s: &String| {
        vec![Message::user(s.as_str())]
    }));
    let err = chain.run(&g, "x".into()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("chain step `two`: the generator failed: scripted generator"),
        "{err}"
    );
}

fn weather_tools(log: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) -> Tools {
    Tools::new()
        .add(
            serde_json::json!({"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
            move |args| {
                log.lock().unwrap().push(args.clone());
                match args["city"].as_str() {
                    Some(city) => Ok(format!("{{\"city\": \"{city}\", \"temperature\": 21}}")),
                    None => Err("`city` is required".to_owned()),
                }
            },
        )
        .add(
            serde_json::json!({"name": "fail", "parameters": {}}),
            |_| Err("the service is down".to_owned()),
        )
}

#[derive(Debug, Deserialize, PartialEq)]
struct Weather {
    city: String,
    temperature: i64,
}

fn weather_step(tools: Tools) -> Step<String, Weather> {
    Step::json("weather", |city: &String| {
        vec![Message::user(format!("Weather in {city}? Answer as JSON."))]
    })
    .tools(tools)
}

#[test]
fn tool_calls_are_answered_and_the_step_parses_the_final_reply() {
    use kiln_chat_template::ToolCallFormat;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = ScriptedGenerator::new([
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\"}}\n</tool_call>\n<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"fail\", \"arguments\": \"{}\"}</tool_call><tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>",
        "{\"city\": \"서울\", \"temperature\": 21}",
    ])
    .with_tool_format(ToolCallFormat::Hermes);
    let (out, trace) = Chain::new(weather_step(weather_tools(log.clone())))
        .run_traced(&g, "서울".to_owned())
        .unwrap();
    assert_eq!(
        out,
        Weather {
            city: "서울".into(),
            temperature: 21
        }
    );
    // The handler saw typed arguments; the second call had none.
    assert_eq!(
        *log.lock().unwrap(),
        [serde_json::json!({"city": "서울"}), serde_json::json!({})]
    );
    let calls = g.calls();
    assert_eq!(calls.len(), 3);
    assert!(
        calls.iter().all(|c| c.tools.len() == 2),
        "tools offered each round"
    );
    // Round 2 sees round 1's calls and their results, in order.
    let sent = &calls[1].messages;
    let roles: Vec<&str> = sent.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
    assert_eq!(sent[1].text(), "Let me check.");
    assert_eq!(sent[1].tool_calls.len(), 2);
    assert_eq!(sent[2].name.as_deref(), Some("get_weather"));
    assert_eq!(sent[2].tool_call_id, None, "Hermes calls carry no id");
    assert_eq!(sent[2].text(), "{\"city\": \"서울\", \"temperature\": 21}");
    assert_eq!(sent[3].text(), "error: there is no tool named `nope`");
    // Round 3: a failing handler and bad arguments are told to the model.
    let sent = &calls[2].messages;
    assert_eq!(sent.len(), 7);
    assert_eq!(sent[4].content, None, "a turn of calls only has no content");
    assert_eq!(sent[5].text(), "error: the service is down");
    assert_eq!(sent[6].text(), "error: `city` is required");
    // The trace keeps the whole exchange.
    assert_eq!(trace[0].messages.len(), 7);
    assert_eq!(trace[0].reply, "{\"city\": \"서울\", \"temperature\": 21}");
}

#[test]
fn a_model_that_keeps_calling_tools_is_stopped() {
    use kiln_chat_template::ToolCallFormat;
    let call = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}, \"id\": \"abcdefghi\"}]";
    let g = ScriptedGenerator::new([call, call, call]).with_tool_format(ToolCallFormat::Mistral);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = Chain::new(weather_step(weather_tools(log)).max_tool_rounds(2))
        .run(&g, "x".to_owned())
        .unwrap_err();
    assert!(
        matches!(&err, Error::ToolRoundsExhausted { step, rounds: 2 } if step == "weather"),
        "{err}"
    );
    // Ids of Mistral calls go back with the results.
    let sent = &g.calls()[1].messages;
    assert_eq!(sent[2].tool_call_id.as_deref(), Some("abcdefghi"));
    assert_eq!(g.calls().len(), 3);
}

#[test]
fn tools_need_names_and_a_generator_that_offers_them() {
    let g = ScriptedGenerator::new(["{}"]);
    let unnamed = Tools::new().add(serde_json::json!({"type": "function"}), |_| {
        Ok(String::new())
    });
    let err = Chain::new(weather_step(unnamed))
        .run(&g, "x".to_owned())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("step `weather`: tool 0 has no function name"),
        "{err}"
    );
    let twice = Tools::new()
        .add(serde_json::json!({"name": "a"}), |_| Ok(String::new()))
        .add(serde_json::json!({"name": "a"}), |_| Ok(String::new()));
    let err = Chain::new(weather_step(twice))
        .run(&g, "x".to_owned())
        .unwrap_err();
    assert!(err.to_string().contains("two tools are named `a`"), "{err}");
    assert!(
        g.calls().is_empty(),
        "no model call with a broken tool list"
    );

    // A generator without tool support (the trait's default) fails the step clearly.
    let plain = from_fn(|_: &[Message], _: &GenerationParams| {
        Ok(Completion::new("{}", StopReason::EndOfSequence))
    });
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = Chain::new(weather_step(weather_tools(log)))
        .run(&plain, "x".to_owned())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Generator { .. }) && err.to_string().contains("cannot offer tools"),
        "{err}"
    );
    // The scripted generator without a tool format says so too.
    let scripted = ScriptedGenerator::new(["{}"]);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = Chain::new(weather_step(weather_tools(log)))
        .run(&scripted, "x".to_owned())
        .unwrap_err();
    assert!(err.to_string().contains("no tool format set"), "{err}");
}

#[test]
fn a_malformed_call_fails_the_step_with_the_parser_error() {
    use kiln_chat_template::ToolCallFormat;
    let g = ScriptedGenerator::new(["<tool_call>{\"name\": </tool_call>"])
        .with_tool_format(ToolCallFormat::Hermes);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = Chain::new(weather_step(weather_tools(log)))
        .run(&g, "x".to_owned())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Generator { .. })
            && err.to_string().contains("malformed Hermes tool call"),
        "{err}"
    );
}
