//! A prompt chain: news context -> key facts -> question/answer pairs as JSON.
//!
//! The second step demands a JSON array parsed into `Vec<QaPair>`; the scripted
//! model first forgets a field, is told exactly what was wrong, and corrects itself.
//! `cargo run -p kiln-prompting --example qa_json_chain --features testing`.
//! To use a real model, replace the one line marked below with any `Generator`.

use kiln_prompting::testing::ScriptedGenerator;
use kiln_prompting::{Chain, Generator, Message, Step};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct QaPair {
    question: String,
    answer: String,
}

fn main() -> Result<(), kiln_prompting::Error> {
    // The one line to change for a real model.
    let model: Box<dyn Generator> = Box::new(scripted());

    let chain = Chain::new(Step::text("facts", |news: &String| {
        vec![
            Message::system("You are a careful news editor."),
            Message::user(format!(
                "List the key facts of this news story, one per line:\n\n{news}"
            )),
        ]
    }))
    .then(
        Step::json::<Vec<QaPair>>("qa", |facts: &String| {
            vec![Message::user(format!(
                "Write three question/answer pairs about these facts. Reply with a JSON array \
                 of objects with the keys \"question\" and \"answer\".\n\nFacts:\n{facts}"
            ))]
        })
        .validate(|pairs| match pairs.len() {
            3 => Ok(()),
            n => Err(format!("expected 3 pairs, got {n}")),
        })
        .max_retries(2),
    );

    let news = "The national weather service said on Tuesday that the coastal storm will reach \
                the southern islands by Thursday night, bringing up to 200 millimetres of rain. \
                Ferry services to the islands are suspended from Wednesday noon."
        .to_owned();
    let (pairs, trace) = chain.run_traced(&model, news)?;
    for step in &trace {
        println!(
            "step `{}`: {} rejected attempt(s)",
            step.name,
            step.rejected.len()
        );
        for a in &step.rejected {
            println!("  rejected: {}", a.problem);
        }
    }
    for p in pairs {
        println!("Q: {}\nA: {}\n", p.question, p.answer);
    }
    Ok(())
}

fn scripted() -> ScriptedGenerator {
    ScriptedGenerator::new([
        "- A coastal storm reaches the southern islands by Thursday night.\n\
         - Up to 200 mm of rain is expected.\n\
         - Ferries to the islands are suspended from Wednesday noon.",
        "Here are the pairs:\n```json\n[\n  {\"question\": \"When will the storm reach the islands?\"},\n\
         {\"question\": \"How much rain is expected?\", \"answer\": \"Up to 200 millimetres.\"}\n]\n```",
        "```json\n[\n\
         {\"question\": \"When will the storm reach the southern islands?\", \"answer\": \"By Thursday night.\"},\n\
         {\"question\": \"How much rain is expected?\", \"answer\": \"Up to 200 millimetres.\"},\n\
         {\"question\": \"When are ferry services suspended?\", \"answer\": \"From Wednesday noon.\"}\n]\n```",
    ])
}
