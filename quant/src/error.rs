//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in kiln-quant.
///
/// Variants name the tensor, key, file or value involved so that a message alone tells what
/// to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// A blocksize that bitsandbytes does not support.
    #[error(
        "invalid blocksize {blocksize}: 4-bit blocksizes are 32, 64, 128, 256, 512, 1024, 2048 or 4096"
    )]
    InvalidBlocksize {
        /// The rejected blocksize.
        blocksize: usize,
    },
    /// A blockwise 8-bit blocksize of zero.
    #[error("invalid 8-bit blocksize {blocksize}: must be positive")]
    InvalidBlocksize8 {
        /// The rejected blocksize.
        blocksize: usize,
    },
    /// The input holds a NaN or an infinity.
    #[error(
        "{what}: non-finite value {value} at flat index {index}; quantization needs finite inputs"
    )]
    NonFinite {
        /// What was being quantized (tensor name or operation).
        what: String,
        /// Flat (row-major) index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A buffer's length does not match the shape it was given with.
    #[error("{what}: expected {expected} elements, got {actual}")]
    LengthMismatch {
        /// What was being checked.
        what: String,
        /// Length implied by the shape.
        expected: usize,
        /// Length supplied.
        actual: usize,
    },
    /// A shape that cannot be used here.
    #[error("{what}: unsupported shape {shape:?} ({reason})")]
    BadShape {
        /// What was being checked.
        what: String,
        /// The shape.
        shape: Vec<usize>,
        /// Why it is rejected.
        reason: String,
    },
    /// An invalid `QuantConfig` / `quantization_config`.
    #[error("invalid quantization config: {0}")]
    InvalidConfig(String),
    /// A tensor of a checkpoint is missing.
    #[error("tensor `{name}` is missing{}", in_file(.file))]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The file or directory searched, if known.
        file: Option<PathBuf>,
    },
    /// A checkpoint tensor has the wrong dtype or shape.
    #[error("tensor `{name}`: {reason}")]
    BadTensor {
        /// The tensor name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `quant_state.bitsandbytes__*` JSON of a 4-bit tensor is malformed.
    #[error("tensor `{name}`: bad quant_state JSON: {reason}")]
    BadQuantState {
        /// The quant_state tensor name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A safetensors file is malformed.
    #[error("{}: malformed safetensors file: {reason}", .path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON file (config.json, index) is malformed.
    #[error("{}: {reason}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A device kernel cannot run: unsupported dtype or shape, or a runtime failure.
    #[error("device kernel: {0}")]
    Device(String),
    /// An I/O error on a file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn in_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    }
}

impl QuantError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QuantError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_tensor(name: impl Into<String>, reason: impl Into<String>) -> Self {
        QuantError::BadTensor {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = QuantError> = std::result::Result<T, E>;
