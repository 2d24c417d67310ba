//! Mistral, Gemma, Gemma 2 and Gemma 3 logits against transformers (fixtures from
//! scripts/reference/models_tiny.py): full passes, token-by-token decoding past the sliding
//! window, a left-padded batch with a cached continuation, and greedy generation.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use common::{B, TOLERANCE, expected, fixture};
use kiln_attention::AttentionImpl;
use kiln_models::config::ModelConfig;
use kiln_models::gemma2::{Gemma2, Gemma2Config};
use kiln_models::gemma3::{Gemma3, Gemma3Config};
use kiln_models::generate::{GenerationConfig, generate};
use kiln_models::llama::Llama;
use kiln_models::mistral;
use kiln_models::model::CausalLm;
use kiln_models::pipeline::{LoadOptions, load_model};
use kiln_models::weights::{HostTensor, SafetensorsSource, WeightSource};

const ARCHS: [&str; 4] = ["tiny-mistral", "tiny-gemma", "tiny-gemma2", "tiny-gemma3"];

fn load(name: &str, attention: AttentionImpl) -> Box<dyn CausalLm<B>> {
    let options = LoadOptions {
        attention,
        ..LoadOptions::default()
    };
    load_model(&fixture(name), &options).unwrap()
}

fn config(name: &str) -> ModelConfig {
    ModelConfig::from_file(&fixture(name).join("config.json")).unwrap()
}

fn source(name: &str) -> SafetensorsSource {
    SafetensorsSource::open(&fixture(name)).unwrap()
}

#[test]
fn full_pass_logits_equal_transformers() {
    for name in ARCHS {
        let expected = expected(&fixture(name));
        for attention in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
            let diff = common::full_pass_diff(load(name, attention).as_ref(), &expected);
            assert!(
                diff < TOLERANCE,
                "{name} ({attention}): max abs diff {diff}"
            );
        }
    }
}

#[test]
fn decoding_past_the_window_equals_the_full_pass() {
    for name in ARCHS {
        let expected = expected(&fixture(name));
        let diff = common::decode_diff(load(name, AttentionImpl::Eager).as_ref(), &expected);
        assert!(diff < TOLERANCE, "{name}: max abs diff {diff}");
    }
}

#[test]
fn left_padded_batch_equals_transformers() {
    for name in ARCHS {
        let expected = expected(&fixture(name));
        for attention in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
            let diff = common::padded_diff(load(name, attention).as_ref(), &expected);
            assert!(
                diff < TOLERANCE,
                "{name} ({attention}): max abs diff {diff}"
            );
        }
    }
}

#[test]
fn greedy_generation_equals_transformers_generate() {
    for name in ARCHS {
        let dir = fixture(name);
        let expected = expected(&dir);
        let model = load(name, AttentionImpl::Eager);
        let (got, want) = common::batch_greedy(model.as_ref(), &expected);
        assert_eq!(got, want, "{name}: batched greedy tokens");
        for g in expected["greedy"].as_array().unwrap() {
            let prompt: Vec<u32> = serde_json::from_value(g["prompt"].clone()).unwrap();
            let want: Vec<u32> = serde_json::from_value(g["tokens"].clone()).unwrap();
            let config = GenerationConfig {
                repetition_penalty: g["repetition_penalty"].as_f64().unwrap() as f32,
                ..GenerationConfig::greedy(g["max_new_tokens"].as_u64().unwrap() as usize)
            };
            let out = generate::<B, _>(
                model.as_ref(),
                &prompt,
                &config,
                &Default::default(),
                &|_| String::new(),
                &mut |_| std::ops::ControlFlow::Continue(()),
            )
            .unwrap();
            assert_eq!(out.tokens, want, "{name}: {config:?}");
        }
    }
}

