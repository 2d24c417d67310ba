//! Chain-of-thought prompting, zero-shot and few-shot.

use kiln_chat_template::Message;

use crate::text::{find_ascii_ci_last, first_line, first_number};
use crate::{Error, GenerationParams, Generator};

/// One worked example for few-shot chain of thought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CotExample {
    /// The question.
    pub question: String,
    /// The step-by-step reasoning that leads to the answer.
    pub rationale: String,
    /// The final answer.
    pub answer: String,
}

impl CotExample {
    /// A worked example.
    pub fn new(
        question: impl Into<String>,
        rationale: impl Into<String>,
        answer: impl Into<String>,
    ) -> Self {
        Self {
            question: question.into(),
            rationale: rationale.into(),
            answer: answer.into(),
        }
    }
}

/// What kind of final answer to extract.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AnswerKind {
    /// Free text: the rest of the line, without a trailing period.
    #[default]
    Text,
    /// A number: the first number found, commas removed (`"1,250"` -> `"1250"`).
    Number,
    /// A multiple-choice letter among these (e.g. `"ABCDE"`), standing alone.
    Choice(String),
}

/// How the final answer is separated from the reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extraction {
    /// Look for the marker sentence (`The answer is ...`) in the reasoning,
    /// as the worked examples of Wei et al. teach; fail if it is missing.
    Marker,
    /// Ask a second time, feeding the reasoning back with an answer trigger
    /// such as `Therefore, the answer (arabic numerals) is` (Kojima et al.).
    FollowUp,
    /// The marker if present, else a follow-up call.
    MarkerOrFollowUp,
}

/// The outcome of a chain-of-thought run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoned {
    /// The model's reasoning (without the final answer sentence when the
    /// marker was found).
    pub reasoning: String,
    /// The extracted final answer.
    pub answer: String,
}

/// Chain-of-thought prompting: let the model reason step by step, then
/// extract the final answer separately from the reasoning.
///
/// * [`zero_shot`](Self::zero_shot) follows Kojima et al. 2022, "Large
///   Language Models are Zero-Shot Reasoners": the prompt `Q: {question}\nA:
///   Let's think step by step.` draws out reasoning, and a second call with
///   the reasoning and an answer trigger (`Therefore, the answer (arabic
///   numerals) is` for numbers) extracts the answer, which is then cleaned to
///   the [`AnswerKind`].
/// * [`few_shot`](Self::few_shot) follows Wei et al. 2022, "Chain-of-Thought
///   Prompting Elicits Reasoning in Large Language Models": worked examples
///   (`Q:` question as a user turn, `{rationale} The answer is {answer}.` as the
///   assistant turn) teach the model to end with `The answer is ...`, which is
///   parsed from the reply.
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{AnswerKind, ChainOfThought, Message};
///
/// let model = ScriptedGenerator::new([
///     "There are 16 balls. Half are golf balls, so 8. Half of those are blue, so 4.",
///     " 4.",
/// ]);
/// let cot = ChainOfThought::zero_shot().answer_kind(AnswerKind::Number);
/// let out = cot.run(&model, "A juggler has 16 balls. Half are golf balls, and half of \
///                            the golf balls are blue. How many blue golf balls are there?")?;
/// assert_eq!(out.answer, "4");
/// assert!(out.reasoning.ends_with("so 4."));
///
/// let calls = model.calls();
/// assert!(calls[0].messages[0].text().ends_with("blue golf balls are there?\nA: Let's think step by step."));
/// assert_eq!(calls[1].messages[1], Message::assistant(out.reasoning.clone()));
/// assert_eq!(calls[1].messages[2], Message::user("Therefore, the answer (arabic numerals) is"));
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChainOfThought {
    examples: Vec<CotExample>,
    system: Option<String>,
    trigger: Option<String>,
    marker: String,
    kind: AnswerKind,
    extraction: Extraction,
    params: GenerationParams,
    extraction_tokens: usize,
}

impl ChainOfThought {
    /// Zero-shot chain of thought (Kojima et al. 2022): trigger `Let's think
    /// step by step.`, answer extracted by a follow-up call.
    pub fn zero_shot() -> Self {
        Self {
            examples: Vec::new(),
            system: None,
            trigger: Some("Let's think step by step.".to_owned()),
            marker: "The answer is".to_owned(),
            kind: AnswerKind::Text,
            extraction: Extraction::FollowUp,
            params: GenerationParams::default(),
            extraction_tokens: 32,
        }
    }

    /// Few-shot chain of thought (Wei et al. 2022) with worked examples,
    /// answer parsed from the marker `The answer is`.
    pub fn few_shot(examples: impl IntoIterator<Item = CotExample>) -> Self {
        Self {
            examples: examples.into_iter().collect(),
            trigger: None,
            extraction: Extraction::Marker,
            ..Self::zero_shot()
        }
    }

