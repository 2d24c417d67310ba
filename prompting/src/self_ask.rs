//! Self-ask prompting (Press et al. 2022).

use std::fmt;
use std::sync::Arc;

use kiln_chat_template::Message;

use crate::text::{find_ascii_ci, find_ascii_ci_last, first_line};
use crate::{Error, GenerationParams, Generator, GeneratorError};

const NEEDED: &str = "Are follow up questions needed here:";
const FOLLOW_UP: &str = "Follow up:";
const INTERMEDIATE: &str = "Intermediate answer:";
const FINAL: &str = "So the final answer is:";

/// A worked self-ask demonstration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfAskExample {
    /// The compositional question.
    pub question: String,
    /// Follow-up questions and their intermediate answers, in order.
    pub follow_ups: Vec<FollowUp>,
    /// The final answer.
    pub answer: String,
}

impl SelfAskExample {
    /// A demonstration; `follow_ups` are `(question, answer)` pairs.
    pub fn new<Q: Into<String>, A: Into<String>>(
        question: impl Into<String>,
        follow_ups: impl IntoIterator<Item = (Q, A)>,
        answer: impl Into<String>,
    ) -> Self {
        Self {
            question: question.into(),
            follow_ups: follow_ups
                .into_iter()
                .map(|(q, a)| FollowUp {
                    question: q.into(),
                    answer: a.into(),
                })
                .collect(),
            answer: answer.into(),
        }
    }

    /// The first two demonstrations of the paper's prompt (Muhammad Ali and
    /// Alan Turing; the founder of craigslist).
    pub fn paper() -> Vec<Self> {
        vec![
            Self::new(
                "Who lived longer, Muhammad Ali or Alan Turing?",
                [
                    (
                        "How old was Muhammad Ali when he died?",
                        "Muhammad Ali was 74 years old when he died.",
                    ),
                    (
                        "How old was Alan Turing when he died?",
                        "Alan Turing was 41 years old when he died.",
                    ),
                ],
                "Muhammad Ali",
            ),
            Self::new(
                "When was the founder of craigslist born?",
                [
                    (
                        "Who was the founder of craigslist?",
                        "Craigslist was founded by Craig Newmark.",
                    ),
                    (
                        "When was Craig Newmark born?",
                        "Craig Newmark was born on December 6, 1952.",
                    ),
                ],
                "December 6, 1952",
            ),
        ]
    }

    /// The demonstration as dialogue turns, in the form the live run uses.
    fn turns(&self) -> Vec<Message> {
        let mut m = vec![Message::user(format!("Question: {}", self.question))];
        if self.follow_ups.is_empty() {
            m.push(Message::assistant(format!(
                "{NEEDED} No.\n{FINAL} {}",
                self.answer
            )));
            return m;
        }
        for (i, f) in self.follow_ups.iter().enumerate() {
            let ask = if i == 0 {
                format!("{NEEDED} Yes.\n{FOLLOW_UP} {}", f.question)
            } else {
                format!("{FOLLOW_UP} {}", f.question)
            };
            m.push(Message::assistant(ask));
            m.push(Message::user(format!("{INTERMEDIATE} {}", f.answer)));
        }
        m.push(Message::assistant(format!("{FINAL} {}", self.answer)));
        m
    }
}

/// A follow-up question and its intermediate answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// The follow-up question the model asked.
    pub question: String,
    /// The intermediate answer it was given.
    pub answer: String,
}

/// The outcome of a self-ask run.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfAskAnswer {
    /// The final answer.
    pub answer: String,
    /// The follow-ups asked and answered, in order.
    pub follow_ups: Vec<FollowUp>,
    /// The dialogue for this question (without demonstrations), including
    /// the final assistant turn.
    pub transcript: Vec<Message>,
    /// Whether the depth limit was hit and the final answer was demanded.
    pub forced: bool,
}

