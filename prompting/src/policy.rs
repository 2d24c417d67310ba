//! Role policies: rewriting a conversation into the shape a chat template accepts.

use kiln_chat_template::{Content, ContentPart, Message};

use crate::{Completion, Error, GenerationParams, Generator, GeneratorError};

/// What to do with `system` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemRole {
    /// The template accepts a system role: leave system messages alone.
    Native,
    /// The template has no system role (Gemma 1/2, Mistral-7B-Instruct v0.1):
    /// fold each system message into the user turn that follows it, separated
    /// by the policy's separator. A system message not followed by a user turn
    /// becomes a user turn of its own.
    FoldIntoUser,
}

/// How a model family wants its conversation shaped before the chat template
/// renders it.
///
/// Strategies write conversations naturally (a system prompt, few-shot turns,
/// several user messages in a row). Some templates reject that: Gemma's and
/// Mistral v0.1's raise on a system role, and several Mistral and Gemma
/// templates raise unless roles alternate user/assistant. A policy rewrites the
/// messages so the template accepts them, in two steps:
///
/// 1. system messages are kept or folded into the next user turn
///    ([`SystemRole`]);
/// 2. with [`alternate`](Self::alternate), consecutive turns of the same role
///    are merged into one (texts joined by the separator) and the conversation
///    must then start with a user turn, else [`Error::RoleOrder`].
///
/// Pick a policy by family ([`gemma`](Self::gemma),
/// [`mistral_v1`](Self::mistral_v1), [`strict_alternation`](Self::strict_alternation)),
/// infer it from the template source ([`infer`](Self::infer)), or build one.
/// Apply it to messages with [`apply`](Self::apply), or to every call of a
/// generator with [`Generator::with_role_policy`].
///
/// ```
/// use kiln_prompting::{Message, RolePolicy};
///
/// // Gemma 2's template raises on a system role and on two user turns in a row.
/// let gemma2 = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}\
///     {% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
///     {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% endfor %}";
/// let policy = RolePolicy::infer(gemma2);
/// assert_eq!(policy, RolePolicy::gemma());
///
/// let shaped = policy.apply(&[
///     Message::system("Answer in French."),
///     Message::user("Hello!"),
///     Message::user("How are you?"),
/// ])?;
/// assert_eq!(shaped, vec![Message::user("Answer in French.\n\nHello!\n\nHow are you?")]);
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    system: SystemRole,
    alternate: bool,
    separator: String,
}

impl Default for RolePolicy {
    fn default() -> Self {
        Self::native()
    }
}

impl RolePolicy {
    /// Leaves conversations unchanged (Llama 3, Qwen, ChatML templates such as SmolLM2's).
    pub fn native() -> Self {
        Self {
            system: SystemRole::Native,
            alternate: false,
            separator: "\n\n".to_owned(),
        }
    }

    /// Gemma (1, 2 and 3): no system role, strict user/assistant alternation.
    ///
    /// Gemma 3's template folds a leading system message into the first user
    /// turn itself, as `system + "\n\n" + user`; this policy produces the same
    /// text, and also works for Gemma 1 and 2, whose templates raise instead.
    pub fn gemma() -> Self {
        Self::native()
            .system(SystemRole::FoldIntoUser)
            .alternate(true)
    }

    /// Mistral-7B-Instruct v0.1 / Mixtral-8x7B-Instruct v0.1 templates: no
    /// system role, strict user/assistant alternation.
    pub fn mistral_v1() -> Self {
        Self::gemma()
    }

    /// A system role at the start, then strict alternation (Mistral Nemo,
    /// Mistral Small 3.x, Ministral templates).
    pub fn strict_alternation() -> Self {
        Self::native().alternate(true)
    }

    /// Sets how system messages are handled.
    pub fn system(mut self, system: SystemRole) -> Self {
        self.system = system;
        self
    }

    /// Sets whether consecutive same-role turns are merged and the
    /// conversation must alternate user/assistant.
    pub fn alternate(mut self, alternate: bool) -> Self {
        self.alternate = alternate;
        self
    }

    /// Sets the text placed between folded or merged contents (default `"\n\n"`).
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// How system messages are handled.
    pub fn system_role(&self) -> SystemRole {
        self.system
    }

    /// Whether the policy enforces user/assistant alternation.
    pub fn requires_alternation(&self) -> bool {
        self.alternate
    }

