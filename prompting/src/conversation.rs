//! Multi-turn conversation with a token budget.

use std::fmt;
use std::sync::Arc;

use kiln_chat_template::Message;

use crate::{Error, GenerationParams, Generator};

type TokenCounter = Arc<dyn Fn(&[Message]) -> usize + Send + Sync>;

/// A multi-turn chat: a system prompt, the history of turns, and a token
/// budget that drops the oldest turns when the prompt would not fit.
///
/// This is the ordinary practice of chat assistants (a rolling context
/// window): the system prompt always stays, the history is cut at turn
/// boundaries (a user turn and the replies after it) from the oldest, and the
/// latest user turn is always sent. The full history is kept; only what is
/// sent is trimmed.
///
/// Token counting is a closure over the whole prompt, so it can be exact:
/// render the messages with the model's chat template and count the tokens
/// (or use a cheap estimate). It is called once per candidate window.
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{Conversation, Message};
///
/// let model = ScriptedGenerator::new(["Hello! How can I help?", "It is 4."]);
/// // A crude counter: one token per word of every message.
/// let words = |msgs: &[Message]| msgs.iter().map(|m| m.text().split_whitespace().count()).sum();
/// let mut chat = Conversation::new()
///     .system("You are a helpful assistant.")
///     .token_budget(12, words);
///
/// assert_eq!(chat.send(&model, "Hi there!")?, "Hello! How can I help?");
/// assert_eq!(chat.send(&model, "What is 2 + 2?")?, "It is 4.");
///
/// // The first exchange no longer fit in 12 "tokens" when the second was sent.
/// assert_eq!(
///     model.calls()[1].messages,
///     vec![Message::system("You are a helpful assistant."), Message::user("What is 2 + 2?")]
/// );
/// assert_eq!(chat.history().len(), 4); // nothing is forgotten locally
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Conversation {
    system: Option<String>,
    history: Vec<Message>,
    budget: Option<(usize, TokenCounter)>,
    params: GenerationParams,
}

impl fmt::Debug for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("system", &self.system)
            .field("history", &self.history)
            .field("budget", &self.budget.as_ref().map(|(b, _)| *b))
            .field("params", &self.params)
            .finish()
    }
}

impl Conversation {
    /// An empty conversation without a system prompt or budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the system prompt, sent first with every request.
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system = Some(text.into());
        self
    }

    /// Limits the prompt to `max_prompt_tokens` as counted by `count`
    /// (leave room for the reply: budget = context length - max_new_tokens).
    pub fn token_budget(
        mut self,
        max_prompt_tokens: usize,
        count: impl Fn(&[Message]) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.budget = Some((max_prompt_tokens, Arc::new(count)));
        self
    }

    /// Sets the generation parameters for every reply.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// Appends a message to the history (e.g. a reply produced elsewhere).
    pub fn push(&mut self, message: Message) {
        self.history.push(message);
    }

    /// The full history, without the system prompt.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Forgets the history (the system prompt stays).
    pub fn clear(&mut self) {
        self.history.clear();
    }

    /// The messages the next request sends: the system prompt and the most
    /// recent turns that fit the budget.
    pub fn messages(&self) -> Result<Vec<Message>, Error> {
        let with_system = |turns: &[Message]| {
            let mut v = Vec::with_capacity(turns.len() + 1);
            v.extend(self.system.as_deref().map(Message::system));
            v.extend_from_slice(turns);
            v
        };
        let Some((budget, count)) = &self.budget else {
            return Ok(with_system(&self.history));
        };
        // Cut points: the start, and every user turn after it.
        let starts = std::iter::once(0).chain(
            self.history
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, m)| m.role == "user")
                .map(|(i, _)| i),
        );
        let mut smallest = None;
        for start in starts {
            let candidate = with_system(&self.history[start..]);
            let needed = count(&candidate);
            if needed <= *budget {
                return Ok(candidate);
            }
            smallest = Some(needed);
        }
        Err(Error::ContextOverflow {
            needed: smallest.unwrap_or(0),
            budget: *budget,
        })
    }

    /// Sends `user_text` as the next user turn and returns the reply
    /// (whitespace-trimmed), which is appended to the history.
    ///
    /// On any error the history is left as it was before the call.
    pub fn send(&mut self, generator: &dyn Generator, user_text: &str) -> Result<String, Error> {
        self.history.push(Message::user(user_text));
        let reply = self.messages().and_then(|messages| {
            generator
                .generate(&messages, &self.params)
                .map_err(|e| Error::generator("conversation", e))
        });
        match reply {
            Ok(c) => {
                let text = c.text.trim().to_owned();
                self.history.push(Message::assistant(text.clone()));
                Ok(text)
            }
            Err(e) => {
                self.history.pop();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedGenerator;

    fn chars(msgs: &[Message]) -> usize {
        msgs.iter().map(|m| m.text().chars().count()).sum()
    }

    #[test]
    fn without_budget_everything_is_sent() {
        let g = ScriptedGenerator::new(["r1", "  r2\n"]);
        let mut c = Conversation::new().system("sys");
        c.send(&g, "u1").unwrap();
        assert_eq!(c.send(&g, "u2").unwrap(), "r2");
        assert_eq!(
            g.calls()[1].messages,
            vec![
                Message::system("sys"),
                Message::user("u1"),
                Message::assistant("r1"),
                Message::user("u2"),
            ]
        );
    }

    #[test]
    fn trimming_drops_whole_exchanges_oldest_first() {
        let mut c = Conversation::new().system("S").token_budget(8, chars);
        for m in [
            Message::user("aa"),
            Message::assistant("bb"),
            Message::assistant("cc"),
            Message::user("dd"),
            Message::assistant("ee"),
            Message::user("ff"),
        ] {
            c.push(m);
        }
        // Full: 1 + 12 = 13 > 8; from "dd": 1 + 6 = 7 fits.
        assert_eq!(
            c.messages().unwrap(),
            vec![
                Message::system("S"),
                Message::user("dd"),
                Message::assistant("ee"),
                Message::user("ff"),
            ]
        );
    }

    #[test]
    fn overflow_is_an_error_and_leaves_history_untouched() {
        let g = ScriptedGenerator::new(["unused"]);
        let mut c = Conversation::new().system("system").token_budget(5, chars);
        let err = c.send(&g, "hello").unwrap_err();
        assert!(matches!(
            err,
            Error::ContextOverflow {
                needed: 11,
                budget: 5
            }
        ));
        assert!(c.history().is_empty());
        assert!(g.calls().is_empty());
    }

    #[test]
    fn generator_failure_leaves_history_untouched() {
        let g = ScriptedGenerator::new(Vec::<String>::new());
        let mut c = Conversation::new();
        let err = c.send(&g, "hello").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("conversation: the generator failed: scripted generator")
        );
        assert!(c.history().is_empty());
    }
}
