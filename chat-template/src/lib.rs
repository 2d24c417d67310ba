//! transformers-exact chat templates.
//!
//! kiln-chat-template renders a conversation into a prompt the way Python's
//! `tokenizer.apply_chat_template(messages, ...)` does, byte for byte, on
//! [minijinja](https://docs.rs/minijinja) configured like transformers configures jinja2
//! (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a
//! `json.dumps`-exact `tojson`, the `{% generation %}` tag, Python's `str()` of printed values).
//! It then tokenizes the prompt as transformers does and knows which tokens end a turn.
//!
//! ```
//! use kiln_chat_template::{ApplyOptions, Builtin, ChatTemplate, Message};
//!
//! // A model directory works the same: ChatTemplate::from_model_dir("path/to/model").
//! let template = ChatTemplate::builtin(Builtin::Llama3);
//! let mut options = ApplyOptions::generation_prompt();
//! options.special_tokens.bos_token = Some("<|begin_of_text|>".into());
//! let conversation = vec![Message::system("Be brief."), Message::user("Hi!")];
//! let prompt = template.apply(&conversation, &options).unwrap();
//! assert_eq!(
//!     prompt.text,
//!     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
//!      <|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>\
//!      <|start_header_id|>assistant<|end_header_id|>\n\n"
//! );
//! ```
//!
//! [`ToolCallFormat`] reads from a template how its model writes tool calls and parses them out
//! of the generated text into [`ToolCall`]s, which go back into the conversation.
//!
//! Errors name the template and line; a template's `raise_exception("...")` becomes
//! [`Error::Raised`] carrying its message. Where kiln differs from transformers is listed in
//! `COMPATIBILITY.md`.
//!
//! A template comes with a model download, so it is treated as untrusted: every render runs
//! within [`Limits`] (minijinja's fuel, the prompt's size, recursion, nesting), and a template
//! that loops forever, builds huge strings or trips a panic in the engine ends in an
//! [`Error`] ([`Error::LimitExceeded`], [`Error::EnginePanic`]) rather than a hang or a crash.

mod builtin;
mod conversation;
mod env;
mod error;
mod filters;
mod limits;
mod load;
mod message;
mod namespace;
mod operators;
mod python;
mod render;
mod special;
mod strftime;
mod template;
mod tokenizer;
mod tool_calls;
mod value;

pub use builtin::Builtin;
pub use conversation::{Conversation, read_json_list};
pub use error::{Error, Result};
pub use limits::{Limit, Limits, MAX_INPUT_DEPTH};
pub use message::{Content, ContentPart, FunctionCall, Message, ToolCall};
pub use render::{ApplyOptions, PreparedChat, Rendered};
pub use special::{STANDARD_NAMES, SpecialTokens};
pub use template::ChatTemplate;
pub use tokenizer::{END_OF_TURN_TOKENS, Encoding, Tokenizer, generation_eos_ids};
pub use tool_calls::{ParsedOutput, ToolCallFormat};