    /// Adds a system prompt.
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system = Some(text.into());
        self
    }

    /// Sets (or with `None` removes) the reasoning trigger appended after the
    /// question as `A: {trigger}`.
    pub fn trigger(mut self, trigger: Option<&str>) -> Self {
        self.trigger = trigger.map(str::to_owned);
        self
    }

    /// Sets the marker that introduces the final answer (default `The answer is`,
    /// matched case-insensitively, last occurrence).
    pub fn marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = marker.into();
        self
    }

    /// Sets the kind of answer to extract (default [`AnswerKind::Text`]).
    pub fn answer_kind(mut self, kind: AnswerKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets how the answer is extracted.
    pub fn extraction(mut self, extraction: Extraction) -> Self {
        self.extraction = extraction;
        self
    }

    /// Sets the generation parameters of the reasoning call. The follow-up
    /// extraction call uses the same ones with at most 32 new tokens, as in
    /// Kojima et al.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The messages of the reasoning call.
    pub fn messages(&self, question: &str) -> Vec<Message> {
        let mut m = Vec::with_capacity(2 * self.examples.len() + 2);
        m.extend(self.system.as_deref().map(Message::system));
        for e in &self.examples {
            m.push(Message::user(format!("Q: {}", e.question)));
            let answer = e.answer.trim_end_matches('.');
            m.push(Message::assistant(format!(
                "{} {} {answer}.",
                e.rationale.trim(),
                self.marker
            )));
        }
        let mut q = format!("Q: {question}");
        if let Some(t) = &self.trigger {
            q.push_str("\nA: ");
            q.push_str(t);
        }
        m.push(Message::user(q));
        m
    }

    /// The answer trigger of the follow-up extraction call, per Kojima et al.
    fn answer_trigger(&self) -> String {
        match &self.kind {
            AnswerKind::Text => "Therefore, the answer is".to_owned(),
            AnswerKind::Number => "Therefore, the answer (arabic numerals) is".to_owned(),
            AnswerKind::Choice(letters) => match (letters.chars().next(), letters.chars().last()) {
                (Some(first), Some(last)) if first != last => {
                    format!("Therefore, among {first} through {last}, the answer is")
                }
                _ => "Therefore, the answer is".to_owned(),
            },
        }
    }

    /// Reasons about `question` and extracts the final answer.
    pub fn run(&self, generator: &dyn Generator, question: &str) -> Result<Reasoned, Error> {
        let mut messages = self.messages(question);
        let reply = generator
            .generate(&messages, &self.params)
            .map_err(|e| Error::generator("chain-of-thought: reasoning", e))?;
        let reasoning = reply.text.trim().to_owned();

        if self.extraction != Extraction::FollowUp {
            if let Some(at) = find_ascii_ci_last(&reasoning, &self.marker) {
                let tail = &reasoning[at + self.marker.len()..];
                let answer = self.clean(
                    first_line(tail),
                    "chain-of-thought: answer marker",
                    &reasoning,
                )?;
                return Ok(Reasoned {
                    reasoning: reasoning[..at].trim().to_owned(),
                    answer,
                });
            }
            if self.extraction == Extraction::Marker {
                return Err(Error::malformed(
                    "chain-of-thought: answer marker",
                    format!("reasoning ending with `{} ...`", self.marker),
                    reasoning,
                ));
            }
        }

        messages.push(Message::assistant(reasoning.clone()));
        messages.push(Message::user(self.answer_trigger()));
        let mut params = self.params.clone();
        params.max_new_tokens = params.max_new_tokens.min(self.extraction_tokens);
        let reply = generator
            .generate(&messages, &params)
            .map_err(|e| Error::generator("chain-of-thought: answer extraction", e))?;
        let answer = self.clean(
            reply.text.trim(),
            "chain-of-thought: answer extraction",
            &reply.text,
        )?;
        Ok(Reasoned { reasoning, answer })
    }

    /// Cleans a raw answer to the configured kind.
    fn clean(&self, raw: &str, step: &str, reply: &str) -> Result<String, Error> {
        let raw = raw.trim_start_matches([':', ' ']).trim();
        match &self.kind {
            AnswerKind::Text => {
                let t = raw.strip_suffix('.').unwrap_or(raw).trim();
                if t.is_empty() {
                    Err(Error::malformed(step, "a non-empty answer", reply))
                } else {
                    Ok(t.to_owned())
                }
            }
            AnswerKind::Number => first_number(raw)
                .ok_or_else(|| Error::malformed(step, "a number in the answer", reply)),
            AnswerKind::Choice(letters) => first_choice(raw, letters).ok_or_else(|| {
                Error::malformed(step, format!("one of the choices {letters}"), reply)
            }),
        }
    }
}

/// The first letter of `letters` standing alone in `s` (e.g. `(B)` or `B.`).
fn first_choice(s: &str, letters: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().find_map(|(i, c)| {
        let alone = (i == 0 || !chars[i - 1].is_alphanumeric())
            && chars.get(i + 1).is_none_or(|n| !n.is_alphanumeric());
        (alone && letters.contains(*c)).then(|| c.to_string())
    })
}

#[cfg(test)]
#[path = "cot_tests.rs"]
mod tests;
