//! [`ChatTemplate::apply`]: transformers' `apply_chat_template(..., tokenize=False)`.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::env::{self, NowGuard};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::python::is_py_space;
use crate::special::SpecialTokens;
use crate::template::ChatTemplate;
use crate::value::{ARG_NAMES, Items, Root, TooDeep, from_json, from_json_memo, map_from_pairs};

/// What [`ChatTemplate::apply`] renders besides the messages.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Append the header that starts an assistant turn (`add_generation_prompt`).
    pub add_generation_prompt: bool,
    /// Leave the final message open so the model continues it (`continue_final_message`).
    /// An error together with `add_generation_prompt`, as in transformers.
    pub continue_final_message: bool,
    /// The field of the final message to continue (transformers' string form of
    /// `continue_final_message`, e.g. `reasoning_content`); `None` means `content`.
    pub continue_field: Option<String>,
    /// Tool definitions (JSON schemas); the template sees `none` when absent.
    pub tools: Option<Vec<Json>>,
    /// Documents for retrieval-augmented templates; `none` when absent.
    pub documents: Option<Vec<Json>>,
    /// Extra template variables (`enable_thinking`, `date_string`, ...); they override special tokens.
    pub extra: Map<String, Json>,
    /// Special tokens passed as `bos_token`, `eos_token`, ...
    pub special_tokens: SpecialTokens,
    /// Pick a named template (`tool_use`, `rag`, ...) instead of the automatic choice.
    pub template_name: Option<String>,
    /// The instant `strftime_now` formats (UTC); `None` reads the clock.
    pub now: Option<SystemTime>,
}

impl ApplyOptions {
    /// Default options with `add_generation_prompt` set.
    pub fn generation_prompt() -> Self {
        Self {
            add_generation_prompt: true,
            ..Self::default()
        }
    }
}

/// The output of [`ChatTemplate::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The prompt text.
    pub text: String,
    /// Byte ranges of `text` rendered inside `{% generation %}` blocks (assistant content), in
    /// order. Empty when the template has no such block.
    pub assistant_spans: Vec<Range<usize>>,
}

/// Messages and tools converted once into template values, to be rendered many times.
///
/// A chat session renders its whole history every turn, and its tools rarely change: prepare
/// them once, [`push`](Self::push) each new message, and render with
/// [`ChatTemplate::apply_prepared`]. The output is the same as
/// [`ChatTemplate::apply_json`] on the same messages and tools; the tool schemas' `tojson` text is
/// computed on the first render and reused.
#[derive(Debug, Clone, Default)]
pub struct PreparedChat {
    values: Arc<Vec<Value>>,
    /// The final message as given (for `continue_final_message`).
    last: Option<Json>,
    tools: Option<Value>,
}

