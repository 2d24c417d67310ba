//! Architectures by name: how a `model_type` (`config.json`) or a GGUF `general.architecture`
//! becomes a model.
//!
//! The loaders ([`ChatPipeline`](crate::pipeline::ChatPipeline),
//! [`EmbeddingPipeline`](crate::embed::EmbeddingPipeline)) look architectures up in a
//! [`Registry`]. [`Registry::default`] holds the built-in ones; a crate outside kiln-models adds
//! its own with the `register_*` methods and passes the registry to `load_with`:
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::backend::Backend;
//! use kiln_models::llama::{Llama, LlamaConfig};
//! use kiln_models::registry::Registry;
//!
//! /// A checkpoint that is Llama under another name.
//! fn register<B: Backend>(registry: &mut Registry<B>) {
//!     registry.register_causal_lm("my_llama", |config, weights, options| {
//!         let c = LlamaConfig::from_config(config)?;
//!         Ok(Box::new(Llama::load(c, weights, options.attention, &options.device)?))
//!     });
//! }
//!
//! let mut registry = Registry::<NdArray>::default();
//! register(&mut registry);
//! assert!(registry.causal_lm_types().any(|t| t == "my_llama"));
//! assert!(registry.causal_lm_types().any(|t| t == "llama"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use burn::tensor::backend::Backend;

use crate::ModelError;
use crate::bert::{Bert, BertConfig};
use crate::config::{Architecture, ModelConfig};
use crate::gguf::ModelHints;
use crate::model::{CausalLm, Encoder};
use crate::pipeline::LoadOptions;
use crate::weights::WeightSource;

/// Builds a causal LM from a `config.json` and the checkpoint's tensors (HF names).
pub type CausalLmBuilder<B> = dyn Fn(
        &ModelConfig,
        &mut dyn WeightSource,
        &LoadOptions<B>,
    ) -> Result<Box<dyn CausalLm<B>>, ModelError>
    + Send
    + Sync;

/// Builds a causal LM from a GGUF file's metadata and its tensors (under HF names).
pub type GgufCausalLmBuilder<B> = dyn Fn(
        &ModelHints,
        &mut dyn WeightSource,
        &LoadOptions<B>,
    ) -> Result<Box<dyn CausalLm<B>>, ModelError>
    + Send
    + Sync;

/// Builds an encoder from a `config.json` and the checkpoint's tensors (HF names).
pub type EncoderBuilder<B> = dyn Fn(
        &ModelConfig,
        &mut dyn WeightSource,
        &LoadOptions<B>,
    ) -> Result<Box<dyn Encoder<B>>, ModelError>
    + Send
    + Sync;

/// Model builders keyed by `model_type` (HF dirs) or `general.architecture` (GGUF files).
pub struct Registry<B: Backend> {
    causal_lms: BTreeMap<String, Box<CausalLmBuilder<B>>>,
    gguf_causal_lms: BTreeMap<String, Box<GgufCausalLmBuilder<B>>>,
    encoders: BTreeMap<String, Box<EncoderBuilder<B>>>,
}

