//! Typed prompt strategies over a [`Generator`].
//!
//! A strategy turns its inputs into chat [`Message`]s, calls a [`Generator`]
//! (anything that turns messages into a reply: a local model, a test script,
//! a remote endpoint), and interprets the answer. No tensors, no templates:
//! the generator renders messages with its own chat template, and a
//! [`RolePolicy`] reshapes conversations for templates that refuse a system
//! role or demand strict user/assistant alternation.
//!
//! | strategy | follows | returns |
//! |---|---|---|
//! | [`Conversation`] | rolling multi-turn chat with a token budget | reply text |
//! | [`ZeroShot`] | instruction + input + output constraints | reply text |
//! | [`FewShot`] | in-context examples (Brown et al. 2020), turns or inline, with selection | reply text |
//! | [`ChainOfThought`] | Kojima et al. 2022 (zero-shot), Wei et al. 2022 (few-shot) | [`Reasoned`] reasoning + answer |
//! | [`GeneratedKnowledge`] | Liu et al. 2022 | [`KnowledgeAnswer`] |
//! | [`SelfAsk`] | Press et al. 2022, with a pluggable follow-up answerer | [`SelfAskAnswer`] |
//! | [`Chain`] | prompt chaining with typed JSON steps and bounded retries; steps may call [`Tools`] | any type |
//!
//! ```
//! use kiln_prompting::testing::ScriptedGenerator;
//! use kiln_prompting::{AnswerKind, ChainOfThought, Generator, RolePolicy};
//!
//! // Any `Generator` works here; a real model is one line away.
//! let model = ScriptedGenerator::new(["5 + 7 = 12, minus 3 is 9. The answer is 9."])
//!     .with_role_policy(RolePolicy::gemma());
//! let cot = ChainOfThought::few_shot([])
//!     .system("Solve the problem.")
//!     .answer_kind(AnswerKind::Number);
//! let out = cot.run(&model, "I had 5 apples, got 7 more and ate 3. How many are left?")?;
//! assert_eq!(out.answer, "9");
//! assert_eq!(out.reasoning, "5 + 7 = 12, minus 3 is 9.");
//! // Gemma has no system role: the policy folded it into the user turn.
//! let sent = &model.inner().calls()[0].messages;
//! assert_eq!(sent.len(), 1);
//! assert!(sent[0].text().starts_with("Solve the problem.\n\nQ: I had 5 apples"));
//! # Ok::<(), kiln_prompting::Error>(())
//! ```
//!
//! Model output is never trusted: every parser fails with an [`Error`] naming
//! what it expected and quoting a bounded excerpt of what came back, and every
//! loop (self-ask depth, JSON retries) is bounded.
//!
//! The `testing` feature adds `testing::ScriptedGenerator`, a generator
//! that plays back scripted replies and records every call.

mod chain;
mod conversation;
mod cot;
mod error;
mod few_shot;
mod generator;
mod json;
mod knowledge;
mod policy;
mod self_ask;
mod text;
mod tools;
mod zero_shot;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use chain::{Chain, Step, StepRecord};
pub use conversation::Conversation;
pub use cot::{AnswerKind, ChainOfThought, CotExample, Extraction, Reasoned};
pub use error::{Attempt, Error};
pub use few_shot::{Example, FewShot, Layout};
pub use generator::{
    Completion, FnGenerator, GenerationParams, Generator, GeneratorError, StopReason, from_fn,
};
pub use json::extract_json;
pub use kiln_chat_template::{Message, ToolCall};
pub use knowledge::{Candidate, GeneratedKnowledge, Integration, KnowledgeAnswer, Sampling};
pub use policy::{RolePolicy, SystemRole, WithRolePolicy};
pub use self_ask::{FollowUp, SelfAsk, SelfAskAnswer, SelfAskExample};
pub use tools::{TemplateGenerator, Tools};
pub use zero_shot::ZeroShot;

/// Runs the README's example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
