//! The crate's error type.

use std::fmt;

use crate::GeneratorError;

/// Longest excerpt of model output quoted in an error message, in characters.
const EXCERPT_CHARS: usize = 200;

/// Everything that can go wrong while running a strategy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The generator (or a user-supplied answerer) failed during `step`.
    #[error("{step}: the generator failed: {source}")]
    Generator {
        /// The strategy and step, e.g. `chain-of-thought: answer extraction`.
        step: String,
        /// What the generator reported.
        #[source]
        source: GeneratorError,
    },

    /// The model's reply did not have the shape the strategy needs.
    #[error("{step}: expected {expected}, but the model replied {}", Excerpt(.reply))]
    MalformedOutput {
        /// The strategy and step that parsed the reply.
        step: String,
        /// What the parser looked for.
        expected: String,
        /// The whole reply (the message quotes a bounded excerpt of it).
        reply: String,
    },

    /// A chain step's every attempt was rejected (no usable JSON, a failed
    /// validation, an empty reply).
    #[error(
        "chain step `{step}`: no usable reply after {} attempt(s); last problem: {}",
        .attempts.len(),
        .attempts.last().map(|a| a.to_string()).unwrap_or_default()
    )]
    RetriesExhausted {
        /// The step's name.
        step: String,
        /// Every attempt, oldest first.
        attempts: Vec<Attempt>,
    },

    /// A chain step's model kept calling tools: no answer without calls after
    /// [`max_tool_rounds`](crate::Step::max_tool_rounds) rounds.
    #[error(
        "chain step `{step}`: the model still called tools after {rounds} round(s) of tool calls"
    )]
    ToolRoundsExhausted {
        /// The step's name.
        step: String,
        /// The rounds allowed.
        rounds: usize,
    },

    /// Even the smallest conversation a [`Conversation`](crate::Conversation)
    /// can send (system prompt and the latest user turn) exceeds its token budget.
    #[error(
        "conversation: the system prompt and the latest user turn take {needed} tokens, \
         more than the budget of {budget}"
    )]
    ContextOverflow {
        /// Tokens the smallest possible prompt takes.
        needed: usize,
        /// The configured budget.
        budget: usize,
    },

    /// A [`RolePolicy`](crate::RolePolicy) demanding strict user/assistant
    /// alternation met a conversation it cannot repair.
    #[error(
        "role policy: message {index} has role `{role}`, but the template expects `{expected}` there"
    )]
    RoleOrder {
        /// Index of the offending message (after system folding and merging).
        index: usize,
        /// Its role.
        role: String,
        /// The role the template expects at that position.
        expected: String,
    },

    /// A strategy was configured in a way that cannot run.
    #[error("{strategy}: {reason}")]
    InvalidConfig {
        /// The strategy, e.g. `generated-knowledge`.
        strategy: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn generator(step: impl Into<String>, source: GeneratorError) -> Self {
        Self::Generator {
            step: step.into(),
            source,
        }
    }

    pub(crate) fn malformed(
        step: impl Into<String>,
        expected: impl Into<String>,
        reply: impl Into<String>,
    ) -> Self {
        Self::MalformedOutput {
            step: step.into(),
            expected: expected.into(),
            reply: reply.into(),
        }
    }
}

/// One rejected attempt of a chain step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The model's whole reply.
    pub reply: String,
    /// What was wrong with it, as told to the model on the retry.
    pub problem: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in reply {}", self.problem, Excerpt(&self.reply))
    }
}

/// Displays text quoted and cut to [`EXCERPT_CHARS`] characters.
pub(crate) struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.chars().count();
        if total <= EXCERPT_CHARS {
            write!(f, "{:?}", self.0)
        } else {
            let head: String = self.0.chars().take(EXCERPT_CHARS).collect();
            write!(f, "{head:?} (+{} more chars)", total - EXCERPT_CHARS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_output_quotes_a_bounded_excerpt() {
        let long = "x".repeat(1000);
        let e = Error::malformed("self-ask", "`So the final answer is:`", long);
        let msg = e.to_string();
        assert!(msg.starts_with(
            "self-ask: expected `So the final answer is:`, but the model replied \"xxx"
        ));
        assert!(msg.ends_with("(+800 more chars)"), "{msg}");
        assert!(msg.len() < 300);
    }

    #[test]
    fn short_replies_are_quoted_whole() {
        let e = Error::malformed("cot", "a number", "no idea");
        assert_eq!(
            e.to_string(),
            "cot: expected a number, but the model replied \"no idea\""
        );
    }
}