impl<B: Backend> fmt::Debug for Registry<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("causal_lms", &self.causal_lms.keys().collect::<Vec<_>>())
            .field(
                "gguf_causal_lms",
                &self.gguf_causal_lms.keys().collect::<Vec<_>>(),
            )
            .field("encoders", &self.encoders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<B: Backend> Default for Registry<B> {
    /// The built-in architectures.
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl<B: Backend> Registry<B> {
    /// A registry that knows no architecture.
    pub fn empty() -> Self {
        Self {
            causal_lms: BTreeMap::new(),
            gguf_causal_lms: BTreeMap::new(),
            encoders: BTreeMap::new(),
        }
    }

    /// The built-in architectures: every decoder of [`Architecture::ALL`] (built by the chat
    /// pipeline's dispatch), the GGUF architectures of
    /// [`GGUF_ARCHITECTURES`](crate::pipeline::GGUF_ARCHITECTURES), and BERT encoders.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        for (name, arch) in Architecture::ALL {
            if arch != Architecture::Bert {
                r.register_causal_lm(name, crate::pipeline::build_model::<B>);
            }
        }
        for arch in crate::pipeline::GGUF_ARCHITECTURES.split(", ") {
            r.register_gguf_causal_lm(arch, crate::pipeline::build_gguf_model::<B>);
        }
        r.register_encoder("bert", |config, weights, options| {
            let c = BertConfig::from_config(config)?;
            Ok(Box::new(Bert::load(
                c,
                weights,
                options.attention,
                &options.device,
            )?))
        });
        r
    }

    /// Registers (or replaces) the causal LM for `model_type`.
    pub fn register_causal_lm<F>(&mut self, model_type: impl Into<String>, build: F) -> &mut Self
    where
        F: Fn(
                &ModelConfig,
                &mut dyn WeightSource,
                &LoadOptions<B>,
            ) -> Result<Box<dyn CausalLm<B>>, ModelError>
            + Send
            + Sync
            + 'static,
    {
        self.causal_lms.insert(model_type.into(), Box::new(build));
        self
    }

    /// Registers (or replaces) the causal LM for GGUF files of `general.architecture`. The
    /// weights come through [`GgufSource`](crate::weights::GgufSource), so the file's tensor
    /// names must follow a layout it maps to HF names.
    pub fn register_gguf_causal_lm<F>(
        &mut self,
        architecture: impl Into<String>,
        build: F,
    ) -> &mut Self
    where
        F: Fn(
                &ModelHints,
                &mut dyn WeightSource,
                &LoadOptions<B>,
            ) -> Result<Box<dyn CausalLm<B>>, ModelError>
            + Send
            + Sync
            + 'static,
    {
        self.gguf_causal_lms
            .insert(architecture.into(), Box::new(build));
        self
    }

    /// Registers (or replaces) the encoder for `model_type`.
    pub fn register_encoder<F>(&mut self, model_type: impl Into<String>, build: F) -> &mut Self
    where
        F: Fn(
                &ModelConfig,
                &mut dyn WeightSource,
                &LoadOptions<B>,
            ) -> Result<Box<dyn Encoder<B>>, ModelError>
            + Send
            + Sync
            + 'static,
    {
        self.encoders.insert(model_type.into(), Box::new(build));
        self
    }

    /// The `model_type`s with a causal LM, sorted.
    pub fn causal_lm_types(&self) -> impl Iterator<Item = &str> {
        self.causal_lms.keys().map(String::as_str)
    }

    /// The GGUF architectures with a causal LM, sorted.
    pub fn gguf_architectures(&self) -> impl Iterator<Item = &str> {
        self.gguf_causal_lms.keys().map(String::as_str)
    }

    /// The `model_type`s with an encoder, sorted.
    pub fn encoder_types(&self) -> impl Iterator<Item = &str> {
        self.encoders.keys().map(String::as_str)
    }

    /// Whether GGUF files of `architecture` can be loaded.
    pub fn has_gguf_causal_lm(&self, architecture: &str) -> bool {
        self.gguf_causal_lms.contains_key(architecture)
    }

    /// Builds the causal LM `config.model_type` names (multimodal wrappers such as `gemma3` fall
    /// back to their text model's name).
    pub fn build_causal_lm(
        &self,
        config: &ModelConfig,
        weights: &mut dyn WeightSource,
        options: &LoadOptions<B>,
    ) -> Result<Box<dyn CausalLm<B>>, ModelError> {
        match lookup(&self.causal_lms, config) {
            Some(build) => build(config, weights, options),
            None => Err(self.unknown(config, &self.causal_lms, &self.encoders, "an encoder")),
        }
    }

    /// Builds the causal LM of a GGUF file's `general.architecture`.
    pub fn build_gguf_causal_lm(
        &self,
        hints: &ModelHints,
        weights: &mut dyn WeightSource,
        options: &LoadOptions<B>,
    ) -> Result<Box<dyn CausalLm<B>>, ModelError> {
        match self.gguf_causal_lms.get(&hints.architecture) {
            Some(build) => build(hints, weights, options),
            None => Err(ModelError::UnknownArchitecture {
                model_type: hints.architecture.clone(),
                known: format!("{} (GGUF)", names(&self.gguf_causal_lms)),
            }),
        }
    }

    /// Builds the encoder `config.model_type` names.
    pub fn build_encoder(
        &self,
        config: &ModelConfig,
        weights: &mut dyn WeightSource,
        options: &LoadOptions<B>,
    ) -> Result<Box<dyn Encoder<B>>, ModelError> {
        match lookup(&self.encoders, config) {
            Some(build) => build(config, weights, options),
            None => Err(self.unknown(config, &self.encoders, &self.causal_lms, "a causal LM")),
        }
    }

    /// The error for a `model_type` missing from `wanted`, saying when `other` has it.
    fn unknown<T: ?Sized, U: ?Sized>(
        &self,
        config: &ModelConfig,
        wanted: &BTreeMap<String, Box<T>>,
        other: &BTreeMap<String, Box<U>>,
        other_kind: &str,
    ) -> ModelError {
        let mut known = names(wanted);
        if lookup(other, config).is_some() {
            known = format!("{known}; `{}` is {other_kind}", config.model_type);
        }
        ModelError::UnknownArchitecture {
            model_type: config.model_type.clone(),
            known,
        }
    }
}

