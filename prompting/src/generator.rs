//! The [`Generator`] trait: the one thing a strategy needs from a model.

use std::fmt;

use kiln_chat_template::{Message, ToolCall};
use serde_json::Value;

/// Turns a conversation into the model's next reply.
///
/// This is the seam between prompt strategies and models: the models crate
/// implements it for a real model (render the messages with the chat template,
/// tokenize, decode), tests implement it with a script, and anything else (an
/// HTTP endpoint, a cache, a router) can implement it too.
///
/// # Contract
///
/// * `messages` is the whole conversation, oldest first. The implementation
///   renders it with its chat template and `add_generation_prompt = true`, so
///   the reply is the next assistant turn.
/// * Generation stops at the end-of-sequence token, after
///   [`GenerationParams::max_new_tokens`], or at the first occurrence of any
///   of [`GenerationParams::stop`]. [`Completion::text`] never contains the stop
///   string that ended it, and [`Completion::stop`] says why it ended.
/// * The trait is object safe: strategies take `&dyn Generator`.
///
/// # Why `&self`
///
/// `generate` takes `&self` so that one generator can serve several roles at
/// once, e.g. [`SelfAsk`](crate::SelfAsk) asking the same model both the main
/// question and its follow-ups, or a generator shared across threads behind an
/// `Arc`. A model that keeps mutable state between calls (a KV cache, a sampler's
/// random state) holds it behind interior mutability (`Mutex`, `RefCell`); that
/// is a detail of the implementation, not something every strategy should have
/// to thread through with `&mut`.
///
/// # Example
///
/// Any closure becomes a generator with [`from_fn`]:
///
/// ```
/// use kiln_prompting::{from_fn, Completion, GenerationParams, Generator, Message, StopReason};
///
/// let echo = from_fn(|messages: &[Message], _params: &GenerationParams| {
///     let last = messages.last().map(|m| m.text()).unwrap_or_default();
///     Ok(Completion::new(format!("You said: {last}"), StopReason::EndOfSequence))
/// });
/// let reply = echo.generate(&[Message::user("hi")], &GenerationParams::default())?;
/// assert_eq!(reply.text, "You said: hi");
/// # Ok::<(), kiln_prompting::GeneratorError>(())
/// ```
pub trait Generator {
    /// Generates the next assistant reply to `messages`.
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError>;

    /// Generates the next assistant reply with `tools` (JSON schemas, as transformers'
    /// `apply_chat_template(tools=...)` takes them) offered to the model: the implementation
    /// renders them through its chat template and returns the calls the model wrote, parsed, in
    /// [`Completion::tool_calls`] (and the text around them in [`Completion::text`]). The
    /// results go back as `role: tool` messages in the next call.
    ///
    /// The default offers no tools: with an empty `tools` it is [`generate`](Self::generate),
    /// otherwise an error saying the generator cannot offer tools.
    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        if tools.is_empty() {
            self.generate(messages, params)
        } else {
            Err(GeneratorError::new(
                "this generator cannot offer tools to its model (it does not implement \
                 `generate_with_tools`)",
            ))
        }
    }

    /// Wraps this generator so that `policy` rewrites every conversation before
    /// it reaches the model (see [`RolePolicy`](crate::RolePolicy)).
    fn with_role_policy(self, policy: crate::RolePolicy) -> crate::WithRolePolicy<Self>
    where
        Self: Sized,
    {
        crate::WithRolePolicy::new(self, policy)
    }
}

impl<G: Generator + ?Sized> Generator for &G {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate(messages, params)
    }

    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate_with_tools(messages, tools, params)
    }
}

impl<G: Generator + ?Sized> Generator for Box<G> {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate(messages, params)
    }

    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate_with_tools(messages, tools, params)
    }
}

impl<G: Generator + ?Sized> Generator for std::sync::Arc<G> {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate(messages, params)
    }

    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (**self).generate_with_tools(messages, tools, params)
    }
}

