//! Prompting strategies on the real SmolLM2-135M-Instruct through `ChatPipeline`
//! (which implements `kiln_prompting::Generator`).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::PathBuf;

use burn::backend::NdArray;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use kiln_prompting::{Chain, Example, FewShot, Message, Step};
use serde::Deserialize;

fn pipeline() -> ChatPipeline<NdArray> {
    let cache = std::env::var_os("KILN_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/kiln")));
    let path = cache.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch smollm2`",
        path.display()
    );
    ChatPipeline::load(&path, &LoadOptions::default()).unwrap()
}

#[test]
fn few_shot_and_json_chain_run_on_the_real_model() {
    let model = pipeline();

    let few_shot = FewShot::new("Classify the sentiment of the review as positive or negative.")
        .examples([
            Example::new("I loved every minute of it.", "positive"),
            Example::new("A waste of money, it broke after a day.", "negative"),
            Example::new("Wonderful service and friendly staff.", "positive"),
        ]);
    let label = few_shot
        .run(&model, "The food was cold and the waiter was rude.")
        .unwrap();
    // A 135M model follows the format of the examples; whether it gets this review right is
    // not what this test is about (greedy SmolLM2-135M answers "positive").
    assert!(
        ["positive", "negative"].contains(&label.trim()),
        "{label:?}"
    );

    #[derive(Debug, Deserialize)]
    struct Capital {
        country: String,
        capital: String,
    }
    let chain = Chain::new(
        Step::json::<Capital>("capital", |country: &String| {
            vec![
                Message::system("You answer in JSON only."),
                Message::user(r#"Give the country and the capital of Germany as JSON."#),
                Message::assistant(r#"{"country": "Germany", "capital": "Berlin"}"#),
                Message::user(format!(
                    "Give the country and the capital of {country} as JSON."
                )),
            ]
        })
        .max_retries(2),
    );
    let (answer, trace) = chain.run_traced(&model, "France".to_owned()).unwrap();
    assert_eq!(trace.len(), 1);
    assert_eq!(answer.capital, "Paris");
    assert_eq!(answer.country, "France");
}
