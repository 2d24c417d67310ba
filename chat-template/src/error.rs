//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, rendering or tokenizing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A configuration file has a key of an unexpected shape.
    #[error("{path}: key `{key}`: {reason}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No chat template was found.
    #[error("no chat template found; looked in: {}", looked_in.join(", "))]
    MissingTemplate {
        /// Every place searched, in order (files, and keys inside them).
        looked_in: Vec<String>,
    },
    /// A set of named templates has no `default` entry and none was asked for by name.
    #[error(
        "this model has several chat templates and none is named `default`; pick one of: {}",
        available.join(", ")
    )]
    NoDefaultTemplate {
        /// The template names.
        available: Vec<String>,
    },
    /// A template was asked for by a name the model does not have.
    #[error("no chat template named `{name}`; available: {}", available.join(", "))]
    UnknownTemplateName {
        /// The name asked for.
        name: String,
        /// The template names.
        available: Vec<String>,
    },
    /// The template source does not parse.
    #[error("syntax error in template `{template}` line {line}: {message}")]
    Syntax {
        /// The template name.
        template: String,
        /// 1-based line in the template source (0 when unknown).
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// The template called `raise_exception(message)`.
    #[error("template `{template}` line {line} raised: {message}")]
    Raised {
        /// The template name.
        template: String,
        /// 1-based line of the `raise_exception` call (0 when unknown).
        line: usize,
        /// The template's own message, verbatim.
        message: String,
    },
    /// Rendering failed (an undefined value used strictly, a type error, an unknown filter...).
    #[error("error rendering template `{template}` line {line}: {message}")]
    Render {
        /// The template name.
        template: String,
        /// 1-based line in the template source (0 when unknown).
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// Rendering went past one of the template's [`Limits`](crate::Limits): the template does
    /// more work, builds more data or nests deeper than any chat template needs.
    #[error("template `{template}` line {line} exceeded its {limit} limit: {message}")]
    LimitExceeded {
        /// The template name.
        template: String,
        /// 1-based line where rendering stopped (0 when unknown).
        line: usize,
        /// Which limit.
        limit: crate::Limit,
        /// What went past it.
        message: String,
    },
    /// The template engine panicked while rendering (minijinja has a few panics on malformed
    /// templates, such as `loop.cycle()` without arguments); the panic was caught.
    #[error("template `{template}` crashed the template engine: {message}")]
    EnginePanic {
        /// The template name.
        template: String,
        /// The panic's message.
        message: String,
    },
    /// The inputs to [`crate::ChatTemplate::apply`] are inconsistent (as transformers rejects them).
    #[error("invalid chat input: {0}")]
    InvalidInput(String),
    /// `continue_final_message` could not find the final message in the rendered text.
    #[error("continue_final_message: {0}")]
    ContinueFinalMessage(String),
    /// Model output announces a tool call (`<tool_call>`, `[TOOL_CALLS]`, `Action:`, ...) that
    /// is malformed: invalid JSON, a missing name, text where the format allows none.
    #[error("malformed {format} tool call at byte {offset} of the model output: {message}")]
    ToolCall {
        /// The format parsed.
        format: crate::ToolCallFormat,
        /// Byte offset in the output where the problem starts.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// The `tokenizers` library failed.
    #[error("tokenizer {context}: {message}")]
    Tokenizer {
        /// What was being done (the file loaded, or `encode`/`decode`).
        context: String,
        /// The library's message.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