/// The fixtures would not notice a missing window, soft-cap, scale or local RoPE base if those
/// barely changed the logits: each must move them well past the tolerance.
#[test]
fn window_softcap_scale_and_local_rope_all_matter() {
    let far = |name: &str, model: &dyn CausalLm<B>, what: &str| {
        let diff = common::full_pass_diff(model, &expected(&fixture(name)));
        assert!(
            diff > 1e-2,
            "{name} without {what}: max abs diff only {diff}"
        );
    };
    let eager = AttentionImpl::Eager;
    let dev = Default::default();

    let mut c = mistral::config_from_hf(&config("tiny-mistral")).unwrap();
    c.sliding_window = None;
    far(
        "tiny-mistral",
        &Llama::<B>::load(c, &mut source("tiny-mistral"), eager, &dev).unwrap(),
        "window",
    );

    let g2 = Gemma2Config::from_config(&config("tiny-gemma2")).unwrap();
    for (what, edit) in [
        (
            "window",
            (|c: &mut Gemma2Config| c.sliding_window = None) as fn(&mut Gemma2Config),
        ),
        ("attention softcap", |c| c.attn_logit_softcapping = None),
        ("final softcap", |c| c.final_logit_softcapping = None),
        ("query_pre_attn_scalar", |c| {
            c.query_pre_attn_scalar = c.head_dim as f64
        }),
    ] {
        let mut c = g2.clone();
        edit(&mut c);
        far(
            "tiny-gemma2",
            &Gemma2::<B>::load(c, &mut source("tiny-gemma2"), eager, &dev).unwrap(),
            what,
        );
    }

    let g3 = Gemma3Config::from_config(&config("tiny-gemma3")).unwrap();
    for (what, edit) in [
        (
            "window",
            (|c: &mut Gemma3Config| c.sliding_window = None) as fn(&mut Gemma3Config),
        ),
        ("local RoPE base", |c| c.rope_local_base_freq = c.rope_theta),
        ("global RoPE scaling", |c| {
            c.rope_scaling = kiln_models::nn::RopeScaling::None
        }),
    ] {
        let mut c = g3.clone();
        edit(&mut c);
        far(
            "tiny-gemma3",
            &Gemma3::<B>::load(c, &mut source("tiny-gemma3"), eager, &dev).unwrap(),
            what,
        );
    }
}

/// The tensors of a text-only checkpoint under a multimodal Gemma 3 prefix.
struct Multimodal {
    inner: SafetensorsSource,
    prefix: &'static str,
}

impl Multimodal {
    fn inner_name(&self, name: &str) -> String {
        match name.strip_prefix(self.prefix) {
            Some(rest) => format!("model{rest}"),
            None => format!("missing:{name}"),
        }
    }
}

impl WeightSource for Multimodal {
    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(&self.inner_name(name))
    }

    fn host_tensor(&mut self, name: &str) -> Result<HostTensor, kiln_models::ModelError> {
        let inner = self.inner_name(name);
        self.inner.host_tensor(&inner)
    }
}

#[test]
fn gemma3_loads_from_multimodal_checkpoint_layouts() {
    let expected = expected(&fixture("tiny-gemma3"));
    for prefix in ["language_model.model", "model.language_model"] {
        let c = Gemma3Config::from_config(&config("tiny-gemma3")).unwrap();
        let mut src = Multimodal {
            inner: source("tiny-gemma3"),
            prefix,
        };
        let model =
            Gemma3::<B>::load(c, &mut src, AttentionImpl::Eager, &Default::default()).unwrap();
        let diff = common::full_pass_diff(&model, &expected);
        assert!(diff < TOLERANCE, "{prefix}: max abs diff {diff}");
    }
}

#[test]
fn unknown_and_encoder_architectures_are_named() {
    let dir = std::env::temp_dir().join(format!("kiln-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture("tiny-gemma").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    for (model_type, needle) in [("qwen3", "`qwen3`"), ("bert", "encoder")] {
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"model_type": "{model_type}"}}"#),
        )
        .unwrap();
        let err = load_model::<B>(&dir, &LoadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(needle) && err.contains("gemma2") && err.contains("mistral"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