impl PreparedChat {
    /// Prepares `messages` (JSON objects, as for [`ChatTemplate::apply_json`]) and `tools`
    /// (JSON schemas; `None` means the template sees `none`).
    pub fn new(messages: &[Json], tools: Option<&[Json]>) -> Result<Self> {
        let tools = match tools {
            Some(tools) => {
                if tools.iter().any(|t| !t.is_object()) {
                    return Err(Error::InvalidInput(
                        "Tools should be JSON schemas (objects)".into(),
                    ));
                }
                let tools = tools
                    .iter()
                    .map(from_json_memo)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.error("tools"))?;
                Some(Value::from(tools))
            }
            None => None,
        };
        let mut chat = Self {
            tools,
            ..Self::default()
        };
        for m in messages {
            chat.push(m)?;
        }
        Ok(chat)
    }

    /// Appends one message (a JSON object).
    pub fn push(&mut self, message: &Json) -> Result<()> {
        let Json::Object(map) = message else {
            return Err(Error::InvalidInput(format!(
                "message {} is not a JSON object",
                self.values.len()
            )));
        };
        let value =
            message_value(map).map_err(|e| e.error(&format!("message {}", self.values.len())))?;
        Arc::make_mut(&mut self.values).push(value);
        self.last = Some(message.clone());
        Ok(())
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it holds no message.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// A message as the template sees it: keys with `null` values dropped (transformers'
/// normalization), then the reasoning fields aliased as [`alias_reasoning`] does, built directly.
fn message_value(map: &Map<String, Json>) -> Result<Value, TooDeep> {
    // The first reasoning field set, in REASONING_FIELDS order (one pass, no hashed lookups).
    let mut reasoning: Option<(usize, &Json)> = None;
    let mut has_reasoning_content = false;
    for (k, v) in map {
        if let Some(rank) = REASONING_FIELDS.iter().position(|f| f == k) {
            if v.is_null() {
                continue;
            }
            has_reasoning_content |= rank == 0;
            if reasoning.is_none_or(|(r, _)| rank < r) {
                reasoning = Some((rank, v));
            }
        }
    }
    let Some((_, reasoning)) = reasoning else {
        let mut pairs = Items::with_capacity(map.len());
        for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            pairs.push((Value::from(k.as_str()), from_json(v)?));
        }
        return Ok(map_from_pairs(pairs));
    };
    let reasoning = from_json(reasoning)?;
    let mut pairs = Items::with_capacity(map.len() + 2);
    pairs.push((Value::from("thinking"), reasoning.clone()));
    for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
        match k.as_str() {
            "thinking" => {
                if let Some(first) = pairs.as_mut_slice().first_mut() {
                    first.1 = from_json(v)?;
                }
            }
            "reasoning_content" => {
                pairs.push((Value::from("reasoning_content"), reasoning.clone()))
            }
            _ => pairs.push((Value::from(k.as_str()), from_json(v)?)),
        }
    }
    if !has_reasoning_content {
        pairs.push((Value::from("reasoning_content"), reasoning));
    }
    Ok(map_from_pairs(pairs))
}

/// `{"thinking": r, **message, "reasoning_content": r}` for the first reasoning field set.
fn alias_reasoning(message: Map<String, Json>) -> Map<String, Json> {
    let reasoning = REASONING_FIELDS
        .iter()
        .find_map(|k| message.get(*k).filter(|v| !v.is_null()).cloned());
    let Some(reasoning) = reasoning else {
        return message;
    };
    let mut out = Map::with_capacity(message.len() + 2);
    out.insert("thinking".into(), reasoning.clone());
    for (k, v) in message {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), reasoning);
    out
}

impl ChatTemplate {
    /// Renders `messages` as transformers' `apply_chat_template(messages, tokenize=False, ...)`.
    ///
    /// ```
    /// use kiln_chat_template::{ApplyOptions, Builtin, ChatTemplate, Message};
    /// let template = ChatTemplate::builtin(Builtin::ChatMl);
    /// let out = template
    ///     .apply(&[Message::user("Hi!")], &ApplyOptions::generation_prompt())
    ///     .unwrap();
    /// assert_eq!(out.text, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
    /// ```
    pub fn apply(&self, messages: &[Message], opts: &ApplyOptions) -> Result<Rendered> {
        let json: Vec<Json> = messages
            .iter()
            .map(|m| serde_json::to_value(m).map_err(|e| Error::InvalidInput(e.to_string())))
            .collect::<Result<_>>()?;
        self.apply_json(&json, opts)
    }

