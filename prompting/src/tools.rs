//! Tools a model may call: their schemas and the Rust that answers them, and a [`Generator`]
//! that offers them through a real chat template.

use std::fmt;
use std::sync::Arc;

use kiln_chat_template::{ApplyOptions, ChatTemplate, Message, ToolCall, ToolCallFormat};
use serde_json::Value;

use crate::{Completion, Error, GenerationParams, Generator, GeneratorError};

type Handler = Arc<dyn Fn(&Value) -> Result<String, String> + Send + Sync>;

/// Tools offered to a model: each a JSON schema (as transformers'
/// `apply_chat_template(tools=...)` takes them: `{"type": "function", "function": {"name", ...}}`
/// or the bare function object) and a handler that answers a call.
///
/// A handler gets the call's arguments (a JSON string of arguments is parsed first) and returns
/// the result text, or an error text; either goes back to the model as the `role: tool` message
/// answering the call. A call of a tool that is not here is answered with an error the same way,
/// so the model can correct itself.
///
/// ```
/// use kiln_prompting::Tools;
/// use serde_json::json;
///
/// let tools = Tools::new().add(
///     json!({"type": "function", "function": {"name": "add", "description": "a + b",
///            "parameters": {"type": "object", "properties": {
///                "a": {"type": "number"}, "b": {"type": "number"}}}}}),
///     |args| {
///         let n = |k: &str| args[k].as_f64().ok_or(format!("`{k}` must be a number"));
///         Ok((n("a")? + n("b")?).to_string())
///     },
/// );
/// assert_eq!(tools.names().unwrap(), ["add"]);
/// ```
#[derive(Clone, Default)]
pub struct Tools {
    tools: Vec<(Value, Handler)>,
}

impl fmt::Debug for Tools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tools")
            .field("schemas", &self.schemas())
            .finish()
    }
}

impl Tools {
    /// No tools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool: its schema and the handler that answers its calls.
    pub fn add(
        mut self,
        schema: Value,
        handler: impl Fn(&Value) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.tools.push((schema, Arc::new(handler)));
        self
    }

    /// Whether there are no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The schemas, as the template gets them.
    pub fn schemas(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|(schema, _)| schema.clone())
            .collect()
    }

    /// The tools' names, in order; an [`Error::InvalidConfig`] when a schema names no function
    /// or two share a name.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = Vec::with_capacity(self.tools.len());
        for (i, (schema, _)) in self.tools.iter().enumerate() {
            let function = schema.get("function").unwrap_or(schema);
            let Some(name) = function
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(Error::InvalidConfig {
                    strategy: "tools",
                    reason: format!(
                        "tool {i} has no function name (expected {{\"type\": \"function\", \
                         \"function\": {{\"name\": ...}}}})"
                    ),
                });
            };
            if names.iter().any(|n| n == name) {
                return Err(Error::InvalidConfig {
                    strategy: "tools",
                    reason: format!("two tools are named `{name}`"),
                });
            }
            names.push(name.to_owned());
        }
        Ok(names)
    }

    /// Runs the handler `call` names and returns the `role: tool` message answering it (its id
    /// and the tool's name set); an unknown tool or a failed handler gives an `error: ...`
    /// result.
    pub fn answer(&self, call: &ToolCall) -> Message {
        let name = &call.function.name;
        let handler = self.tools.iter().find_map(|(schema, handler)| {
            let function = schema.get("function").unwrap_or(schema);
            (function.get("name").and_then(Value::as_str) == Some(name)).then_some(handler)
        });
        let arguments = match &call.function.arguments {
            Value::String(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            other => other.clone(),
        };
        let result = match handler {
            Some(handler) => handler(&arguments).unwrap_or_else(|e| format!("error: {e}")),
            None => format!("error: there is no tool named `{name}`"),
        };
        let mut message = Message::tool(call.id.clone().unwrap_or_default(), result);
        if call.id.is_none() {
            message.tool_call_id = None;
        }
        message.name = Some(name.clone());
        message
    }
}

/// A [`Generator`] for any text-completion backend that renders the conversation with a real
/// chat template (tools included) and parses the model's tool calls in the template's format
/// ([`ToolCallFormat::detect`]).
///
/// `complete` turns the rendered prompt into the model's continuation; it should keep the
/// model's call markers (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`: special tokens in most
/// vocabularies) in the text. A local model's `ChatPipeline`, an HTTP completion endpoint or a
/// test script all fit.
///
/// ```
/// use kiln_chat_template::{ApplyOptions, ChatTemplate, Builtin};
/// use kiln_prompting::{Completion, Generator, GenerationParams, Message, StopReason, TemplateGenerator};
///
/// let template = ChatTemplate::builtin(Builtin::ChatMl);
/// let model = TemplateGenerator::new(template, ApplyOptions::default(), |prompt: &str, _: &GenerationParams| {
///     assert!(prompt.ends_with("<|im_start|>assistant\n"));
///     Ok(Completion::new("Hello!", StopReason::EndOfSequence))
/// });
/// let reply = model.generate(&[Message::user("Hi")], &GenerationParams::default())?;
/// assert_eq!(reply.text, "Hello!");
/// # Ok::<(), kiln_prompting::GeneratorError>(())
/// ```
pub struct TemplateGenerator<F> {
    template: ChatTemplate,
    options: ApplyOptions,
    format: Option<ToolCallFormat>,
    complete: F,
}

impl<F> fmt::Debug for TemplateGenerator<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateGenerator")
            .field("templates", &self.template.names())
            .field("format", &self.format)
            .finish()
    }
}

impl<F> TemplateGenerator<F>
where
    F: Fn(&str, &GenerationParams) -> Result<Completion, GeneratorError>,
{
    /// Renders with `template` and `options` (special tokens, extra variables; the generation
    /// prompt and the tools are set per call) and completes with `complete`.
    pub fn new(template: ChatTemplate, options: ApplyOptions, complete: F) -> Self {
        let format = ToolCallFormat::detect(&template);
        Self {
            template,
            options,
            format,
            complete,
        }
    }

    /// Parses tool calls in `format` instead of the one detected from the template.
    pub fn tool_format(mut self, format: ToolCallFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// The prompt for `messages` with `tools` offered.
    pub fn render(&self, messages: &[Message], tools: &[Value]) -> Result<String, GeneratorError> {
        let options = ApplyOptions {
            add_generation_prompt: true,
            continue_final_message: false,
            tools: (!tools.is_empty()).then(|| tools.to_vec()),
            ..self.options.clone()
        };
        let rendered = self
            .template
            .apply(messages, &options)
            .map_err(GeneratorError::from_source)?;
        Ok(rendered.text)
    }
}

impl<F> Generator for TemplateGenerator<F>
where
    F: Fn(&str, &GenerationParams) -> Result<Completion, GeneratorError>,
{
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        (self.complete)(&self.render(messages, &[])?, params)
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
        let Some(format) = self.format else {
            return Err(GeneratorError::new(
                "the chat template shows no tool-call format kiln knows (Hermes, Llama 3 JSON, \
                 Mistral, Command-R); name one with `tool_format`",
            ));
        };
        let completion = (self.complete)(&self.render(messages, tools)?, params)?;
        let parsed = format
            .parse(&completion.text)
            .map_err(GeneratorError::from_source)?;
        Ok(Completion::new(parsed.content, completion.stop).with_tool_calls(parsed.tool_calls))
    }
}
