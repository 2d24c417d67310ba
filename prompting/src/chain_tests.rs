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
