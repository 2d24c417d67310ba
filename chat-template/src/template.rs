//! [`ChatTemplate`]: one model's chat template(s), compiled once.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, Value};

use crate::builtin::Builtin;
use crate::env::{self, Raised};
use crate::error::{Error, Result};
use crate::limits::{BytesGuard, Limit, LimitHit, Limits, OutputBuffer, panic_message};
use crate::load::{self, Found};
use crate::namespace;
use crate::operators;

/// One named template of a model (`default`, `tool_use`, `rag`, ...).
#[derive(Debug, Clone)]
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

#[derive(Clone)]
pub(crate) struct Inner {
    pub env: Environment<'static>,
    pub variants: Vec<Variant>,
    pub limits: Limits,
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
    let mut limit = None;
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<Raised>() {
            return Error::Raised {
                template,
                line,
                message: raised.0.clone(),
            };
        }
        if let Some(hit) = e.downcast_ref::<LimitHit>() {
            limit = Some(hit.0);
        }
        source = e.source();
    }
    let limit = limit.or(match (err.kind(), err.detail()) {
        (ErrorKind::OutOfFuel, _) => Some(Limit::Fuel),
        (ErrorKind::InvalidOperation, Some("recursion limit exceeded")) => Some(Limit::Recursion),
        _ => None,
    });
    if let Some(limit) = limit {
        let message = match (limit, err.detail()) {
            (_, Some(detail)) if limit != Limit::Recursion => detail.to_owned(),
            (Limit::Fuel, _) => "the render did more work than its fuel pays for".to_owned(),
            _ => "macro calls, loops or blocks nest too deeply".to_owned(),
        };
        return Error::LimitExceeded {
            template,
            line,
            limit,
            message,
        };
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
        let limits = Limits::default();
        apply_limits(&mut env, &limits);
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
            let compiled_source =
                namespace::guard_namespace_sets(&compiled_source).unwrap_or(compiled_source);
            let compiled_source = operators::rewrite_operators(&compiled_source, env::syntax())
                .unwrap_or(compiled_source);
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
            inner: Arc::new(Inner {
                env,
                variants,
                limits,
            }),
        })
    }

    /// The same template(s) with other [`Limits`] on each render.
    ///
    /// ```
    /// use kiln_chat_template::{Builtin, ChatTemplate, Limits};
    /// let template = ChatTemplate::builtin(Builtin::ChatMl).with_limits(Limits {
    ///     max_output_bytes: 1 << 20,
    ///     ..Limits::default()
    /// });
    /// assert_eq!(template.limits().max_output_bytes, 1 << 20);
    /// ```
    pub fn with_limits(mut self, limits: Limits) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        apply_limits(&mut inner.env, &limits);
        inner.limits = limits;
        self
    }

    /// The [`Limits`] each render runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Renders the template `variant` with the context `ctx`, within the limits: the output
    /// buffer refuses to grow past `max_output_bytes`, and a panic of the engine becomes
    /// [`Error::EnginePanic`].
    pub(crate) fn render_bounded(&self, variant: &Variant, ctx: Value) -> Result<String> {
        let key = &variant.key;
        let limits = &self.inner.limits;
        let _bytes = BytesGuard::set(limits.max_output_bytes);
        let mut out = OutputBuffer::new(variant.source.len(), limits.max_output_bytes);
        // minijinja panics on a few malformed templates (`loop.cycle()` without arguments divides
        // by zero), and a downloaded template must not take the process down: the panic is
        // caught here. Nothing of the environment is left half-changed by it (a render only
        // reads the environment), so later renders are unaffected. This needs unwinding panics;
        // a binary built with `panic = "abort"` still aborts.
        let rendered = panic::catch_unwind(AssertUnwindSafe(|| {
            let template = self.inner.env.get_template(key)?;
            template.render_captured_to(ctx, &mut out).map(drop)
        }));
        match rendered {
            Ok(Ok(())) => {}
            Ok(Err(e)) if out.exceeded => {
                return Err(Error::LimitExceeded {
                    template: key.clone(),
                    line: e.line().unwrap_or(0),
                    limit: Limit::OutputSize,
                    message: format!(
                        "the prompt is larger than {} bytes",
                        limits.max_output_bytes
                    ),
                });
            }
            Ok(Err(e)) => return Err(map_error(e, key)),
            Err(payload) => {
                return Err(Error::EnginePanic {
                    template: key.clone(),
                    message: panic_message(payload.as_ref()),
                });
            }
        }
        // minijinja writes whole `str`s, so the bytes are UTF-8.
        String::from_utf8(out.buf).map_err(|e| Error::Render {
            template: key.clone(),
            line: 0,
            message: e.to_string(),
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

/// Configures `env` for `limits` (the output size is enforced by [`ChatTemplate::render_bounded`]).
fn apply_limits(env: &mut Environment<'static>, limits: &Limits) {
    env.set_fuel(limits.fuel);
    env.set_recursion_limit(limits.max_recursion);
}
