use super::*;
use crate::testing::ScriptedGenerator;

fn wei_examples() -> Vec<CotExample> {
    vec![CotExample::new(
        "Roger has 5 tennis balls. He buys 2 more cans of tennis balls. Each can has 3 tennis balls. How many tennis balls does he have now?",
        "Roger started with 5 balls. 2 cans of 3 tennis balls each is 6 tennis balls. 5 + 6 = 11.",
        "11",
    )]
}

#[test]
fn zero_shot_makes_two_calls_with_kojima_triggers() {
    let g = ScriptedGenerator::new(["Step 1: 3 + 4 = 7.\nStep 2: 7 * 2 = 14.", "14 apples."]);
    let cot = ChainOfThought::zero_shot()
        .system("You are a careful tutor.")
        .answer_kind(AnswerKind::Number)
        .params(GenerationParams::default().max_new_tokens(300));
    let out = cot.run(&g, "What is (3 + 4) * 2?").unwrap();
    assert_eq!(
        out,
        Reasoned {
            reasoning: "Step 1: 3 + 4 = 7.\nStep 2: 7 * 2 = 14.".into(),
            answer: "14".into(),
        }
    );
    let calls = g.calls();
    assert_eq!(calls.len(), 2);
    let first = vec![
        Message::system("You are a careful tutor."),
        Message::user("Q: What is (3 + 4) * 2?\nA: Let's think step by step."),
    ];
    assert_eq!(calls[0].messages, first);
    assert_eq!(calls[0].params.max_new_tokens, 300);
    let mut second = first;
    second.push(Message::assistant(
        "Step 1: 3 + 4 = 7.\nStep 2: 7 * 2 = 14.",
    ));
    second.push(Message::user("Therefore, the answer (arabic numerals) is"));
    assert_eq!(calls[1].messages, second);
    assert_eq!(calls[1].params.max_new_tokens, 32);
}

#[test]
fn few_shot_renders_worked_examples_and_parses_the_last_marker() {
    let g = ScriptedGenerator::new([
        "The cafeteria had 23 apples. They used 20, so 23 - 20 = 3. Not the answer is 5! \
         They bought 6 more, so 3 + 6 = 9. the answer is 9.\nQ: next question",
    ]);
    let cot = ChainOfThought::few_shot(wei_examples()).answer_kind(AnswerKind::Number);
    let q = "The cafeteria had 23 apples. If they used 20 to make lunch and bought 6 more, how many apples do they have?";
    let out = cot.run(&g, q).unwrap();
    assert_eq!(out.answer, "9");
    assert_eq!(
        out.reasoning,
        "The cafeteria had 23 apples. They used 20, so 23 - 20 = 3. Not the answer is 5! \
         They bought 6 more, so 3 + 6 = 9."
    );
    assert_eq!(
        g.calls()[0].messages,
        vec![
            Message::user(format!("Q: {}", wei_examples()[0].question)),
            Message::assistant(
                "Roger started with 5 balls. 2 cans of 3 tennis balls each is 6 tennis balls. \
                 5 + 6 = 11. The answer is 11."
            ),
            Message::user(format!("Q: {q}")),
        ]
    );
    assert_eq!(g.calls().len(), 1);
}

#[test]
fn missing_marker_is_malformed_output() {
    let g = ScriptedGenerator::new(["I am not sure how to solve this."]);
    let err = ChainOfThought::few_shot(wei_examples())
        .run(&g, "q")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "chain-of-thought: answer marker: expected reasoning ending with `The answer is ...`, \
         but the model replied \"I am not sure how to solve this.\""
    );
}

#[test]
fn marker_or_follow_up_falls_back_to_a_second_call() {
    let g = ScriptedGenerator::new(["Paris is the capital of France.", " Paris."]);
    let out = ChainOfThought::few_shot(Vec::new())
        .extraction(Extraction::MarkerOrFollowUp)
        .run(&g, "What is the capital of France?")
        .unwrap();
    assert_eq!(out.answer, "Paris");
    assert_eq!(out.reasoning, "Paris is the capital of France.");
    assert_eq!(
        g.calls()[1].messages.last().unwrap(),
        &Message::user("Therefore, the answer is")
    );
}

#[test]
fn multiple_choice_uses_the_range_trigger_and_a_standalone_letter() {
    let g = ScriptedGenerator::new(["All answers But one are wrong.", " (C) because A is wrong."]);
    let out = ChainOfThought::zero_shot()
        .answer_kind(AnswerKind::Choice("ABCDE".into()))
        .run(&g, "Which? Answer Choices: (A) 1 (B) 2 (C) 3 (D) 4 (E) 5")
        .unwrap();
    assert_eq!(out.answer, "C");
    assert_eq!(
        g.calls()[1].messages.last().unwrap().text(),
        "Therefore, among A through E, the answer is"
    );
}

#[test]
fn an_answer_without_a_number_is_malformed() {
    let g = ScriptedGenerator::new(["Some reasoning.", "unknown"]);
    let err = ChainOfThought::zero_shot()
        .answer_kind(AnswerKind::Number)
        .run(&g, "q")
        .unwrap_err();
    assert!(matches!(
        &err,
        Error::MalformedOutput { step, expected, reply }
            if step == "chain-of-thought: answer extraction"
                && expected == "a number in the answer"
                && reply == "unknown"
    ));
}

#[test]
fn generator_errors_name_the_step() {
    let g = ScriptedGenerator::new(["reasoning only"]);
    let err = ChainOfThought::zero_shot().run(&g, "q").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("chain-of-thought: answer extraction: the generator failed"),
        "{err}"
    );
}
