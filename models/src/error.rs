//! The error type of kiln-models.

use std::path::{Path, PathBuf};

/// Errors of kiln-models; each names the file, key or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file that does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A required key is missing.
    #[error("{}missing key `{key}`", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    MissingKey {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The key.
        key: String,
    },
    /// A `model_type` no registered architecture handles.
    #[error("unknown architecture `{model_type}` (known: {known})")]
    UnknownArchitecture {
        /// The `model_type` found.
        model_type: String,
        /// The known ones.
        known: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("{}: missing tensor `{tensor}`", file.display())]
    MissingTensor {
        /// The checkpoint.
        file: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// A tensor whose shape is not what the config says.
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", file.display())]
    ShapeMismatch {
        /// The checkpoint.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What the config implies.
        expected: Vec<usize>,
        /// What the file holds.
        found: Vec<usize>,
    },
    /// A tensor dtype kiln cannot convert.
    #[error("{}: tensor `{tensor}` has unsupported dtype {dtype}", file.display())]
    UnsupportedDtype {
        /// The checkpoint.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A malformed or truncated file.
    #[error("{}: {reason}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF file error (names the file and key or tensor).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A chat was asked of a model that has no chat template (a base model).
    #[error(
        "{}: this model has no chat template (a base model): complete plain text instead \
         (`kiln generate`, `ChatPipeline::complete`), or give it a template (`--template FILE`)",
        origin.display()
    )]
    NoChatTemplate {
        /// The model dir or file.
        origin: PathBuf,
    },
    /// A chat template or tokenizer error.
    #[error(transparent)]
    Template(#[from] kiln_chat_template::Error),
    /// A config value kiln cannot use.
    #[error("invalid config: {0}")]
    Config(String),
    /// An input the model cannot take (too long, non-finite results, ...).
    #[error("{0}")]
    Input(String),
}

impl ModelError {
    /// Attaches the file to errors that lack one.
    pub(crate) fn in_file(self, file: &Path) -> Self {
        match self {
            ModelError::MissingKey { path: None, key } => ModelError::MissingKey {
                path: Some(file.to_path_buf()),
                key,
            },
            other => other,
        }
    }
}
