//! Tool calls in model output: the formats chat templates teach models, and their parsers.
//!
//! A template that accepts `tools` tells the model how to call them; [`ToolCallFormat::detect`]
//! reads that from the template source, and [`ToolCallFormat::parse`] splits the generated text
//! into its prose and its [`ToolCall`]s, ready to go back into the conversation as an assistant
//! [`Message`].

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::message::{FunctionCall, Message, ToolCall};
use crate::template::ChatTemplate;

/// How a model family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ToolCallFormat {
    /// Hermes 2 Pro / Hermes 3, Qwen 2.5 and 3: one
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block per call.
    Hermes,
    /// Llama 3.1 - 3.3: a JSON object `{"name": ..., "parameters": {...}}`, after
    /// `<|python_tag|>` or alone; several separated by `;`.
    Llama3Json,
    /// Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]`, or (newer
    /// tokenizers) `[TOOL_CALLS]name[ARGS]{...}`, optionally `name[CALL_ID]id[ARGS]{...}`, repeated
    /// per call.
    Mistral,
    /// Command-R / R+: ``Action: ```json [{"tool_name": ..., "parameters": {...}}] ``` ``; Command
    /// R7B: `<|START_ACTION|>[{"tool_call_id": ..., "tool_name": ..., "parameters": {...}}]<|END_ACTION|>`.
    CommandR,
}

/// Model output split into its text and its tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedOutput {
    /// The text outside the tool calls, trimmed (the whole output when there is no call).
    pub content: String,
    /// The calls, in order.
    pub tool_calls: Vec<ToolCall>,
}

impl ParsedOutput {
    /// The assistant message that carries this output (no `content` when it is empty and there
    /// are calls), to append to the conversation before the `tool` results.
    pub fn into_message(self) -> Message {
        let mut message = Message::assistant(self.content);
        if !self.tool_calls.is_empty() && message.text().is_empty() {
            message.content = None;
        }
        message.tool_calls = self.tool_calls;
        message
    }
}

impl fmt::Display for ToolCallFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ToolCallFormat::Hermes => "Hermes",
            ToolCallFormat::Llama3Json => "Llama 3 JSON",
            ToolCallFormat::Mistral => "Mistral",
            ToolCallFormat::CommandR => "Command-R",
        })
    }
}

impl ToolCallFormat {
    /// The format the template teaches, read from its source (the `tool_use` template when
    /// the model has several); `None` when the source names none of the formats.
    ///
    /// ```
    /// use kiln_chat_template::{ChatTemplate, ToolCallFormat};
    /// let template = ChatTemplate::from_source(
    ///     "t",
    ///     "{% for m in messages %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}{% endfor %}",
    /// )
    /// .unwrap();
    /// assert_eq!(ToolCallFormat::detect(&template), Some(ToolCallFormat::Hermes));
    /// ```
    pub fn detect(template: &ChatTemplate) -> Option<Self> {
        let preferred = template.select(None, true).ok().map(|v| v.source.as_str());
        preferred
            .into_iter()
            .chain(template.sources())
            .find_map(Self::detect_source)
    }

    /// The format a template source teaches.
    fn detect_source(source: &str) -> Option<Self> {
        if source.contains("[TOOL_CALLS]") {
            Some(Self::Mistral)
        } else if source.contains("<|START_ACTION|>")
            || (source.contains("Action:") && source.contains("tool_name"))
        {
            Some(Self::CommandR)
        } else if source.contains("<tool_call>") {
            Some(Self::Hermes)
        } else if source.contains("<|python_tag|>")
            || (source.contains("<|start_header_id|>") && source.contains("\"parameters\""))
        {
            Some(Self::Llama3Json)
        } else {
            None
        }
    }