type AnswerFn = Arc<dyn Fn(&str) -> Result<String, GeneratorError> + Send + Sync>;

#[derive(Clone)]
enum Answerer {
    Model,
    Function(AnswerFn),
}

impl fmt::Debug for Answerer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Model => "Model",
            Self::Function(_) => "Function",
        })
    }
}

/// Self-ask prompting (Press et al. 2022, "Measuring and Narrowing the
/// Compositionality Gap in Language Models").
///
/// The model decomposes a question: it answers `Are follow up questions
/// needed here:`, asks `Follow up:` questions, receives each `Intermediate
/// answer:`, and ends with `So the final answer is:`. Generation stops at
/// `Intermediate answer:` so the answer comes from the answerer: the model
/// itself in a separate plain call (the default), or a user function such as a
/// search engine ([`answer_with`](Self::answer_with), "self-ask + search
/// engine" in the paper).
///
/// In chat form each step is a turn: the model's questions are assistant
/// turns, intermediate answers are user turns (so strictly alternating
/// templates accept it), and the demonstrations (by default the paper's first
/// two) use the same turns. After [`max_depth`](Self::max_depth) follow-ups
/// (default 4) a further follow-up is not answered; the model is told to give
/// its final answer now, and the result is marked [`forced`](SelfAskAnswer::forced).
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{Message, SelfAsk};
///
/// let model = ScriptedGenerator::new([
///     "Are follow up questions needed here: Yes.\nFollow up: Who directed Jaws?",
///     "Follow up: Where is Steven Spielberg from?\nIntermediate answer: (made up)",
///     "So the final answer is: Cincinnati, Ohio.",
/// ]);
/// let search = |q: &str| Ok(match q {
///     "Who directed Jaws?" => "Jaws was directed by Steven Spielberg.".to_owned(),
///     _ => "Steven Spielberg was born in Cincinnati, Ohio.".to_owned(),
/// });
/// let out = SelfAsk::new().answer_with(search).run(&model, "Where is the director of Jaws from?")?;
/// assert_eq!(out.answer, "Cincinnati, Ohio");
/// assert_eq!(out.follow_ups[1].question, "Where is Steven Spielberg from?");
/// assert_eq!(
///     out.transcript[2],
///     Message::user("Intermediate answer: Jaws was directed by Steven Spielberg.")
/// );
/// assert!(model.calls()[0].params.stop.contains(&"Intermediate answer:".to_owned()));
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SelfAsk {
    demonstrations: Vec<SelfAskExample>,
    instruction: Option<String>,
    answerer: Answerer,
    max_depth: usize,
    params: GenerationParams,
}

impl Default for SelfAsk {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfAsk {
    /// Self-ask with the paper's demonstrations, the model as answerer and
    /// depth 4.
    pub fn new() -> Self {
        Self {
            demonstrations: SelfAskExample::paper(),
            instruction: None,
            answerer: Answerer::Model,
            max_depth: 4,
            params: GenerationParams::default(),
        }
    }

    /// Replaces the demonstrations.
    pub fn demonstrations(mut self, demos: impl IntoIterator<Item = SelfAskExample>) -> Self {
        self.demonstrations = demos.into_iter().collect();
        self
    }

    /// Adds a system prompt before the demonstrations.
    pub fn instruction(mut self, text: impl Into<String>) -> Self {
        self.instruction = Some(text.into());
        self
    }

    /// Answers follow-ups with `f` (a search, a lookup, a person) instead of the model.
    pub fn answer_with(
        mut self,
        f: impl Fn(&str) -> Result<String, GeneratorError> + Send + Sync + 'static,
    ) -> Self {
        self.answerer = Answerer::Function(Arc::new(f));
        self
    }

    /// Answers follow-ups by asking the model each one in a fresh conversation (the default).
    pub fn answer_with_model(mut self) -> Self {
        self.answerer = Answerer::Model;
        self
    }

