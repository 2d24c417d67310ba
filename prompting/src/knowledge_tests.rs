use super::*;
use crate::testing::ScriptedGenerator;

const Q: &str = "Penguins have <mask> wings.";

#[test]
fn separate_sampling_uses_the_paper_prompt_and_deduplicates() {
    let g = ScriptedGenerator::new([
        "Penguins are birds.\nInput: more",
        " penguins are birds. ",
        "Birds have two wings.",
        "two",
        "Two.",
    ]);
    let gk = GeneratedKnowledge::new(3).demonstration(
        "Greece is larger than mexico.",
        "Greece is approximately 131,957 sq km, while Mexico is approximately 1,964,375 sq km.",
    );
    let out = gk.run(&g, Q).unwrap();
    assert_eq!(
        out.knowledge,
        ["Penguins are birds.", "Birds have two wings."]
    );
    assert_eq!(out.answer, "two");
    assert_eq!(out.candidates.len(), 2);
    assert_eq!(
        out.candidates[1].knowledge.as_deref(),
        Some("Birds have two wings.")
    );

    let calls = g.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(
        calls[0].messages,
        vec![Message::user(
            "Generate some knowledge about the input.\n\n\
             Input: Greece is larger than mexico.\n\
             Knowledge: Greece is approximately 131,957 sq km, while Mexico is approximately 1,964,375 sq km.\n\n\
             Input: Penguins have <mask> wings.\nKnowledge:"
        )]
    );
    assert_eq!(calls[0].messages, calls[2].messages);
    let p = &calls[0].params;
    assert_eq!((p.temperature, p.top_p, p.max_new_tokens), (1.0, 0.5, 64));
    assert_eq!(p.stop, ["\nInput:", "\n\n"]);
    assert_eq!(
        calls[3].messages,
        vec![Message::user(
            "Knowledge: Penguins are birds.\n\nQuestion: Penguins have <mask> wings."
        )]
    );
    assert_eq!(calls[3].params, GenerationParams::default());
}

#[test]
fn list_sampling_parses_markers_and_all_at_once_lists_statements() {
    let g = ScriptedGenerator::new([
        "1. Penguins are birds.\n2) Birds have two wings.\n- Penguins cannot fly.\n\n* extra",
        "Two",
    ]);
    let out = GeneratedKnowledge::new(3)
        .sampling(Sampling::List)
        .integration(Integration::AllAtOnce)
        .knowledge_params(GenerationParams::default())
        .run(&g, Q)
        .unwrap();
    assert_eq!(
        out.knowledge,
        [
            "Penguins are birds.",
            "Birds have two wings.",
            "Penguins cannot fly."
        ]
    );
    let calls = g.calls();
    assert_eq!(
        calls[0].messages[0].text(),
        "Generate some knowledge about the input. Write 3 different statements, one per line.\n\n\
         Input: Penguins have <mask> wings.\nKnowledge:"
    );
    assert_eq!(calls[0].params.stop, ["\nInput:"]);
    assert_eq!(
        calls[1].messages[0].text(),
        "Knowledge:\n- Penguins are birds.\n- Birds have two wings.\n- Penguins cannot fly.\n\n\
         Question: Penguins have <mask> wings."
    );
    assert_eq!(out.candidates.len(), 1);
    assert_eq!(out.answer, "Two");
}

#[test]
fn unaided_candidate_comes_first_and_majority_ties_go_to_the_earliest() {
    let g = ScriptedGenerator::new(["k1", "k2", "zero", "two", "Two!", "zero"]);
    let gk = GeneratedKnowledge::new(2).include_unaided(true);
    let out = gk.run(&g, Q).unwrap();
    let answers: Vec<&str> = out.candidates.iter().map(|c| c.answer.as_str()).collect();
    assert_eq!(answers, ["zero", "two", "Two!"]);
    assert_eq!(out.candidates[0].knowledge, None);
    assert_eq!(
        g.calls()[2].messages,
        vec![Message::user(format!("Question: {Q}"))]
    );
    assert_eq!(out.answer, "two");
    assert_eq!(g.remaining(), 1);

    // One vote each: the earliest answer wins.
    let g = ScriptedGenerator::new(["k1", "k2", "Yes", "no"]);
    assert_eq!(GeneratedKnowledge::new(2).run(&g, Q).unwrap().answer, "Yes");
}

#[test]
fn pick_first_and_pick_by() {
    let script = ["k1", "k2", "k3", "a", "bbb", "bb"];
    let g = ScriptedGenerator::new(script);
    let first = GeneratedKnowledge::new(3).pick_first().run(&g, Q).unwrap();
    assert_eq!(first.answer, "a");
    let g = ScriptedGenerator::new(script);
    let longest = GeneratedKnowledge::new(3)
        .pick_by(|_, c| c.answer.len() as f64)
        .run(&g, Q)
        .unwrap();
    assert_eq!(longest.answer, "bbb");
}

#[test]
fn zero_statements_is_a_config_error_and_empty_knowledge_is_malformed() {
    let g = ScriptedGenerator::new(["", "  "]);
    let err = GeneratedKnowledge::new(0).run(&g, Q).unwrap_err();
    assert_eq!(
        err.to_string(),
        "generated-knowledge: the number of knowledge statements must be at least 1"
    );
    let err = GeneratedKnowledge::new(2).run(&g, Q).unwrap_err();
    assert!(matches!(
        err,
        Error::MalformedOutput { ref expected, .. } if expected == "at least one knowledge statement"
    ));
}