    /// Splits model output (decoded with its special tokens) into text and tool calls.
    ///
    /// Text without a call gives no calls; a call that is announced (`<tool_call>`,
    /// `[TOOL_CALLS]`, `Action:`, `<|python_tag|>`, ...) but malformed is an
    /// [`Error::ToolCall`] saying where and why.
    ///
    /// ```
    /// use kiln_chat_template::ToolCallFormat;
    /// let out = ToolCallFormat::Hermes
    ///     .parse("Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>")
    ///     .unwrap();
    /// assert_eq!(out.content, "Checking.");
    /// assert_eq!(out.tool_calls[0].function.name, "get_weather");
    /// assert_eq!(out.tool_calls[0].function.arguments["city"], "Paris");
    /// ```
    pub fn parse(self, output: &str) -> Result<ParsedOutput> {
        let parser = Parser {
            format: self,
            output,
        };
        match self {
            ToolCallFormat::Hermes => parser.hermes(),
            ToolCallFormat::Llama3Json => parser.llama3(),
            ToolCallFormat::Mistral => parser.mistral(),
            ToolCallFormat::CommandR => parser.command_r(),
        }
    }
}

/// End-of-turn tokens a decoded output may still end with.
const TRAILING_TOKENS: [&str; 5] = [
    "<|eom_id|>",
    "<|eot_id|>",
    "</s>",
    "<|im_end|>",
    "<|END_OF_TURN_TOKEN|>",
];

struct Parser<'a> {
    format: ToolCallFormat,
    output: &'a str,
}

impl<'a> Parser<'a> {
    /// An error at byte `offset` of the output.
    fn error(&self, offset: usize, message: impl Into<String>) -> Error {
        Error::ToolCall {
            format: self.format,
            offset,
            message: message.into(),
        }
    }

    fn offset_of(&self, part: &str) -> usize {
        (part.as_ptr() as usize).saturating_sub(self.output.as_ptr() as usize)
    }

