//! Built-in templates for model families that ship none.
//!
//! Each source is the family's published Hugging Face template, verbatim (see
//! `templates/README.md`). They are only ever used when asked for by name: kiln never guesses a
//! template for a model.

/// A built-in chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// ChatML (`<|im_start|>role\n...<|im_end|>`), as in OpenHermes 2.5 and SmolLM.
    ChatMl,
    /// Llama 2 chat (`[INST] <<SYS>>...<</SYS>> ... [/INST]`), from `meta-llama/Llama-2-7b-chat-hf`.
    Llama2,
    /// Llama 3 instruct (`<|start_header_id|>...<|eot_id|>`), from `meta-llama/Meta-Llama-3-8B-Instruct`.
    Llama3,
    /// Mistral `[INST]` (no system role), from `mistralai/Mistral-7B-Instruct-v0.2`.
    Mistral,
    /// Gemma (`<start_of_turn>user ... <end_of_turn>`), from `google/gemma-2-2b-it`.
    Gemma,
}

impl Builtin {
    /// Every built-in template.
    pub const ALL: [Builtin; 5] = [
        Builtin::ChatMl,
        Builtin::Llama2,
        Builtin::Llama3,
        Builtin::Mistral,
        Builtin::Gemma,
    ];

    /// The short name (`chatml`, `llama2`, `llama3`, `mistral`, `gemma`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::ChatMl => "chatml",
            Builtin::Llama2 => "llama2",
            Builtin::Llama3 => "llama3",
            Builtin::Mistral => "mistral",
            Builtin::Gemma => "gemma",
        }
    }

    /// The built-in template of that short name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The Jinja source.
    pub fn source(self) -> &'static str {
        match self {
            Builtin::ChatMl => include_str!("../templates/chatml.jinja"),
            Builtin::Llama2 => include_str!("../templates/llama2.jinja"),
            Builtin::Llama3 => include_str!("../templates/llama3.jinja"),
            Builtin::Mistral => include_str!("../templates/mistral.jinja"),
            Builtin::Gemma => include_str!("../templates/gemma.jinja"),
        }
    }
}