    /// Sets the most follow-ups answered before a final answer is demanded.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets the generation parameters (the self-ask stop strings are added).
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The messages of the first call for `question`.
    pub fn messages(&self, question: &str) -> Vec<Message> {
        let mut m = Vec::new();
        m.extend(self.instruction.as_deref().map(Message::system));
        for d in &self.demonstrations {
            m.extend(d.turns());
        }
        m.push(Message::user(format!("Question: {question}")));
        m
    }

    /// Runs self-ask on `question`.
    pub fn run(&self, generator: &dyn Generator, question: &str) -> Result<SelfAskAnswer, Error> {
        const STEP: &str = "self-ask";
        let mut messages = self.messages(question);
        let transcript_start = messages.len() - 1;
        let params = self.params.with_extra_stops([INTERMEDIATE, "\nQuestion:"]);
        let mut follow_ups = Vec::new();
        let mut forced = false;
        loop {
            let reply = generator
                .generate(&messages, &params)
                .map_err(|e| Error::generator(STEP, e))?;
            // Cut where the model went past its turn, in case the generator
            // ignored the stop strings.
            let mut text = reply.text.as_str();
            for stop in [INTERMEDIATE, "\nQuestion:"] {
                if let Some(at) = find_ascii_ci(text, stop) {
                    text = &text[..at];
                }
            }
            let text = text.trim();

            let final_at = find_ascii_ci(text, FINAL);
            if final_at.is_some() || forced {
                let answer = match final_at {
                    Some(at) => first_line(&text[at + FINAL.len()..]),
                    // Told to answer, the model may drop the marker, but another
                    // follow-up is not an answer.
                    None if find_ascii_ci(text, FOLLOW_UP).is_none() => first_line(text),
                    None => "",
                };
                let answer = answer.strip_suffix('.').unwrap_or(answer).trim();
                if answer.is_empty() {
                    return Err(Error::malformed(
                        STEP,
                        format!("an answer after `{FINAL}`"),
                        reply.text,
                    ));
                }
                messages.push(Message::assistant(text));
                return Ok(SelfAskAnswer {
                    answer: answer.to_owned(),
                    follow_ups,
                    transcript: messages.split_off(transcript_start),
                    forced,
                });
            }

            let Some(at) = find_ascii_ci_last(text, FOLLOW_UP) else {
                return Err(Error::malformed(
                    STEP,
                    format!("`{FOLLOW_UP} ...` or `{FINAL} ...`"),
                    reply.text,
                ));
            };
            let follow_up = first_line(&text[at + FOLLOW_UP.len()..]).to_owned();
            if follow_up.is_empty() {
                return Err(Error::malformed(
                    STEP,
                    format!("a question after `{FOLLOW_UP}`"),
                    reply.text,
                ));
            }
            messages.push(Message::assistant(text));
            if follow_ups.len() == self.max_depth {
                forced = true;
                messages.push(Message::user(format!(
                    "No more follow up questions. Give your final answer now.\n{FINAL}"
                )));
                continue;
            }
            let answer = self.answer(generator, &follow_up)?;
            messages.push(Message::user(format!("{INTERMEDIATE} {answer}")));
            follow_ups.push(FollowUp {
                question: follow_up,
                answer,
            });
        }
    }

    fn answer(&self, generator: &dyn Generator, question: &str) -> Result<String, Error> {
        let answer = match &self.answerer {
            Answerer::Function(f) => f(question).map_err(|e| {
                Error::generator(format!("self-ask: answering follow-up {question:?}"), e)
            })?,
            Answerer::Model => {
                generator
                    .generate(&[Message::user(question)], &self.params)
                    .map_err(|e| {
                        Error::generator(format!("self-ask: answering follow-up {question:?}"), e)
                    })?
                    .text
            }
        };
        // One line keeps the transcript in the demonstrated shape.
        Ok(answer.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

#[cfg(test)]
#[path = "self_ask_tests.rs"]
mod tests;
