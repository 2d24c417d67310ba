//! A scripted [`Generator`] for tests, doctests and offline examples
//! (feature `testing`).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use kiln_chat_template::{Message, ToolCallFormat};
use serde_json::Value;

use crate::{Completion, GenerationParams, Generator, GeneratorError, StopReason};

/// A [`Generator`] that plays back replies from a script and records every call.
///
/// Each call takes the next scripted reply. Stop strings are honoured the way a
/// real model would: the reply is cut at the earliest occurrence of any of
/// [`GenerationParams::stop`] and the completion reports
/// [`StopReason::StopString`]; otherwise it reports
/// [`StopReason::EndOfSequence`]. `max_new_tokens` is not emulated (there is no
/// tokenizer here). A call after the script ran out fails with a
/// [`GeneratorError`].
///
/// With [`with_tool_format`](Self::with_tool_format) it also plays a model that calls tools:
/// [`Generator::generate_with_tools`] parses each scripted reply in that format (so a reply
/// written as the model would write it, `<tool_call>{...}</tool_call>`, comes back as typed
/// calls) and records the tools offered.
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{GenerationParams, Generator, Message, StopReason};
///
/// let generator = ScriptedGenerator::new(["Paris.\nQuestion: next?"]);
/// let params = GenerationParams::default().stop(["\nQuestion:"]);
/// let reply = generator.generate(&[Message::user("Capital of France?")], &params)?;
/// assert_eq!(reply.text, "Paris.");
/// assert_eq!(reply.stop, StopReason::StopString("\nQuestion:".into()));
/// assert_eq!(generator.calls()[0].messages, vec![Message::user("Capital of France?")]);
/// assert!(generator.generate(&[], &params).is_err()); // the script is exhausted
/// # Ok::<(), kiln_prompting::GeneratorError>(())
/// ```
#[derive(Debug, Default)]
pub struct ScriptedGenerator {
    replies: Mutex<VecDeque<String>>,
    calls: Mutex<Vec<Call>>,
    tool_format: Option<ToolCallFormat>,
}

/// One recorded call to a [`ScriptedGenerator`].
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The messages the strategy sent.
    pub messages: Vec<Message>,
    /// The parameters it sent them with.
    pub params: GenerationParams,
    /// The tools offered (empty for [`Generator::generate`]).
    pub tools: Vec<Value>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the queue half-updated.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ScriptedGenerator {
    /// A generator that answers with `replies`, in order.
    pub fn new<I, S>(replies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            replies: Mutex::new(replies.into_iter().map(Into::into).collect()),
            calls: Mutex::new(Vec::new()),
            tool_format: None,
        }
    }

    /// Parses the replies to [`Generator::generate_with_tools`] in `format`.
    pub fn with_tool_format(mut self, format: ToolCallFormat) -> Self {
        self.tool_format = Some(format);
        self
    }

    /// Appends a reply to the end of the script.
    pub fn push(&self, reply: impl Into<String>) {
        lock(&self.replies).push_back(reply.into());
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// How many scripted replies are left.
    pub fn remaining(&self) -> usize {
        lock(&self.replies).len()
    }
}

impl Generator for ScriptedGenerator {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        self.next(messages, &[], params)
    }

    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        if tools.is_empty() {
            return self.generate(messages, params);
        }
        let Some(format) = self.tool_format else {
            return Err(GeneratorError::new(
                "scripted generator: tools offered, but no tool format set (with_tool_format)",
            ));
        };
        let reply = self.next(messages, tools, params)?;
        let parsed = format
            .parse(&reply.text)
            .map_err(GeneratorError::from_source)?;
        Ok(Completion::new(parsed.content, reply.stop).with_tool_calls(parsed.tool_calls))
    }
}

impl ScriptedGenerator {
    /// Records the call and plays the next reply, cut at the earliest stop string.
    fn next(
        &self,
        messages: &[Message],
        tools: &[Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        let mut calls = lock(&self.calls);
        calls.push(Call {
            messages: messages.to_vec(),
            params: params.clone(),
            tools: tools.to_vec(),
        });
        let reply = lock(&self.replies).pop_front().ok_or_else(|| {
            GeneratorError::new(format!(
                "scripted generator: the script ran out at call {}",
                calls.len()
            ))
        })?;
        let earliest = params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| reply.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        Ok(match earliest {
            Some((at, s)) => Completion::new(&reply[..at], StopReason::StopString(s.clone())),
            None => Completion::new(reply, StopReason::EndOfSequence),
        })
    }
}
