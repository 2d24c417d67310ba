//! [`ChatTemplate`]: one model's chat template(s), compiled once.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind};

use crate::builtin::Builtin;
use crate::env::{self, Raised};
use crate::error::{Error, Result};
use crate::load::{self, Found};

/// One named template of a model (`default`, `tool_use`, `rag`, ...).
#[derive(Debug)]
pub(crate) struct Variant {
    /// The name transformers selects it by.
    pub name: String,
    /// The name it is registered under in the environment (shown in errors).
    pub key: String,
    /// The source as written (before `{% generation %}` rewriting).
    pub source: String,
    /// Whether it uses `{% generation %}`.
    pub has_generation: bool,
}

pub(crate) struct Inner {
    pub env: Environment<'static>,
    pub variants: Vec<Variant>,
}

/// A model's chat template, parsed and ready to [`apply`](ChatTemplate::apply).
///
/// A model may ship several named templates (a `tokenizer_config.json` list, or
/// `additional_chat_templates/*.jinja`); they are selected as transformers does: by name when one
/// is asked for, else `tool_use` when tools are given and such a template exists, else `default`.
/// Cloning is cheap (the compiled templates are shared).
#[derive(Clone)]
pub struct ChatTemplate {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field(
                "templates",
                &self
                    .inner
                    .variants
                    .iter()
                    .map(|v| &v.key)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Converts a minijinja error into ours, naming `template` when the error does not.
pub(crate) fn map_error(err: minijinja::Error, template: &str) -> Error {
    let line = err.line().unwrap_or(0);
    let template = err.name().unwrap_or(template).to_owned();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<Raised>() {
            return Error::Raised {
                template,
                line,
                message: raised.0.clone(),
            };
        }
        source = e.source();
    }
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    match err.kind() {
        ErrorKind::SyntaxError | ErrorKind::BadEscape => Error::Syntax {
            template,
            line,
            message,
        },
        _ => Error::Render {
            template,
            line,
            message,
        },
    }
}

impl ChatTemplate {
    /// Compiles named template sources; `label` names them in errors (`label` alone when there is
    /// one template named `default`, else `label[name]`).
    pub(crate) fn compile(label: &str, templates: Vec<(String, String)>) -> Result<Self> {
        let mut env = env::new_environment();
        let single = templates.len() == 1 && templates[0].0 == "default";
        let mut variants = Vec::with_capacity(templates.len());
        for (name, source) in templates {
            let key = if single {
                label.to_owned()
            } else {
                format!("{label}[{name}]")
            };
            let rewritten = env::rewrite_generation_tags(&source);
            let has_generation = rewritten.is_some();
            let compiled_source = rewritten.unwrap_or_else(|| source.clone());
            env.add_template_owned(key.clone(), compiled_source)
                .map_err(|e| map_error(e, &key))?;
            variants.push(Variant {
                name,
                key,
                source,
                has_generation,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner { env, variants }),
        })
    }

    /// A template from its source text; `name` identifies it in errors.
    ///
    /// This is also the way in for a GGUF file's `tokenizer.chat_template` metadata.
    ///
    /// ```
    /// use kiln_chat_template::ChatTemplate;
    /// let t = ChatTemplate::from_source("mine", "{{ messages[0].content }}").unwrap();
    /// assert_eq!(t.names(), vec!["default"]);
    /// ```
    pub fn from_source(name: impl Into<String>, source: impl Into<String>) -> Result<Self> {
        Self::compile(&name.into(), vec![("default".into(), source.into())])
    }

    /// Several named templates (as in a `tokenizer_config.json` list); `label` names them in errors.
    pub fn from_named_sources(
        label: impl Into<String>,
        templates: Vec<(String, String)>,
    ) -> Result<Self> {
        if templates.is_empty() {
            let label = label.into();
            return Err(Error::MissingTemplate {
                looked_in: vec![label],
            });
        }
        Self::compile(&label.into(), templates)
    }

    /// The template(s) of a model directory, searched as transformers does:
    /// `chat_template.jinja` (+ `additional_chat_templates/*.jinja`), `chat_template.json`, then
    /// `tokenizer_config.json`. The error lists every place searched.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let Found { origin, templates } = load::find_in_dir(dir.as_ref())?;
        Self::compile(&origin, templates)
    }

    /// The template(s) of one file: a `.jinja` source, or a `tokenizer_config.json` /
    /// `chat_template.json` carrying a `chat_template` key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let Found { origin, templates } = load::find_in_file(path.as_ref())?;
        Self::compile(&origin, templates)
    }

    /// The template(s) in an already parsed `tokenizer_config.json`; `label` names it in errors.
    pub fn from_tokenizer_config(config: &serde_json::Value, label: &str) -> Result<Self> {
        match load::templates_from_config(config, Path::new(label))? {
            Some(templates) => Self::compile(label, templates),
            None => Err(Error::MissingTemplate {
                looked_in: vec![format!("{label} (key `chat_template`)")],
            }),
        }
    }

    /// A built-in template, for models that ship none. Always chosen explicitly.
    pub fn builtin(builtin: Builtin) -> Self {
        // The built-in sources are fixed and covered by tests; compiling them cannot fail.
        match Self::from_source(builtin.name(), builtin.source()) {
            Ok(t) => t,
            Err(e) => unreachable!("built-in template {} does not compile: {e}", builtin.name()),
        }
    }

    /// The names of the templates (`["default"]` for a single template).
    pub fn names(&self) -> Vec<&str> {
        self.inner
            .variants
            .iter()
            .map(|v| v.name.as_str())
            .collect()
    }

    /// The source of the template `name`, as written.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.inner
            .variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.source.as_str())
    }

    /// Whether any of the templates uses `{% generation %}` (so assistant spans are recorded).
    pub fn has_generation(&self) -> bool {
        self.inner.variants.iter().any(|v| v.has_generation)
    }

    /// Every template's source, for scanning (end-of-turn tokens, field names).
    pub(crate) fn sources(&self) -> impl Iterator<Item = &str> {
        self.inner.variants.iter().map(|v| v.source.as_str())
    }

    /// Picks the template as transformers' `get_chat_template` does.
    pub(crate) fn select(&self, name: Option<&str>, has_tools: bool) -> Result<&Variant> {
        let variants = &self.inner.variants;
        let available = || variants.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
        let find = |n: &str| variants.iter().find(|v| v.name == n);
        if let Some(name) = name {
            return find(name).ok_or_else(|| Error::UnknownTemplateName {
                name: name.to_owned(),
                available: available(),
            });
        }
        if variants.len() == 1 {
            return Ok(&variants[0]);
        }
        if has_tools && let Some(v) = find("tool_use") {
            return Ok(v);
        }
        find("default").ok_or_else(|| Error::NoDefaultTemplate {
            available: available(),
        })
    }
}