    /// Like [`apply`](Self::apply), for messages given as JSON objects (key order is kept, as
    /// Python dicts keep it).
    pub fn apply_json(&self, messages: &[Json], opts: &ApplyOptions) -> Result<Rendered> {
        if messages.is_empty() {
            return Err(Error::InvalidInput(
                "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
            ));
        }
        let mut chat: Vec<&Map<String, Json>> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let Json::Object(map) = m else {
                return Err(Error::InvalidInput(format!(
                    "message {i} is not a JSON object"
                )));
            };
            chat.push(map);
        }
        self.check_options(opts)?;
        if opts.tools.iter().flatten().any(|t| !t.is_object()) {
            return Err(Error::InvalidInput(
                "Tools should be JSON schemas (objects)".into(),
            ));
        }
        let message_values = chat
            .iter()
            .enumerate()
            .map(|(i, m)| message_value(m).map_err(|e| e.error(&format!("message {i}"))))
            .collect::<Result<Vec<_>>>()?;
        let tools = match &opts.tools {
            Some(items) => Some(Value::from(
                items
                    .iter()
                    .map(from_json)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.error("tools"))?,
            )),
            None => None,
        };
        self.render_values(Arc::new(message_values), chat.last().copied(), tools, opts)
    }

    /// Renders a [`PreparedChat`]: the same output as [`apply_json`](Self::apply_json) with its
    /// messages and tools, without converting them again. `opts.tools` must be `None` (the tools
    /// are part of the prepared chat).
    ///
    /// ```
    /// use kiln_chat_template::{ApplyOptions, Builtin, ChatTemplate, PreparedChat};
    /// let template = ChatTemplate::builtin(Builtin::ChatMl);
    /// let mut chat = PreparedChat::new(&[], None).unwrap();
    /// chat.push(&serde_json::json!({"role": "user", "content": "Hi!"})).unwrap();
    /// let out = template.apply_prepared(&chat, &ApplyOptions::generation_prompt()).unwrap();
    /// assert_eq!(out.text, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
    /// ```
    pub fn apply_prepared(&self, chat: &PreparedChat, opts: &ApplyOptions) -> Result<Rendered> {
        if chat.values.is_empty() {
            return Err(Error::InvalidInput(
                "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
            ));
        }
        if opts.tools.is_some() {
            return Err(Error::InvalidInput(
                "tools are given twice: in the prepared chat and in the options".into(),
            ));
        }
        self.check_options(opts)?;
        let last = chat.last.as_ref().and_then(Json::as_object);
        self.render_values(chat.values.clone(), last, chat.tools.clone(), opts)
    }

    fn check_options(&self, opts: &ApplyOptions) -> Result<()> {
        if opts.continue_final_message && opts.add_generation_prompt {
            return Err(Error::InvalidInput(
                "continue_final_message and add_generation_prompt are not compatible. Use \
                 continue_final_message when you want the model to continue the final message, and \
                 add_generation_prompt when you want to add a header that will prompt it to start a \
                 new assistant message instead."
                    .into(),
            ));
        }
        if opts.documents.iter().flatten().any(|d| !d.is_object()) {
            return Err(Error::InvalidInput(
                "Documents should be a list of dicts with 'title' and 'text' keys!".into(),
            ));
        }
        Ok(())
    }

    /// Renders messages already converted to template values; `last` is the final message as
    /// JSON (for `continue_final_message`), `tools` the tool list value.
    fn render_values(
        &self,
        mut message_values: Arc<Vec<Value>>,
        last: Option<&Map<String, Json>>,
        tools: Option<Value>,
        opts: &ApplyOptions,
    ) -> Result<Rendered> {
        let variant = self.select(opts.template_name.as_deref(), tools.is_some())?;
        let final_message = match (opts.continue_final_message, last) {
            (true, Some(last)) => {
                // transformers normalizes and aliases, then tags the final message's field(s).
                let normalized: Map<String, Json> = last
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let (tagged, text) =
                    tag_final_message(alias_reasoning(normalized), opts, &variant.source)?;
                let pairs = tagged
                    .iter()
                    .map(|(k, v)| Ok((Value::from(k.as_str()), from_json(v)?)))
                    .collect::<Result<_, TooDeep>>()
                    .map_err(|e| e.error("the final message"))?;
                if let Some(slot) = Arc::make_mut(&mut message_values).last_mut() {
                    *slot = map_from_pairs(pairs);
                }
                Some(text)
            }
            _ => None,
        };

        let mut vars: Vec<(Value, Value)> = Vec::with_capacity(7 + opts.extra.len());
        for (name, token) in opts.special_tokens.template_vars() {
            vars.push((Value::from(name), Value::from(token)));
        }
        for (k, v) in &opts.extra {
            if ARG_NAMES.contains(&k.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "extra variable `{k}` clashes with the argument of the same name"
                )));
            }
            vars.retain(|(name, _)| name.as_str() != Some(k.as_str()));
            let value = from_json(v).map_err(|e| e.error(&format!("extra variable `{k}`")))?;
            vars.push((Value::from(k.as_str()), value));
        }
        let documents = match &opts.documents {
            Some(items) => Value::from(
                items
                    .iter()
                    .map(from_json)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.error("documents"))?,
            ),
            None => Value::from_object(env::PyNone),
        };
        let ctx = Value::from_object(Root {
            args: [
                Value::from_dyn_object(message_values),
                tools.unwrap_or_else(|| Value::from_object(env::PyNone)),
                documents,
                Value::from(opts.add_generation_prompt),
            ],
            vars,
        });

        let raw = {
            let _now = NowGuard::set(opts.now);
            self.render_bounded(variant, ctx)?
        };
        let (mut text, mut spans) = if variant.has_generation {
            env::extract_generation_spans(&raw)
        } else {
            (raw, Vec::new())
        };

        if let Some(final_message) = final_message {
            let tag = CONTINUE_TAG.trim_end();
            if !text.contains(py_strip(&final_message)) || !text.contains(tag) {
                return Err(Error::ContinueFinalMessage(format!(
                    "the final message does not appear in the chat after applying the chat template \
                     (the template deletes portions of it); final message: {}",
                    py_strip(&final_message)
                )));
            }
            let loc = text.rfind(tag).unwrap_or(text.len());
            let cut = if text[loc..].starts_with(CONTINUE_TAG) {
                loc
            } else {
                text[..loc].trim_end_matches(is_py_space).len()
            };
            text.truncate(cut);
            spans.retain(|s| s.start < cut || (s.is_empty() && s.start <= cut));
            for s in &mut spans {
                s.end = s.end.min(cut);
            }
        }
        Ok(Rendered {
            text,
            assistant_spans: spans,
        })
    }
}

