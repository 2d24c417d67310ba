//! Finding chat templates in model directories and config files.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Reads a file to a string.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Json> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// Named template sources found in one place, and a label for that place.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Where they came from (`tokenizer_config.json`, `chat_template.jinja`, ...).
    pub origin: String,
    /// `(name, source)`; a single template is named `default`.
    pub templates: Vec<(String, String)>,
}

/// The `chat_template` value of a `tokenizer_config.json` or `chat_template.json`: a string, or a
/// list of `{"name": ..., "template": ...}`. `Ok(None)` when the key is absent or null.
pub(crate) fn templates_from_config(
    config: &Json,
    path: &Path,
) -> Result<Option<Vec<(String, String)>>> {
    let invalid = |reason: &str| Error::InvalidConfig {
        path: path.to_owned(),
        key: "chat_template".into(),
        reason: reason.into(),
    };
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(vec![("default".into(), s.clone())])),
        Some(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let name = item.get("name").and_then(Json::as_str);
                let template = item.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => out.push((n.to_owned(), t.to_owned())),
                    _ => return Err(invalid("list entries need string `name` and `template`")),
                }
            }
            Ok(Some(out))
        }
        Some(Json::Object(map)) => {
            let mut out = Vec::with_capacity(map.len());
            for (name, t) in map {
                let t = t
                    .as_str()
                    .ok_or_else(|| invalid("template values must be strings"))?;
                out.push((name.clone(), t.to_owned()));
            }
            Ok(Some(out))
        }
        Some(_) => Err(invalid("expected a string or a list of named templates")),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Looks for templates in a model directory, in transformers' order of precedence:
/// `chat_template.jinja` (plus `additional_chat_templates/*.jinja`), then `chat_template.json`,
/// then the `chat_template` key of `tokenizer_config.json`.
pub(crate) fn find_in_dir(dir: &Path) -> Result<Found> {
    let mut looked_in = Vec::new();

    let jinja = dir.join("chat_template.jinja");
    let extra_dir = dir.join("additional_chat_templates");
    let mut templates = Vec::new();
    looked_in.push(display(&jinja));
    if jinja.is_file() {
        templates.push(("default".to_owned(), read_text(&jinja)?));
    }
    looked_in.push(display(&extra_dir.join("*.jinja")));
    if extra_dir.is_dir() {
        let entries = std::fs::read_dir(&extra_dir).map_err(|source| Error::Io {
            path: extra_dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
            .collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            templates.push((name, read_text(&p)?));
        }
    }
    if !templates.is_empty() {
        return Ok(Found {
            origin: display(&jinja),
            templates,
        });
    }

    for file in ["chat_template.json", "tokenizer_config.json"] {
        let path = dir.join(file);
        looked_in.push(format!("{} (key `chat_template`)", display(&path)));
        if path.is_file() {
            let config = read_json(&path)?;
            if let Some(templates) = templates_from_config(&config, &path)? {
                return Ok(Found {
                    origin: display(&path),
                    templates,
                });
            }
        }
    }
    Err(Error::MissingTemplate { looked_in })
}

/// Templates of one file: `.jinja` source, or a JSON config carrying `chat_template`.
pub(crate) fn find_in_file(path: &Path) -> Result<Found> {
    let is_json = path.extension().is_some_and(|x| x == "json");
    if !is_json {
        return Ok(Found {
            origin: display(path),
            templates: vec![("default".into(), read_text(path)?)],
        });
    }
    let config = read_json(path)?;
    match templates_from_config(&config, path)? {
        Some(templates) => Ok(Found {
            origin: display(path),
            templates,
        }),
        None => Err(Error::MissingTemplate {
            looked_in: vec![format!("{} (key `chat_template`)", display(path))],
        }),
    }
}