/// The entry for `config.model_type`, else for its built-in architecture's name.
fn lookup<'a, T: ?Sized>(map: &'a BTreeMap<String, Box<T>>, config: &ModelConfig) -> Option<&'a T> {
    if let Some(b) = map.get(&config.model_type) {
        return Some(b.as_ref());
    }
    let canonical = Architecture::ALL
        .iter()
        .find(|(_, a)| Some(*a) == config.architecture)
        .map(|(n, _)| *n)?;
    map.get(canonical).map(Box::as_ref)
}

fn names<T: ?Sized>(map: &BTreeMap<String, Box<T>>) -> String {
    if map.is_empty() {
        "none registered".into()
    } else {
        map.keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use serde_json::json;

    type B = NdArray;

    #[test]
    fn builtins_and_lookups() {
        let r = Registry::<B>::default();
        assert!(r.causal_lm_types().any(|t| t == "llama"));
        assert!(!r.causal_lm_types().any(|t| t == "bert"));
        assert_eq!(r.encoder_types().collect::<Vec<_>>(), ["bert"]);
        assert!(r.has_gguf_causal_lm("llama"));
        let gemma3 = ModelConfig::from_value(json!({"model_type": "gemma3"})).unwrap();
        assert!(
            lookup(&r.causal_lms, &gemma3).is_some(),
            "wrapper -> text model"
        );
        let debug = format!("{r:?}");
        assert!(
            debug.contains("\"llama\"") && debug.contains("\"bert\""),
            "{debug}"
        );
    }

    #[test]
    fn unknown_types_name_what_is_registered() {
        let r = Registry::<B>::default();
        let mut src = crate::weights::SafetensorsSource::open(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata/models/tiny-bert")
                .as_path(),
        )
        .unwrap();
        let options = LoadOptions::<B>::default();
        let mamba = ModelConfig::from_value(json!({"model_type": "mamba"})).unwrap();
        let err = r
            .build_causal_lm(&mamba, &mut src, &options)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`mamba`") && err.contains("llama"), "{err}");
        let bert = ModelConfig::from_value(json!({"model_type": "bert"})).unwrap();
        let err = r
            .build_causal_lm(&bert, &mut src, &options)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`bert` is an encoder"), "{err}");
        let llama = ModelConfig::from_value(json!({"model_type": "llama"})).unwrap();
        let err = r
            .build_encoder(&llama, &mut src, &options)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`llama` is a causal LM"), "{err}");
        let err = Registry::<B>::empty()
            .build_encoder(&bert, &mut src, &options)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("none registered"), "{err}");
    }

    #[test]
    fn registering_replaces_and_adds() {
        let mut r = Registry::<B>::empty();
        r.register_encoder("my_bert", |config, weights, options| {
            let c = BertConfig::from_config(config)?;
            Ok(Box::new(Bert::load(
                c,
                weights,
                options.attention,
                &options.device,
            )?))
        });
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-bert");
        let mut src = crate::weights::SafetensorsSource::open(&dir).unwrap();
        let mut config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        config.model_type = "my_bert".into();
        config.architecture = None;
        let encoder = r
            .build_encoder(&config, &mut src, &LoadOptions::default())
            .unwrap();
        assert_eq!(encoder.hidden_size(), 32);
    }
}
