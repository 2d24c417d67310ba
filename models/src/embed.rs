//! Sentence embeddings: an [`Encoder`], pooling and L2 normalization, set up the way
//! sentence-transformers sets them up from a model dir (`modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`).
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use kiln_models::embed::EmbeddingPipeline;
//! use kiln_models::pipeline::LoadOptions;
//!
//! let pipeline = EmbeddingPipeline::<NdArray>::load(
//!     "all-MiniLM-L6-v2".as_ref(),
//!     &LoadOptions::default(),
//! )?;
//! let vectors = pipeline.embed(&["This is an example sentence", "Each sentence is converted"])?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok::<(), kiln_models::ModelError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

use crate::ModelError;
use crate::config::ModelConfig;
use crate::model::Encoder;
use crate::pipeline::LoadOptions;
use crate::registry::Registry;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state (`[CLS]`).
    Cls,
    /// The mean of the unpadded tokens' states.
    Mean,
}

impl FromStr for Pooling {
    type Err = ModelError;

    /// `cls` or `mean` (sentence-transformers' mode names).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            other => Err(ModelError::Config(format!(
                "pooling `{other}` is not supported (cls or mean)"
            ))),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
        })
    }
}

/// What sentence-transformers' modules say about a model dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// The pooling module's mode.
    pub pooling: Pooling,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
    /// Tokens per text at most (`sentence_bert_config.json`), special tokens included.
    pub max_seq_length: Option<usize>,
    /// Whether texts are lowercased before tokenizing (`do_lower_case`).
    pub do_lower_case: bool,
}