    /// Infers the policy a chat template needs from its source.
    ///
    /// Reads the messages of the template's `raise_exception(...)` calls:
    /// * a message containing "alternate" means strict alternation;
    /// * a message saying a system role/message is "not supported" (or "not
    ///   allowed"/"unsupported"), or one listing the only supported roles
    ///   without `system` in a template that never compares a role with
    ///   `'system'`, means there is no system role.
    ///
    /// A template that silently drops system messages without raising is not
    /// detected; pick [`SystemRole::FoldIntoUser`] for it by hand.
    pub fn infer(template_source: &str) -> Self {
        let raised: Vec<String> = raise_messages(template_source)
            .into_iter()
            .map(|m| m.to_lowercase())
            .collect();
        let alternate = raised.iter().any(|m| m.contains("alternate"));
        let compares_system =
            template_source.contains("'system'") || template_source.contains("\"system\"");
        let refuses_system = raised.iter().any(|m| {
            m.contains("system")
                && ["not supported", "not allowed", "unsupported"]
                    .iter()
                    .any(|no| m.contains(no))
        });
        let lists_roles_without_system = !compares_system
            && raised.iter().any(|m| {
                m.contains("only")
                    && m.contains("roles")
                    && m.contains("supported")
                    && !m.contains("system")
            });
        let system = if refuses_system || lists_roles_without_system {
            SystemRole::FoldIntoUser
        } else {
            SystemRole::Native
        };
        Self::native().system(system).alternate(alternate)
    }

    /// Rewrites `messages` into the shape this policy describes.
    pub fn apply(&self, messages: &[Message]) -> Result<Vec<Message>, Error> {
        let folded = match self.system {
            SystemRole::Native => messages.to_vec(),
            SystemRole::FoldIntoUser => self.fold_system(messages),
        };
        if !self.alternate {
            return Ok(folded);
        }
        let mut merged: Vec<Message> = Vec::with_capacity(folded.len());
        for m in folded {
            match merged.last_mut() {
                Some(last) if last.role == m.role && is_turn(&m.role) => {
                    self.merge_into(last, m);
                }
                _ => merged.push(m),
            }
        }
        // After merging, only a leading assistant turn (or a user/assistant pair
        // split by another role, such as `tool`) can still break alternation.
        let mut expect_user = true;
        for (index, m) in merged.iter().enumerate() {
            if !is_turn(&m.role) {
                continue;
            }
            let expected = if expect_user { "user" } else { "assistant" };
            if m.role != expected {
                return Err(Error::RoleOrder {
                    index,
                    role: m.role.clone(),
                    expected: expected.to_owned(),
                });
            }
            expect_user = !expect_user;
        }
        Ok(merged)
    }

    fn fold_system(&self, messages: &[Message]) -> Vec<Message> {
        let mut out = Vec::with_capacity(messages.len());
        let mut pending: Vec<String> = Vec::new();
        for m in messages {
            if m.role == "system" {
                pending.push(m.text());
                continue;
            }
            if pending.is_empty() {
                out.push(m.clone());
                continue;
            }
            let system_text = pending.join(&self.separator);
            pending.clear();
            if m.role == "user" {
                let mut user = Message::user(system_text);
                self.merge_into(&mut user, m.clone());
                user.name = m.name.clone();
                out.push(user);
            } else {
                out.push(Message::user(system_text));
                out.push(m.clone());
            }
        }
        if !pending.is_empty() {
            out.push(Message::user(pending.join(&self.separator)));
        }
        out
    }

    /// Appends `next`'s content, tool calls and extra keys to `into`.
    fn merge_into(&self, into: &mut Message, next: Message) {
        into.content = match (into.content.take(), next.content) {
            (None, c) | (c, None) => c,
            (Some(Content::Text(a)), Some(Content::Text(b))) if a.is_empty() => {
                Some(Content::Text(b))
            }
            (Some(Content::Text(a)), Some(Content::Text(b))) => {
                Some(Content::Text(format!("{a}{}{b}", self.separator)))
            }
            (Some(a), Some(b)) => {
                let mut parts = into_parts(a);
                parts.push(text_part(&self.separator));
                parts.extend(into_parts(b));
                Some(Content::Parts(parts))
            }
        };
        into.tool_calls.extend(next.tool_calls);
        for (k, v) in next.extra {
            into.extra.entry(k).or_insert(v);
        }
    }
}

fn is_turn(role: &str) -> bool {
    role == "user" || role == "assistant"
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".to_owned(),
        text: Some(text.to_owned()),
        extra: Default::default(),
    }
}

fn into_parts(c: Content) -> Vec<ContentPart> {
    match c {
        Content::Text(t) => vec![text_part(&t)],
        Content::Parts(p) => p,
    }
}

