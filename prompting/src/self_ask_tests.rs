use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::testing::ScriptedGenerator;
use crate::{Completion, StopReason, from_fn};

fn one_demo() -> SelfAskExample {
    SelfAskExample::new(
        "Who lived longer, Muhammad Ali or Alan Turing?",
        [
            ("How old was Muhammad Ali when he died?", "74 years."),
            ("How old was Alan Turing when he died?", "41 years."),
        ],
        "Muhammad Ali",
    )
}

#[test]
fn demonstrations_are_alternating_turns() {
    let sa = SelfAsk::new()
        .instruction("Answer by asking yourself questions.")
        .demonstrations([
            one_demo(),
            SelfAskExample::new("Is water wet?", Vec::<(String, String)>::new(), "Yes"),
        ]);
    assert_eq!(
        sa.messages("Q?"),
        vec![
            Message::system("Answer by asking yourself questions."),
            Message::user("Question: Who lived longer, Muhammad Ali or Alan Turing?"),
            Message::assistant(
                "Are follow up questions needed here: Yes.\nFollow up: How old was Muhammad Ali when he died?"
            ),
            Message::user("Intermediate answer: 74 years."),
            Message::assistant("Follow up: How old was Alan Turing when he died?"),
            Message::user("Intermediate answer: 41 years."),
            Message::assistant("So the final answer is: Muhammad Ali"),
            Message::user("Question: Is water wet?"),
            Message::assistant(
                "Are follow up questions needed here: No.\nSo the final answer is: Yes"
            ),
            Message::user("Question: Q?"),
        ]
    );
    assert_eq!(SelfAsk::new().messages("Q?").len(), 13);
}

#[test]
fn model_answers_its_own_follow_ups_in_fresh_calls() {
    let g = ScriptedGenerator::new([
        "Are follow up questions needed here: Yes.\nFollow up: What is the capital of France?",
        "The capital of France is Paris.\nIt is large.",
        "So the final answer is: Paris",
    ]);
    let out = SelfAsk::new()
        .demonstrations([one_demo()])
        .params(GenerationParams::default().stop(["</s>"]))
        .run(
            &g,
            "What is the capital of the country where the Eiffel Tower is?",
        )
        .unwrap();
    assert_eq!(out.answer, "Paris");
    assert!(!out.forced);
    assert_eq!(
        out.follow_ups,
        [FollowUp {
            question: "What is the capital of France?".into(),
            answer: "The capital of France is Paris. It is large.".into(),
        }]
    );
    let calls = g.calls();
    assert_eq!(
        calls[0].params.stop,
        ["</s>", "Intermediate answer:", "\nQuestion:"]
    );
    assert_eq!(
        calls[1].messages,
        [Message::user("What is the capital of France?")]
    );
    assert_eq!(calls[1].params.stop, ["</s>"]);
    assert_eq!(calls[2].messages.len(), 6 + 3);
    assert_eq!(
        calls[2].messages[8],
        Message::user("Intermediate answer: The capital of France is Paris. It is large.")
    );
    assert_eq!(out.transcript.len(), 4);
    assert_eq!(
        out.transcript[3],
        Message::assistant("So the final answer is: Paris")
    );
}

#[test]
fn no_follow_up_needed() {
    let g = ScriptedGenerator::new([
        "Are follow up questions needed here: No.\nSo the final answer is: 4.",
    ]);
    let out = SelfAsk::new().run(&g, "What is 2 + 2?").unwrap();
    assert_eq!(out.answer, "4");
    assert!(out.follow_ups.is_empty());
    assert_eq!(g.calls().len(), 1);
}

#[test]
fn depth_limit_demands_the_final_answer() {
    let g = ScriptedGenerator::new([
        "Are follow up questions needed here: Yes.\nFollow up: a?",
        "Follow up: b?",
        "Paris.",
    ]);
    let out = SelfAsk::new()
        .demonstrations([])
        .max_depth(1)
        .answer_with(|q| Ok(format!("answer to {q}")))
        .run(&g, "q")
        .unwrap();
    assert!(out.forced);
    assert_eq!(out.answer, "Paris");
    assert_eq!(out.follow_ups.len(), 1);
    let last = g.calls()[2].messages.clone();
    assert_eq!(
        last[3..],
        [
            Message::assistant("Follow up: b?"),
            Message::user(
                "No more follow up questions. Give your final answer now.\nSo the final answer is:"
            ),
        ]
    );
}

#[test]
fn a_forced_answer_that_is_another_follow_up_is_malformed() {
    let g = ScriptedGenerator::new(["Follow up: a?", "Follow up: b?"]);
    let err = SelfAsk::new().max_depth(0).run(&g, "q").unwrap_err();
    assert_eq!(
        err.to_string(),
        "self-ask: expected an answer after `So the final answer is:`, but the model replied \"Follow up: b?\""
    );
}

#[test]
fn reply_without_markers_is_malformed() {
    let g = ScriptedGenerator::new(["I think it is Paris."]);
    let err = SelfAsk::new().run(&g, "q").unwrap_err();
    assert_eq!(
        err.to_string(),
        "self-ask: expected `Follow up: ...` or `So the final answer is: ...`, \
         but the model replied \"I think it is Paris.\""
    );
}

#[test]
fn output_past_the_stop_string_is_ignored_when_the_generator_ignores_stops() {
    let n = AtomicUsize::new(0);
    let careless = from_fn(move |_: &[Message], _: &GenerationParams| {
        let text = match n.fetch_add(1, Ordering::SeqCst) {
            0 => {
                "Follow up: Who wrote Hamlet?\nIntermediate answer: Marlowe\nSo the final answer is: wrong"
            }
            _ => "So the final answer is: 1564",
        };
        Ok(Completion::new(text, StopReason::EndOfSequence))
    });
    let out = SelfAsk::new()
        .answer_with(|_| Ok("William Shakespeare".into()))
        .run(&careless, "When was the author of Hamlet born?")
        .unwrap();
    assert_eq!(out.answer, "1564");
    assert_eq!(out.follow_ups[0].answer, "William Shakespeare");
    assert_eq!(
        out.transcript[1],
        Message::assistant("Follow up: Who wrote Hamlet?")
    );
}

#[test]
fn answerer_errors_name_the_follow_up() {
    let g = ScriptedGenerator::new(["Follow up: Who?"]);
    let err = SelfAsk::new()
        .answer_with(|_| Err(GeneratorError::new("search is down")))
        .run(&g, "q")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "self-ask: answering follow-up \"Who?\": the generator failed: search is down"
    );
}