/// Appends transformers' continuation tag to the final message; returns it and the text being
/// continued.
fn tag_final_message(
    mut last: Map<String, Json>,
    opts: &ApplyOptions,
    source: &str,
) -> Result<(Map<String, Json>, String)> {
    let field = opts.continue_field.as_deref().unwrap_or("content");
    let Some(final_message) = last.get(field).cloned() else {
        return Err(Error::ContinueFinalMessage(format!(
            "the final message has no \"{field}\" to continue"
        )));
    };
    let fields: Vec<String> = if REASONING_FIELDS.contains(&field) {
        REASONING_FIELDS
            .iter()
            .filter(|f| last.get(**f) == Some(&final_message))
            .map(|f| (*f).to_owned())
            .collect()
    } else {
        vec![field.to_owned()]
    };
    if !fields.iter().any(|f| source.contains(f.as_str())) {
        return Err(Error::ContinueFinalMessage(format!(
            "continue_final_message is set to \"{field}\" but this is not an accepted field in the chat_template"
        )));
    }
    let text = match final_message {
        Json::Array(_) => {
            let Some(Json::Array(blocks)) = last.get_mut(field) else {
                return Err(Error::ContinueFinalMessage(
                    "the final message changed".into(),
                ));
            };
            let block = blocks.iter_mut().rev().find_map(|b| match b {
                Json::Object(map) if map.contains_key("text") => Some(map),
                _ => None,
            });
            let Some(block) = block else {
                return Err(Error::ContinueFinalMessage(
                    "we could not find any text to continue in the final message".into(),
                ));
            };
            let Some(Json::String(text)) = block.get("text").cloned() else {
                return Err(Error::ContinueFinalMessage(
                    "the last text block's `text` is not a string".into(),
                ));
            };
            block.insert("text".into(), Json::String(format!("{text}{CONTINUE_TAG}")));
            text
        }
        Json::String(text) => {
            for f in &fields {
                if let Some(Json::String(s)) = last.get_mut(f) {
                    s.push_str(CONTINUE_TAG);
                }
            }
            text
        }
        _ => {
            return Err(Error::ContinueFinalMessage(format!(
                "the final message's \"{field}\" is neither a string nor a list of blocks"
            )));
        }
    };
    Ok((last, text))
}