/// The string literals inside each `raise_exception(...)` call, joined per call.
fn raise_messages(src: &str) -> Vec<String> {
    const CALL: &str = "raise_exception(";
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(CALL) {
        rest = &rest[at + CALL.len()..];
        let mut depth = 0usize;
        let mut literals = Vec::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' | '"' => {
                    let mut lit = String::new();
                    let mut escaped = false;
                    for (_, d) in chars.by_ref() {
                        match d {
                            _ if escaped => {
                                lit.push(d);
                                escaped = false;
                            }
                            '\\' => escaped = true,
                            _ if d == c => break,
                            _ => lit.push(d),
                        }
                    }
                    literals.push(lit);
                }
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        out.push(literals.join(" "));
        rest = &rest[end..];
    }
    out
}

/// A [`Generator`] that applies a [`RolePolicy`] to every conversation before
/// passing it on; made by [`Generator::with_role_policy`].
#[derive(Debug, Clone)]
pub struct WithRolePolicy<G> {
    inner: G,
    policy: RolePolicy,
}

impl<G> WithRolePolicy<G> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: G, policy: RolePolicy) -> Self {
        Self { inner, policy }
    }

    /// The wrapped generator.
    pub fn inner(&self) -> &G {
        &self.inner
    }

    /// The policy applied.
    pub fn policy(&self) -> &RolePolicy {
        &self.policy
    }
}

impl<G: Generator> Generator for WithRolePolicy<G> {
    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        let shaped = self
            .policy
            .apply(messages)
            .map_err(GeneratorError::from_source)?;
        self.inner.generate(&shaped, params)
    }

    fn generate_with_tools(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        params: &GenerationParams,
    ) -> Result<Completion, GeneratorError> {
        let shaped = self
            .policy
            .apply(messages)
            .map_err(GeneratorError::from_source)?;
        self.inner.generate_with_tools(&shaped, tools, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_chat_template::Content;

    #[test]
    fn native_policy_changes_nothing() {
        let msgs = vec![Message::system("s"), Message::user("a"), Message::user("b")];
        assert_eq!(RolePolicy::native().apply(&msgs).unwrap(), msgs);
    }

    #[test]
    fn fold_keeps_turns_and_turns_a_lonely_system_into_a_user_turn() {
        let p = RolePolicy::native().system(SystemRole::FoldIntoUser);
        let out = p
            .apply(&[
                Message::system("s1"),
                Message::system("s2"),
                Message::assistant("hi"),
                Message::user("u"),
                Message::system("late"),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Message::user("s1\n\ns2"),
                Message::assistant("hi"),
                Message::user("u"),
                Message::user("late"),
            ]
        );
    }

    #[test]
    fn strict_alternation_merges_and_keeps_a_native_system() {
        let out = RolePolicy::strict_alternation()
            .separator("\n")
            .apply(&[
                Message::system("s"),
                Message::user("a"),
                Message::user("b"),
                Message::assistant("c"),
                Message::assistant("d"),
                Message::user("e"),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Message::system("s"),
                Message::user("a\nb"),
                Message::assistant("c\nd"),
                Message::user("e"),
            ]
        );
    }

    #[test]
    fn alternation_rejects_a_leading_assistant_turn() {
        let err = RolePolicy::gemma()
            .apply(&[Message::assistant("hello"), Message::user("hi")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "role policy: message 0 has role `assistant`, but the template expects `user` there"
        );
    }

    #[test]
    fn merging_parts_inserts_a_separator_part() {
        let parts: Message = serde_json::from_value(serde_json::json!({
            "role": "user",
            "content": [{"type": "image", "url": "cat.png"}, {"type": "text", "text": "what is it?"}]
        }))
        .unwrap();
        let out = RolePolicy::gemma()
            .apply(&[Message::system("Be brief."), parts])
            .unwrap();
        assert_eq!(out.len(), 1);
        let Some(Content::Parts(p)) = &out[0].content else {
            panic!("expected parts, got {:?}", out[0].content)
        };
        let kinds: Vec<_> = p.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["text", "text", "image", "text"]);
        assert_eq!(out[0].text(), "Be brief.\n\nwhat is it?");
    }

    #[test]
    fn raise_messages_reads_concatenated_literals_and_nested_parens() {
        let src = r#"{{ raise_exception('Invalid role ' + message['role'] + '. Only user are supported.') }}
            {{ raise_exception("it's \"quoted\" (really)") }}"#;
        assert_eq!(
            raise_messages(src),
            vec![
                "Invalid role  role . Only user are supported.".to_owned(),
                "it's \"quoted\" (really)".to_owned()
            ]
        );
    }
}