/// A [`Generator`] made from a closure; see [`from_fn`].
pub struct FnGenerator<F>(F);

impl<F> fmt::Debug for FnGenerator<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnGenerator")
    }
}

/// Makes a [`Generator`] from a closure with the signature of
/// [`Generator::generate`].
pub fn from_fn<F>(f: F) -> FnGenerator<F>
where
    F: Fn(&[Message], &GenerationParams) -> Result<Completion, GeneratorError>,
{
    FnGenerator(f)
}

impl<F> Generator for FnGenerator<F>
where
    F: Fn(&[Message], &GenerationParams) -> Result<Completion, GeneratorError>,
{
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (self.0)(messages, params)
    }
}

/// How to sample one reply.
///
/// Built with chained setters from [`GenerationParams::default`]:
///
/// ```
/// use kiln_prompting::GenerationParams;
/// let params = GenerationParams::default()
///     .max_new_tokens(128)
///     .temperature(0.7)
///     .stop(["\nQuestion:"]);
/// assert_eq!(params.stop, vec!["\nQuestion:".to_owned()]);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GenerationParams {
    /// Most tokens to generate (default 256).
    pub max_new_tokens: usize,
    /// Sampling temperature; `0.0` means greedy decoding (the default).
    pub temperature: f32,
    /// Nucleus sampling threshold; `1.0` (the default) disables it.
    pub top_p: f32,
    /// Keep only the `k` most likely tokens; `None` (the default) disables it.
    pub top_k: Option<usize>,
    /// Seed for the sampler, for reproducible sampling.
    pub seed: Option<u64>,
    /// Strings that end the reply; the matched string is not part of the text.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            seed: None,
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    /// Sets [`max_new_tokens`](Self::max_new_tokens).
    pub fn max_new_tokens(mut self, n: usize) -> Self {
        self.max_new_tokens = n;
        self
    }

    /// Sets [`temperature`](Self::temperature).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Sets [`top_p`](Self::top_p).
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }

    /// Sets [`top_k`](Self::top_k).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Sets [`seed`](Self::seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Replaces the stop strings.
    pub fn stop<I, S>(mut self, stop: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop = stop.into_iter().map(Into::into).collect();
        self
    }

    /// These parameters plus `extra` stop strings (duplicates dropped).
    pub(crate) fn with_extra_stops<'a>(&self, extra: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = self.clone();
        for s in extra {
            if !p.stop.iter().any(|have| have == s) {
                p.stop.push(s.to_owned());
            }
        }
        p
    }
}

/// A generated reply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Completion {
    /// The generated text, without the stop string that ended it (with tool calls: the text
    /// around them).
    pub text: String,
    /// Why generation ended.
    pub stop: StopReason,
    /// The tools the model called, parsed (only from
    /// [`Generator::generate_with_tools`]).
    pub tool_calls: Vec<ToolCall>,
}

impl Completion {
    /// A completion with `text` that ended for `stop`.
    pub fn new(text: impl Into<String>, stop: StopReason) -> Self {
        Self {
            text: text.into(),
            stop,
            tool_calls: Vec::new(),
        }
    }

    /// This completion with the model's tool calls.
    pub fn with_tool_calls(mut self, calls: Vec<ToolCall>) -> Self {
        self.tool_calls = calls;
        self
    }
}

/// Why a [`Completion`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The model produced an end-of-sequence (or end-of-turn) token.
    EndOfSequence,
    /// One of [`GenerationParams::stop`] was generated; this is the string.
    StopString(String),
    /// [`GenerationParams::max_new_tokens`] tokens were generated.
    MaxTokens,
}

/// A failure inside a [`Generator`] (or inside a user-supplied answerer).
///
/// Implementations wrap their own error with [`GeneratorError::from_source`]
/// or describe it with [`GeneratorError::new`]; strategies wrap it in
/// [`Error::Generator`](crate::Error::Generator) with the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GeneratorError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl GeneratorError {
    /// An error described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source` (its message becomes this error's message).
    pub fn from_source(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}