impl Default for EmbeddingConfig {
    /// What sentence-transformers builds for a plain transformers dir: mean pooling, no
    /// normalization, the model's own length limit.
    fn default() -> Self {
        Self {
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: None,
            do_lower_case: false,
        }
    }
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let bytes = kiln_quant::checkpoint::read_regular(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn format_err(path: &Path, reason: String) -> ModelError {
    ModelError::Format {
        file: path.to_path_buf(),
        reason,
    }
}

impl EmbeddingConfig {
    /// Reads `modules.json` and the files of its modules; [`EmbeddingConfig::default`] when the
    /// dir has no `modules.json`. Modules other than Transformer, Pooling and Normalize (Dense,
    /// ...) and pooling modes other than CLS and mean are errors naming the file.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let mut config = Self::default();
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            if let Some(st) = read_sentence_bert_config(&dir.join("sentence_bert_config.json"))? {
                (config.max_seq_length, config.do_lower_case) = st;
            }
            return Ok(config);
        }
        let modules = read_json(&modules_path)?;
        let modules = modules
            .as_array()
            .ok_or_else(|| format_err(&modules_path, "expected a list of modules".into()))?;
        for module in modules {
            let kind = module.get("type").and_then(Value::as_str).unwrap_or("");
            let sub = dir.join(module.get("path").and_then(Value::as_str).unwrap_or(""));
            match kind.rsplit('.').next().unwrap_or(kind) {
                "Transformer" => {
                    if let Some(st) =
                        read_sentence_bert_config(&sub.join("sentence_bert_config.json"))?
                    {
                        (config.max_seq_length, config.do_lower_case) = st;
                    }
                }
                "Pooling" => config.pooling = read_pooling(&sub.join("config.json"))?,
                "Normalize" => config.normalize = true,
                _ => {
                    return Err(format_err(
                        &modules_path,
                        format!(
                            "module `{kind}` is not supported (Transformer, Pooling, Normalize)"
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// `(max_seq_length, do_lower_case)` of a `sentence_bert_config.json`, when present.
fn read_sentence_bert_config(path: &Path) -> Result<Option<(Option<usize>, bool)>, ModelError> {
    if !path.is_file() {
        return Ok(None);
    }
    let v = read_json(path)?;
    let max = match v.get("max_seq_length") {
        None | Some(Value::Null) => None,
        Some(m) => Some(
            m.as_u64()
                .filter(|&m| m > 0)
                .ok_or_else(|| format_err(path, format!("max_seq_length {m} is not a length")))?
                as usize,
        ),
    };
    let lower = v
        .get("do_lower_case")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Some((max, lower)))
}

/// A Pooling module's `config.json`: `pooling_mode` (sentence-transformers 6) or the
/// `pooling_mode_*_tokens` flags of older versions.
fn read_pooling(path: &Path) -> Result<Pooling, ModelError> {
    const LEGACY: [(&str, &str); 6] = [
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
        ("pooling_mode_weightedmean_tokens", "weightedmean"),
        ("pooling_mode_lasttoken", "lasttoken"),
    ];
    if !path.is_file() {
        return Err(ModelError::MissingKey {
            path: Some(path.to_path_buf()),
            key: "pooling_mode (the Pooling module's config.json is missing)".into(),
        });
    }
    let v = read_json(path)?;
    let modes: Vec<String> = match v.get("pooling_mode") {
        Some(Value::String(m)) => vec![m.clone()],
        Some(Value::Array(ms)) => ms
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| format_err(path, "pooling_mode: expected names".into()))?,
        Some(other) => return Err(format_err(path, format!("pooling_mode {other}"))),
        None => {
            let on: Vec<String> = LEGACY
                .iter()
                .filter(|(key, _)| v.get(*key).and_then(Value::as_bool) == Some(true))
                .map(|(_, mode)| (*mode).to_owned())
                .collect();
            if on.is_empty() {
                vec!["mean".into()]
            } else {
                on
            }
        }
    };
    match modes.as_slice() {
        [one] => one.parse().map_err(|_| {
            format_err(
                path,
                format!("pooling mode `{one}` is not supported (cls or mean)"),
            )
        }),
        _ => Err(format_err(
            path,
            format!(
                "pooling modes {} concatenated are not supported (one of cls or mean)",
                modes.join(" + ")
            ),
        )),
    }
}

/// Pools `hidden` (`[batch, seq, dim]`) into `[batch, dim]`; `mask` (`[batch, seq]`, 1 = token)
/// keeps padding out of the mean, as sentence-transformers does (sum over at least 1e-9 tokens).
pub fn pool<B: Backend>(
    hidden: Tensor<B, 3>,
    mask: Tensor<B, 2, Int>,
    pooling: Pooling,
) -> Tensor<B, 2> {
    let [b, _, d] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1).reshape([b, d]),
        Pooling::Mean => {
            let mask = mask.float().unsqueeze_dim::<3>(2);
            let sum = (hidden * mask.clone()).sum_dim(1).reshape([b, d]);
            let count = mask.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
            sum / count
        }
    }
}

/// Divides each row by its L2 norm (at least 1e-12, as torch's `F.normalize`).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

fn tokenizer_err(context: impl Into<String>, e: impl fmt::Display) -> ModelError {
    ModelError::Template(kiln_chat_template::Error::Tokenizer {
        context: context.into(),
        message: e.to_string(),
    })
}

/// Texts in, sentence vectors out: tokenizer (truncating, padding per batch), encoder, pooling,
/// optional L2 normalization.
pub struct EmbeddingPipeline<B: Backend> {
    encoder: Box<dyn Encoder<B>>,
    tokenizer: tokenizers::Tokenizer,
    config: EmbeddingConfig,
    max_seq_length: usize,
    pad_id: u32,
    batch_size: usize,
    device: B::Device,
    origin: PathBuf,
}

impl<B: Backend> EmbeddingPipeline<B> {
    /// Loads an HF model dir: `config.json` (an encoder architecture), safetensors,
    /// `tokenizer.json`, and the sentence-transformers files when present.
    pub fn load(dir: &Path, options: &LoadOptions<B>) -> Result<Self, ModelError> {
        Self::load_with(dir, options, &Registry::default())
    }

    /// [`EmbeddingPipeline::load`] with the encoders of `registry` (built-ins and those other
    /// crates registered).
    pub fn load_with(
        dir: &Path,
        options: &LoadOptions<B>,
        registry: &Registry<B>,
    ) -> Result<Self, ModelError> {
        // Encoders load as the checkpoint stores them, in f32: a dtype or quantization asked
        // for is refused rather than ignored.
        if options.quantization.is_some() {
            return Err(ModelError::Input(format!(
                "{}: encoders load unquantized (LoadOptions::quantization must be None)",
                dir.display()
            )));
        }
        if options.dtype != crate::weights::FloatDtype::F32 {
            return Err(ModelError::Input(format!(
                "{}: encoders load in f32 (LoadOptions::dtype {} is not supported)",
                dir.display(),
                options.dtype
            )));
        }
        let model_config = ModelConfig::from_file(&dir.join("config.json"))?;
        let mut source = crate::weights::SafetensorsSource::open(dir)?;
        let encoder = registry.build_encoder(&model_config, &mut source, options)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| tokenizer_err(tokenizer_path.display().to_string(), e))?;
        let config = EmbeddingConfig::from_dir(dir)?;
        // sentence-transformers: the module's max_seq_length, else the smaller of the model's
        // positions and the tokenizer's model_max_length.
        let tokenizer_max = {
            let p = dir.join("tokenizer_config.json");
            if p.is_file() {
                read_json(&p)?
                    .get("model_max_length")
                    .and_then(Value::as_u64)
                    .map(|m| m as usize)
            } else {
                None
            }
        };
        let positions = encoder.max_positions();
        let max_seq_length = config
            .max_seq_length
            .or(tokenizer_max.map(|t| t.min(positions)))
            .unwrap_or(positions)
            .min(positions);
        Self::new(
            encoder,
            tokenizer,
            config,
            max_seq_length,
            options.device.clone(),
            dir,
        )
    }

    /// Assembles a pipeline from its parts; `max_seq_length` counts special tokens.
    pub fn new(
        encoder: Box<dyn Encoder<B>>,
        mut tokenizer: tokenizers::Tokenizer,
        config: EmbeddingConfig,
        max_seq_length: usize,
        device: B::Device,
        origin: &Path,
    ) -> Result<Self, ModelError> {
        if max_seq_length < 2 {
            return Err(ModelError::Config(format!(
                "max_seq_length {max_seq_length} leaves no room for a token"
            )));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| tokenizer_err("truncation", e))?;
        Ok(Self {
            encoder,
            tokenizer,
            config,
            max_seq_length,
            pad_id,
            batch_size: 32,
            device,
            origin: origin.to_path_buf(),
        })
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Pooling, normalization and text preparation in use.
    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    /// Overrides the pooling of the model dir.
    pub fn set_pooling(&mut self, pooling: Pooling) {
        self.config.pooling = pooling;
    }

    /// Turns L2 normalization on or off.
    pub fn set_normalize(&mut self, normalize: bool) {
        self.config.normalize = normalize;
    }

    /// Texts per forward pass (32 unless set; at least 1).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Tokens per text at most, special tokens included.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Length of the vectors.
    pub fn dim(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// The text as the tokenizer gets it: trimmed, lowercased when `do_lower_case`.
    fn prepare(&self, text: &str) -> String {
        let text = text.trim();
        if self.config.do_lower_case {
            text.to_lowercase()
        } else {
            text.to_owned()
        }
    }

    /// The token ids the encoder sees for `text` (special tokens added, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .tokenizer
            .encode(self.prepare(text), true)
            .map_err(|e| tokenizer_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One vector per text, in order. Texts run in batches of [`Self::batch_size`], longest
    /// first so that each batch pads little.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One forward pass over `texts`, padded to the longest.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<String> = texts.iter().map(|t| self.prepare(t)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(prepared, true)
            .map_err(|e| tokenizer_err("encode", e))?;
        let (b, s) = (
            encodings.len(),
            encodings.iter().map(|e| e.len()).max().unwrap_or(0),
        );
        if s == 0 {
            return Err(ModelError::Config(
                "the tokenizer produced no tokens (it adds no special tokens)".into(),
            ));
        }
        let mut ids = vec![i64::from(self.pad_id); b * s];
        let mut types = vec![0i64; b * s];
        let mut mask = vec![0i64; b * s];
        for (row, e) in encodings.iter().enumerate() {
            for (col, ((&id, &ty), &m)) in e
                .get_ids()
                .iter()
                .zip(e.get_type_ids())
                .zip(e.get_attention_mask())
                .enumerate()
            {
                ids[row * s + col] = i64::from(id);
                types[row * s + col] = i64::from(ty);
                mask[row * s + col] = i64::from(m);
            }
        }
        let tensor =
            |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [b, s]), &self.device);
        let mask = tensor(mask);
        let hidden = self
            .encoder
            .encode(tensor(ids), Some(tensor(types)), Some(mask.clone()))?;
        let mut pooled = pool(hidden, mask, self.config.pooling);
        if self.config.normalize {
            pooled = l2_normalize(pooled);
        }
        let d = pooled.dims()[1];
        let flat: Vec<f32> = pooled
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| ModelError::Config(format!("reading embeddings back: {e:?}")))?;
        if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!(
                "an embedding holds {}: the model's weights or activations hold non-finite \
                 values",
                flat[i]
            )));
        }
        Ok(flat.chunks_exact(d).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-embed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        dir
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    const MODULES: &str = r#"[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    ]"#;

    #[test]
    fn reads_legacy_and_new_pooling_configs() {
        let dir = temp_dir("pooling");
        write(&dir, "modules.json", MODULES);
        write(
            &dir,
            "sentence_bert_config.json",
            r#"{"max_seq_length": 128, "do_lower_case": true}"#,
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        );
        let c = EmbeddingConfig::from_dir(&dir).unwrap();
        assert_eq!(
            c,
            EmbeddingConfig {
                pooling: Pooling::Cls,
                normalize: false,
                max_seq_length: Some(128),
                do_lower_case: true
            }
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"embedding_dimension": 8, "pooling_mode": "mean"}"#,
        );
        assert_eq!(
            EmbeddingConfig::from_dir(&dir).unwrap().pooling,
            Pooling::Mean
        );
        write(&dir, "1_Pooling/config.json", r#"{"pooling_mode": "max"}"#);
        let err = EmbeddingConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("`max`") && err.contains("1_Pooling"), "{err}");
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#,
        );
        let err = EmbeddingConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("cls + mean"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn normalize_and_unknown_modules() {
        let dir = temp_dir("modules");
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens": true}"#,
        );
        let with_normalize = MODULES.replace(
            "\n    ]",
            r#", {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#,
        );
        write(&dir, "modules.json", &with_normalize);
        let c = EmbeddingConfig::from_dir(&dir).unwrap();
        assert!(c.normalize);
        assert_eq!(c.max_seq_length, None);
        let with_dense = MODULES.replace(
            "\n    ]",
            r#", {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
        );
        write(&dir, "modules.json", &with_dense);
        let err = EmbeddingConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("modules.json") && err.contains("Dense"),
            "{err}"
        );
        std::fs::remove_file(dir.join("modules.json")).unwrap();
        assert_eq!(
            EmbeddingConfig::from_dir(&dir).unwrap(),
            EmbeddingConfig::default()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mean_pooling_skips_padding_and_normalize_gives_unit_rows() {
        let device = Default::default();
        let hidden = Tensor::<B, 3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0], [1, 3, 2]),
            &device,
        );
        let mask =
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 1, 0], [1, 3]), &device);
        let mean: Vec<f32> = pool(hidden.clone(), mask.clone(), Pooling::Mean)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(mean, vec![2.0, 3.0]);
        let cls: Vec<f32> = pool(hidden, mask, Pooling::Cls)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(cls, vec![1.0, 2.0]);
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]),
            &device,
        );
        let n: Vec<f32> = l2_normalize(x).into_data().to_vec().unwrap();
        assert_eq!(n, vec![0.6, 0.8, 0.0, 0.0]);
        assert_eq!("cls".parse::<Pooling>().unwrap(), Pooling::Cls);
        assert!("max".parse::<Pooling>().is_err());
    }
}
