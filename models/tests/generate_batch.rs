//! Batched generation on the tiny Llama fixture: transformers' greedy `generate` of the same
//! left-padded batch (testdata/models/tiny_llama_batch.json, scripts/reference/models_batch.py),
//! and each row equal to the prompt generated alone, with eos, stop strings, budgets and
//! seeded sampling stopping rows independently.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::ops::ControlFlow;
use std::path::Path;

use burn::backend::NdArray;
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::generate::{Generation, GenerationConfig, StopReason, generate, generate_batch};
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::weights::SafetensorsSource;

type B = NdArray;

fn tiny() -> Llama<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-llama");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let config = LlamaConfig::from_config(&config).unwrap();
    let mut src = SafetensorsSource::open(&dir).unwrap();
    Llama::load(config, &mut src, AttentionImpl::Auto, &Default::default()).unwrap()
}

fn fixture() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny_llama_batch.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Ids as text, one space-prefixed number per token.
fn decode(ids: &[u32]) -> String {
    ids.iter().map(|t| format!(" {t}")).collect()
}

fn batch(model: &Llama<B>, prompts: &[Vec<u32>], config: &GenerationConfig) -> Vec<Generation> {
    let mut streamed = vec![String::new(); prompts.len()];
    let out = generate_batch::<B, _>(
        model,
        prompts,
        config,
        &Default::default(),
        &decode,
        &mut |row, delta| {
            streamed[row].push_str(delta);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    // What was streamed is the final text of each row.
    for (g, s) in out.iter().zip(&streamed) {
        assert_eq!(&g.text, s);
    }
    out
}

fn alone(model: &Llama<B>, prompt: &[u32], config: &GenerationConfig) -> Generation {
    generate::<B, _>(
        model,
        prompt,
        config,
        &Default::default(),
        &decode,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap()
}

fn prompts(fx: &serde_json::Value) -> Vec<Vec<u32>> {
    serde_json::from_value(fx["prompts"].clone()).unwrap()
}

#[test]
fn left_padded_greedy_batch_equals_transformers() {
    let model = tiny();
    let fx = fixture();
    let prompts = prompts(&fx);
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    assert_eq!(lengths, [8, 3, 13]);
    for case in fx["cases"].as_array().unwrap() {
        let config = GenerationConfig {
            eos_token_id: case["eos_token_id"]
                .as_u64()
                .map(|t| vec![t as u32])
                .unwrap_or_default(),
            repetition_penalty: case["repetition_penalty"].as_f64().unwrap() as f32,
            ..GenerationConfig::greedy(case["max_new_tokens"].as_u64().unwrap() as usize)
        };
        let want: Vec<Vec<u32>> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let out = batch(&model, &prompts, &config);
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.tokens, want[i], "row {i}, case {case}");
            let stop = match &g.stop {
                StopReason::Eos(t) => {
                    assert_eq!(Some(*t), g.tokens.last().copied());
                    "eos"
                }
                StopReason::MaxTokens => "max_tokens",
                other => panic!("row {i}: {other:?}"),
            };
            assert_eq!(stop, case["stop"][i], "row {i}");
            assert_eq!(alone(&model, &prompts[i], &config), *g, "row {i} alone");
        }
    }
}

#[test]
fn rows_stop_on_their_own_stop_strings_and_budgets() {
    let model = tiny();
    let fx = fixture();
    let prompts = prompts(&fx);
    // Free-running greedy row 0 is " 126 101 86 126 ..."; the others never contain "86 126".
    let config = GenerationConfig {
        stop_strings: vec!["86 126".into()],
        ..GenerationConfig::greedy(12)
    };
    let out = batch(&model, &prompts, &config);
    assert_eq!(out[0].stop, StopReason::StopString("86 126".into()));
    assert_eq!(out[0].tokens, [126, 101, 86, 126]);
    assert_eq!(out[0].text, " 126 101 ");
    assert_eq!(out[1].stop, StopReason::MaxTokens);
    assert_eq!(out[2].tokens.len(), 12);
    for (p, g) in prompts.iter().zip(&out) {
        assert_eq!(alone(&model, p, &config), *g);
    }

    // `max_length` bounds prompt + output: each row gets its own budget, the 13-token prompt
    // none at all.
    let config = GenerationConfig {
        max_length: 10,
        ..GenerationConfig::default()
    };
    let out = batch(&model, &prompts, &config);
    let lens: Vec<usize> = out.iter().map(|g| g.tokens.len()).collect();
    assert_eq!(lens, [2, 7, 0]);
    assert!(out.iter().all(|g| g.stop == StopReason::MaxTokens));
    for (p, g) in prompts.iter().zip(&out) {
        assert_eq!(alone(&model, p, &config), *g);
    }
}

#[test]
fn seeded_sampling_gives_each_row_its_lone_result() {
    let model = tiny();
    let mut prompts = prompts(&fixture());
    // The same prompt twice: same seed, same sampler, same tokens.
    prompts.push(prompts[1].clone());
    let config = GenerationConfig {
        do_sample: true,
        temperature: 1.5,
        top_k: 0,
        seed: Some(11),
        ..GenerationConfig::greedy(10)
    };
    let out = batch(&model, &prompts, &config);
    for (p, g) in prompts.iter().zip(&out) {
        assert_eq!(alone(&model, p, &config), *g);
    }
    assert_eq!(out[1], out[3]);
    // Sampling at temperature 1.5 leaves the greedy path somewhere.
    let greedy = batch(&model, &prompts, &GenerationConfig::greedy(10));
    assert_ne!(
        out.iter().map(|g| &g.tokens).collect::<Vec<_>>(),
        greedy.iter().map(|g| &g.tokens).collect::<Vec<_>>()
    );
}

#[test]
fn a_break_interrupts_every_unfinished_row() {
    let model = tiny();
    let prompts = prompts(&fixture());
    let mut deltas = 0;
    let out = generate_batch::<B, _>(
        &model,
        &prompts,
        &GenerationConfig::greedy(12),
        &Default::default(),
        &decode,
        &mut |_, _| {
            deltas += 1;
            if deltas == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert!(out.iter().all(|g| g.stop == StopReason::Interrupted));
    // Step 1 gave rows 0, 1, 2 a token each; row 0's second token broke off.
    let lens: Vec<usize> = out.iter().map(|g| g.tokens.len()).collect();
    assert_eq!(lens, [2, 1, 1]);
}

#[test]
fn empty_batches_and_prompts_are_errors() {
    let model = tiny();
    let config = GenerationConfig::greedy(2);
    let run = |prompts: &[Vec<u32>]| {
        generate_batch::<B, _>(
            &model,
            prompts,
            &config,
            &Default::default(),
            &decode,
            &mut |_, _| ControlFlow::Continue(()),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(run(&[]).contains("empty batch"));
    assert!(run(&[vec![1, 2], vec![]]).contains("prompt 1"));
}
