//! An English teacher answering a learner by self-ask: the model asks itself
//! follow-up questions, and a small grammar reference answers them.
//!
//! `cargo run -p kiln-prompting --example english_teacher_self_ask --features testing`.
//! To use a real model, replace the one line marked below with any `Generator`.

use kiln_prompting::testing::ScriptedGenerator;
use kiln_prompting::{Generator, GeneratorError, SelfAsk, SelfAskExample};

/// The "search engine" of this example: a tiny grammar reference.
fn grammar_reference(question: &str) -> Result<String, GeneratorError> {
    let q = question.to_lowercase();
    let entry = if q.contains("past participle") && q.contains("go") {
        "The past participle of \"go\" is \"gone\"; \"went\" is the simple past."
    } else if q.contains("present perfect") {
        "The present perfect is \"have/has\" + past participle, e.g. \"I have eaten\"."
    } else if q.contains("past participle") && q.contains("eat") {
        "The past participle of \"eat\" is \"eaten\"; \"ate\" is the simple past."
    } else {
        return Err(GeneratorError::new(format!(
            "no reference entry for {question:?}"
        )));
    };
    Ok(entry.to_owned())
}

fn main() -> Result<(), kiln_prompting::Error> {
    // The one line to change for a real model.
    let model: Box<dyn Generator> = Box::new(scripted());

    let teacher = SelfAsk::new()
        .instruction(
            "You are a patient English teacher. Break each learner question into small \
             follow-up questions before you answer.",
        )
        .demonstrations([SelfAskExample::new(
            "Is \"She has ate lunch\" correct?",
            [
                (
                    "How is the present perfect formed?",
                    "The present perfect is \"have/has\" + past participle.",
                ),
                (
                    "What is the past participle of \"eat\"?",
                    "It is \"eaten\".",
                ),
            ],
            "No. Say \"She has eaten lunch.\"",
        )])
        .answer_with(grammar_reference)
        .max_depth(3);

    let out = teacher.run(&model, "Is \"I have went to London\" correct?")?;
    for m in &out.transcript {
        println!("[{}] {}", m.role, m.text());
    }
    println!(
        "\nfinal answer: {} (follow-ups: {})",
        out.answer,
        out.follow_ups.len()
    );
    Ok(())
}

fn scripted() -> ScriptedGenerator {
    ScriptedGenerator::new([
        "Are follow up questions needed here: Yes.\nFollow up: How is the present perfect formed?",
        "Follow up: What is the past participle of \"go\"?",
        "So the final answer is: No. Say \"I have gone to London\" (or \"I went to London\").",
    ])
}
