//! The error type of the GGUF layer.

use std::path::PathBuf;

use super::GgmlType;

/// Errors from reading a GGUF file, its metadata, tensors and tokenizer.
///
/// Every variant names the file and, where there is one, the metadata key or tensor involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{}: not a GGUF file (starts with {found:02x?}, expected \"GGUF\")", file.display())]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// The first bytes found (fewer than 4 if the file is shorter).
        found: Vec<u8>,
    },
    /// A GGUF version other than 2 and 3 (v1 and big-endian files are not read).
    #[error("{}: GGUF version {version} is not supported (kiln reads v2 and v3, little-endian){hint}", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version field as read little-endian.
        version: u32,
        /// A note on what the number suggests (for example a big-endian file).
        hint: String,
    },
    /// The file ends before the header, metadata or tensor table does.
    #[error("{}: truncated: {what} needs {needed} bytes at offset {offset}, the file has {len}", file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// What was being read (names the key or tensor).
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file length.
        len: u64,
    },
    /// A header field that cannot be right (counts larger than the file, ...).
    #[error("{}: bad header: {reason}", file.display())]
    BadHeader {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A metadata entry that cannot be decoded (unknown value type, invalid UTF-8, duplicate, ...).
    #[error("{}: metadata key `{key}`: {reason}", file.display())]
    BadMetadata {
        /// The file.
        file: PathBuf,
        /// The key (or `#index` when the key itself could not be read).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A required metadata key is absent.
    #[error("{}: metadata key `{key}` is missing", file.display())]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// A metadata value of another type than the caller needs.
    #[error("{}: metadata key `{key}` holds {found}, expected {expected}", file.display())]
    WrongType {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A tensor type id that is not a ggml type.
    #[error("{}: tensor `{tensor}` has unknown ggml type id {type_id}", file.display())]
    UnknownType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// The id found.
        type_id: u32,
    },
    /// A ggml type kiln reads but cannot dequantize.
    #[error("{}: tensor `{tensor}` has type {ty}, which kiln cannot dequantize (supported: {supported})", file.display())]
    UnsupportedType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The types kiln dequantizes.
        supported: String,
    },
    /// A tensor whose data lies (partly) outside the file.
    #[error("{}: tensor `{tensor}`: data bytes {start}..{end} lie outside the file ({len} bytes)", file.display())]
    TensorOutOfBounds {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// First byte (absolute offset).
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The file length.
        len: u64,
    },
    /// A tensor entry that cannot be right (rank, dims, misaligned offset, duplicate name, ...).
    #[error("{}: tensor `{tensor}`: {reason}", file.display())]
    BadTensor {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// An architecture kiln has no HF tensor-name mapping for.
    #[error("{}: architecture `{arch}` has no HF tensor-name mapping in kiln (llama, mistral, gemma, gemma2, gemma3)", file.display())]
    UnsupportedArchitecture {
        /// The file.
        file: PathBuf,
        /// `general.architecture`.
        arch: String,
    },
    /// No tensor of that name.
    #[error("{}: no tensor named `{tensor}`", file.display())]
    TensorNotFound {
        /// The file.
        file: PathBuf,
        /// The name asked for.
        tensor: String,
    },
    /// Bytes handed to [`dequantize_into`](super::dequantize_into) that do not fit the type.
    #[error("dequantize {ty}: {reason}")]
    Dequantize {
        /// The type.
        ty: GgmlType,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer metadata cannot be turned into a tokenizer.
    #[error("{}: tokenizer: {reason}", file.display())]
    Tokenizer {
        /// The file.
        file: PathBuf,
        /// What is wrong (names the key involved).
        reason: String,
    },
    /// [`unpermute_qk`](super::unpermute_qk) called with a shape that does not split into heads.
    #[error("unpermute_qk: {reason}")]
    Permute {
        /// What is wrong.
        reason: String,
    },
}
