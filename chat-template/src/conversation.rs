//! Conversations read from JSON files (what `kiln template --messages FILE.json` takes).

use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::load::read_json;

/// Messages, and optionally tools and documents, as read from a JSON file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The messages, as JSON objects (key order kept).
    pub messages: Vec<Json>,
    /// Tool definitions, when the file has a `tools` list.
    pub tools: Option<Vec<Json>>,
    /// Documents, when the file has a `documents` list.
    pub documents: Option<Vec<Json>>,
}

fn list(value: Option<&Json>, key: &str, path: &Path) -> Result<Option<Vec<Json>>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Array(items)) => Ok(Some(items.clone())),
        Some(_) => Err(Error::InvalidConfig {
            path: path.to_owned(),
            key: key.to_owned(),
            reason: "expected a list".into(),
        }),
    }
}

impl Conversation {
    /// Reads a file holding either a list of messages, or an object with `messages` (and
    /// optionally `tools` and `documents`), as in an OpenAI-style chat request.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_value(&read_json(path)?, path)
    }

    /// The same, from parsed JSON; `path` names the source in errors.
    pub fn from_value(value: &Json, path: &Path) -> Result<Self> {
        match value {
            Json::Array(messages) => Ok(Self {
                messages: messages.clone(),
                ..Self::default()
            }),
            Json::Object(map) => Ok(Self {
                messages: list(map.get("messages"), "messages", path)?.ok_or_else(|| {
                    Error::InvalidConfig {
                        path: path.to_owned(),
                        key: "messages".into(),
                        reason: "missing".into(),
                    }
                })?,
                tools: list(map.get("tools"), "tools", path)?,
                documents: list(map.get("documents"), "documents", path)?,
            }),
            _ => Err(Error::InvalidConfig {
                path: path.to_owned(),
                key: "messages".into(),
                reason: "expected a list of messages or an object with `messages`".into(),
            }),
        }
    }
}

/// Reads a JSON file holding a list (tool definitions for `--tools FILE.json`, documents, ...).
/// An object with a `tools` key is accepted too.
pub fn read_json_list(path: impl AsRef<Path>) -> Result<Vec<Json>> {
    let path = path.as_ref();
    let value = read_json(path)?;
    let items = match &value {
        Json::Object(map) => map.get("tools"),
        other => Some(other),
    };
    list(items, "tools", path)?.ok_or_else(|| Error::InvalidConfig {
        path: path.to_owned(),
        key: "tools".into(),
        reason: "expected a list".into(),
    })
}