    /// Reads one JSON value at the start of `text` (after blanks); returns it and the rest.
    fn json_value(&self, text: &'a str, what: &str) -> Result<(Value, &'a str)> {
        let text = text.trim_start();
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => Ok((value, &text[stream.byte_offset()..])),
            Some(Err(e)) => Err(self.error(
                self.offset_of(text),
                format!("{what} is not valid JSON ({e}): {}", snippet(text)),
            )),
            None => Err(self.error(self.offset_of(text), format!("{what} is missing"))),
        }
    }

    /// `text` as exactly one JSON value (blanks around it allowed).
    fn json_only(&self, text: &'a str, what: &str) -> Result<Value> {
        let (value, rest) = self.json_value(text, what)?;
        let rest = strip_trailing_tokens(rest);
        if !rest.trim().is_empty() {
            return Err(self.error(
                self.offset_of(rest),
                format!(
                    "unexpected text after the {what}: {}",
                    snippet(rest.trim_start())
                ),
            ));
        }
        Ok(value)
    }

    /// The JSON value that follows an opening marker and ends at `close`: a `close` inside a
    /// JSON string does not end it. Returns the value, where its text starts, and what follows
    /// `close` (nothing when generation stopped before it).
    fn json_until(
        &self,
        after: &'a str,
        close: &str,
        what: &str,
    ) -> Result<(Value, &'a str, &'a str)> {
        let body = after.trim_start();
        if body.starts_with(close) || strip_trailing_tokens(body).trim().is_empty() {
            return Err(self.error(self.offset_of(body), format!("{what} is missing")));
        }
        let (value, tail) = self.json_value(body, what)?;
        let tail = tail.trim_start();
        if let Some(next) = tail.strip_prefix(close) {
            Ok((value, body, next))
        } else if strip_trailing_tokens(tail).trim().is_empty() {
            Ok((value, body, ""))
        } else {
            Err(self.error(
                self.offset_of(tail),
                format!("unexpected text after the {what}: {}", snippet(tail)),
            ))
        }
    }

    /// A call object: `name` under `name_key`, arguments under one of `args_keys` (`{}` when
    /// absent), and an optional id under `id_key`.
    fn call(
        &self,
        value: Value,
        at: &str,
        name_key: &str,
        args_keys: &[&str],
        id_key: Option<&str>,
    ) -> Result<ToolCall> {
        let Value::Object(mut map) = value else {
            return Err(self.error(
                self.offset_of(at),
                format!("a tool call must be a JSON object, got {}", kind(&value)),
            ));
        };
        let name = match map.remove(name_key) {
            Some(Value::String(name)) if !name.is_empty() => name,
            Some(other) => {
                return Err(self.error(
                    self.offset_of(at),
                    format!(
                        "`{name_key}` must be a non-empty string, got {}",
                        kind(&other)
                    ),
                ));
            }
            None => {
                return Err(self.error(
                    self.offset_of(at),
                    format!("the tool call has no `{name_key}`"),
                ));
            }
        };
        let arguments = args_keys
            .iter()
            .find_map(|k| map.remove(*k))
            .unwrap_or_else(|| Value::Object(Map::new()));
        let id = id_key.and_then(|k| map.remove(k)).and_then(|v| match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Ok(ToolCall {
            id,
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        })
    }

    fn hermes(&self) -> Result<ParsedOutput> {
        const OPEN: &str = "<tool_call>";
        const CLOSE: &str = "</tool_call>";
        let mut content = String::new();
        let mut calls = Vec::new();
        let mut rest = self.output;
        while let Some(i) = rest.find(OPEN) {
            content.push_str(&rest[..i]);
            // A model stopped at `</tool_call>` (a stop string) leaves the last one open.
            let (value, body, next) =
                self.json_until(&rest[i + OPEN.len()..], CLOSE, "<tool_call> body")?;
            calls.push(self.call(
                value,
                body,
                "name",
                &["arguments", "parameters"],
                Some("id"),
            )?);
            rest = next;
        }
        content.push_str(strip_trailing_tokens(rest));
        Ok(ParsedOutput {
            content: content.trim().to_owned(),
            tool_calls: calls,
        })
    }

    fn llama3(&self) -> Result<ParsedOutput> {
        let trimmed = self.output.trim_start();
        let (tagged, text) = match trimmed.strip_prefix("<|python_tag|>") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let text = strip_trailing_tokens(text);
        let plain = || ParsedOutput {
            content: strip_trailing_tokens(self.output).trim().to_owned(),
            tool_calls: Vec::new(),
        };
        let body = text.trim_start();
        if !body.starts_with('{') {
            // Prose, or code for the built-in code interpreter after `<|python_tag|>`.
            return Ok(plain());
        }
        // JSON that does not start like a call is an answer that happens to be JSON.
        let announced = tagged || body[1..].trim_start().starts_with("\"name\"");
        let mut calls = Vec::new();
        let mut rest = body;
        loop {
            let (value, after) = match self.json_value(rest, "tool call") {
                Ok(parsed) => parsed,
                Err(_) if !announced => return Ok(plain()),
                Err(e) => return Err(e),
            };
            if !announced && !value.get("name").is_some_and(Value::is_string) {
                return Ok(plain());
            }
            calls.push(self.call(value, rest, "name", &["parameters", "arguments"], None)?);
            let after = after.trim_start();
            match after.strip_prefix(';') {
                Some(next) if !next.trim().is_empty() => rest = next,
                Some(_) => break,
                None if after.is_empty() => break,
                None => {
                    return Err(self.error(
                        self.offset_of(after),
                        format!("unexpected text after a tool call: {}", snippet(after)),
                    ));
                }
            }
        }
        Ok(ParsedOutput {
            content: String::new(),
            tool_calls: calls,
        })
    }

    fn mistral(&self) -> Result<ParsedOutput> {
        const TAG: &str = "[TOOL_CALLS]";
        let Some(i) = self.output.find(TAG) else {
            return Ok(ParsedOutput {
                content: strip_trailing_tokens(self.output).trim().to_owned(),
                tool_calls: Vec::new(),
            });
        };
        let content = self.output[..i].trim().to_owned();
        let mut rest = &self.output[i + TAG.len()..];
        let mut calls = Vec::new();
        if rest.trim_start().starts_with('[') {
            let value = self.json_only(rest, "[TOOL_CALLS] list")?;
            let Value::Array(items) = value else {
                return Err(self.error(self.offset_of(rest), "[TOOL_CALLS] must be a JSON list"));
            };
            for item in items {
                calls.push(self.call(
                    item,
                    rest,
                    "name",
                    &["arguments", "parameters"],
                    Some("id"),
                )?);
            }
            return Ok(ParsedOutput {
                content,
                tool_calls: calls,
            });
        }
        // `name[ARGS]{...}` or `name[CALL_ID]id[ARGS]{...}`, each after its own [TOOL_CALLS].
        loop {
            let Some(args_at) = rest.find("[ARGS]") else {
                return Err(self.error(
                    self.offset_of(rest),
                    format!(
                        "expected a JSON list or `name[ARGS]{{...}}` after [TOOL_CALLS]: {}",
                        snippet(rest)
                    ),
                ));
            };
            let head = &rest[..args_at];
            let (name, id) = match head.split_once("[CALL_ID]") {
                Some((name, id)) => (name.trim(), Some(id.trim().to_owned())),
                None => (head.trim(), None),
            };
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains('[') {
                return Err(self.error(
                    self.offset_of(rest),
                    format!("invalid function name before [ARGS]: {}", snippet(head)),
                ));
            }
            let (arguments, after) = self.json_value(&rest[args_at + 6..], "[ARGS] value")?;
            calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name: name.to_owned(),
                    arguments,
                },
            });
            let after = strip_trailing_tokens(after).trim_start();
            match after.strip_prefix(TAG) {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => {
                    return Err(self.error(
                        self.offset_of(after),
                        format!("unexpected text after a tool call: {}", snippet(after)),
                    ));
                }
            }
        }
        Ok(ParsedOutput {
            content,
            tool_calls: calls,
        })
    }

    fn command_r(&self) -> Result<ParsedOutput> {
        const WHAT: &str = "action list";
        let (content, value, body, id_key) = if let Some(i) = self.output.find("<|START_ACTION|>") {
            let after = &self.output[i + "<|START_ACTION|>".len()..];
            let (value, body, _) = self.json_until(after, "<|END_ACTION|>", WHAT)?;
            (&self.output[..i], value, body, Some("tool_call_id"))
        } else if let Some(i) = self.output.find("Action:") {
            let after = self.output[i + "Action:".len()..].trim_start();
            let (value, body) = match after.strip_prefix("```") {
                Some(fenced) => {
                    let fenced = fenced.strip_prefix("json").unwrap_or(fenced);
                    let (value, body, _) = self.json_until(fenced, "```", WHAT)?;
                    (value, body)
                }
                None => {
                    let body = strip_trailing_tokens(after);
                    (self.json_only(body, WHAT)?, body)
                }
            };
            (&self.output[..i], value, body, None)
        } else {
            return Ok(ParsedOutput {
                content: strip_trailing_tokens(self.output).trim().to_owned(),
                tool_calls: Vec::new(),
            });
        };
        let Value::Array(items) = value else {
            return Err(self.error(self.offset_of(body), "the actions must be a JSON list"));
        };
        let mut calls = Vec::new();
        for item in items {
            let call = self.call(item, body, "tool_name", &["parameters"], id_key)?;
            // `directly-answer` is Command-R's way of calling no tool.
            if !matches!(
                call.function.name.as_str(),
                "directly-answer" | "directly_answer"
            ) {
                calls.push(call);
            }
        }
        Ok(ParsedOutput {
            content: content.trim().to_owned(),
            tool_calls: calls,
        })
    }
}

/// `text` without the end-of-turn tokens (and blanks) it ends with.
fn strip_trailing_tokens(mut text: &str) -> &str {
    loop {
        let trimmed = text.trim_end();
        match TRAILING_TOKENS.iter().find_map(|t| trimmed.strip_suffix(t)) {
            Some(shorter) => text = shorter,
            None => return text,
        }
    }
}

/// The start of `text`, for error messages.
fn snippet(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}...", &text[..i]),
        None => format!("{text:?}"),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
