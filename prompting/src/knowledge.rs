//! Generated knowledge prompting (Liu et al. 2022).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use kiln_chat_template::Message;

use crate::text::answer_key;
use crate::{Error, GenerationParams, Generator};

/// How the knowledge statements are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sampling {
    /// One call per statement with the knowledge parameters (sampling, so
    /// that calls differ), as in the paper.
    #[default]
    Separate,
    /// One call asking for all statements, one per line (list markers such as
    /// `1.` or `-` are removed). Cheaper, and works with greedy decoding.
    List,
}

/// How the knowledge is used to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Integration {
    /// Answer once per statement, then pick one answer (the paper's method).
    #[default]
    EachStatement,
    /// Answer once with all statements in the prompt.
    AllAtOnce,
}

/// One answer and the knowledge it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The knowledge statement, or `None` for the unaided answer.
    pub knowledge: Option<String>,
    /// The answer, whitespace-trimmed.
    pub answer: String,
}

/// The outcome of a generated-knowledge run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeAnswer {
    /// The knowledge statements (deduplicated, in generation order).
    pub knowledge: Vec<String>,
    /// Every answer considered, in the order they were generated.
    pub candidates: Vec<Candidate>,
    /// The picked answer.
    pub answer: String,
}

type Scorer = Arc<dyn Fn(&str, &Candidate) -> f64 + Send + Sync>;

#[derive(Clone)]
enum Pick {
    Majority,
    First,
    Scored(Scorer),
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Majority => "Majority",
            Self::First => "First",
            Self::Scored(_) => "Scored",
        })
    }
}

/// Generated knowledge prompting (Liu et al. 2022, "Generated Knowledge
/// Prompting for Commonsense Reasoning").
///
/// Step 1 asks the model for `k` knowledge statements about the question with
/// the paper's prompt (`Generate some knowledge about the input.`, optional
/// `Input:`/`Knowledge:` demonstrations, then `Input: {question}\nKnowledge:`),
/// sampled with nucleus sampling (`top_p` 0.5, temperature 1.0, as in the
/// paper) unless told otherwise; duplicates are dropped. Step 2 answers the
/// question with each statement in the prompt (or all of them at once,
/// [`Integration::AllAtOnce`]) and picks one answer: by majority vote (the
/// default; answers differing only in case or final punctuation agree), the
/// first, or the highest score of a user scorer (the paper picks the answer
/// the model is most confident in, which a scorer with access to
/// log-probabilities can reproduce).
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{GeneratedKnowledge, Message};
///
/// let model = ScriptedGenerator::new([
///     "Golf is won by the player with the fewest strokes.",
///     "In golf, a lower score is better.",
///     "No.",
///     "no",
/// ]);
/// let gk = GeneratedKnowledge::new(2).answer_instruction("Answer yes or no.");
/// let out = gk.run(&model, "Part of golf is trying to get a higher point total than others. Yes or no?")?;
/// assert_eq!(out.answer, "No.");
/// assert_eq!(out.knowledge.len(), 2);
/// assert_eq!(
///     model.calls()[2].messages,
///     vec![Message::user(
///         "Knowledge: Golf is won by the player with the fewest strokes.\n\n\
///          Question: Part of golf is trying to get a higher point total than others. Yes or no?\n\
///          Answer yes or no."
///     )]
/// );
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GeneratedKnowledge {
    count: usize,
    instruction: String,
    demonstrations: Vec<(String, String)>,
    sampling: Sampling,
    integration: Integration,
    unaided: bool,
    answer_instruction: Option<String>,
    pick: Pick,
    knowledge_params: GenerationParams,
    params: GenerationParams,
}

impl GeneratedKnowledge {
    /// Generates `count` knowledge statements per question.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            instruction: "Generate some knowledge about the input.".to_owned(),
            demonstrations: Vec::new(),
            sampling: Sampling::Separate,
            integration: Integration::EachStatement,
            unaided: false,
            answer_instruction: None,
            pick: Pick::Majority,
            knowledge_params: GenerationParams::default()
                .temperature(1.0)
                .top_p(0.5)
                .max_new_tokens(64),
            params: GenerationParams::default(),
        }
    }

    /// Replaces the knowledge instruction.
    pub fn instruction(mut self, text: impl Into<String>) -> Self {
        self.instruction = text.into();
        self
    }

    /// Adds a demonstration: a question and a helpful knowledge statement.
    pub fn demonstration(
        mut self,
        question: impl Into<String>,
        knowledge: impl Into<String>,
    ) -> Self {
        self.demonstrations
            .push((question.into(), knowledge.into()));
        self
    }

    /// Sets how statements are generated (default [`Sampling::Separate`]).
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Sets how knowledge is used to answer (default [`Integration::EachStatement`]).
    pub fn integration(mut self, integration: Integration) -> Self {
        self.integration = integration;
        self
    }

    /// Also answers without knowledge, as a candidate like the others (the
    /// paper's empty statement). Off by default.
    pub fn include_unaided(mut self, yes: bool) -> Self {
        self.unaided = yes;
        self
    }

    /// Adds a line after the question in every answer prompt (e.g. `Answer yes or no.`).
    pub fn answer_instruction(mut self, text: impl Into<String>) -> Self {
        self.answer_instruction = Some(text.into());
        self
    }

    /// Picks the most frequent answer (the default); ties go to the earliest.
    pub fn pick_majority(mut self) -> Self {
        self.pick = Pick::Majority;
        self
    }

    /// Picks the first answer.
    pub fn pick_first(mut self) -> Self {
        self.pick = Pick::First;
        self
    }

    /// Picks the answer that `scorer(question, candidate)` rates highest; ties go to the earliest.
    pub fn pick_by(
        mut self,
        scorer: impl Fn(&str, &Candidate) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.pick = Pick::Scored(Arc::new(scorer));
        self
    }

    /// Sets the parameters of the knowledge calls.
    pub fn knowledge_params(mut self, params: GenerationParams) -> Self {
        self.knowledge_params = params;
        self
    }

    /// Sets the parameters of the answer calls.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The messages of the knowledge call(s) for `question`.
    pub fn knowledge_messages(&self, question: &str) -> Vec<Message> {
        let instruction = match self.sampling {
            Sampling::Separate => self.instruction.clone(),
            Sampling::List => format!(
                "{} Write {} different statements, one per line.",
                self.instruction, self.count
            ),
        };
        let mut blocks = vec![instruction];
        for (q, k) in &self.demonstrations {
            blocks.push(format!("Input: {q}\nKnowledge: {k}"));
        }
        blocks.push(format!("Input: {question}\nKnowledge:"));
        vec![Message::user(blocks.join("\n\n"))]
    }

    /// The messages of one answer call given `knowledge` (none: unaided).
    pub fn answer_messages(&self, question: &str, knowledge: &[String]) -> Vec<Message> {
        let mut text = match knowledge {
            [] => String::new(),
            [one] => format!("Knowledge: {one}\n\n"),
            many => {
                let list: Vec<String> = many.iter().map(|k| format!("- {k}")).collect();
                format!("Knowledge:\n{}\n\n", list.join("\n"))
            }
        };
        text.push_str("Question: ");
        text.push_str(question);
        if let Some(a) = &self.answer_instruction {
            text.push('\n');
            text.push_str(a);
        }
        vec![Message::user(text)]
    }

    /// Generates knowledge, answers with it, and picks an answer.
    pub fn run(&self, generator: &dyn Generator, question: &str) -> Result<KnowledgeAnswer, Error> {
        if self.count == 0 {
            return Err(Error::InvalidConfig {
                strategy: "generated-knowledge",
                reason: "the number of knowledge statements must be at least 1".to_owned(),
            });
        }
        let knowledge = self.generate_knowledge(generator, question)?;

        let mut prompts: Vec<Option<Vec<String>>> = Vec::new();
        if self.unaided {
            prompts.push(None);
        }
        match self.integration {
            Integration::EachStatement => {
                prompts.extend(knowledge.iter().map(|k| Some(vec![k.clone()])));
            }
            Integration::AllAtOnce => prompts.push(Some(knowledge.clone())),
        }
        let mut candidates = Vec::with_capacity(prompts.len());
        for k in prompts {
            let messages = self.answer_messages(question, k.as_deref().unwrap_or(&[]));
            let reply = generator
                .generate(&messages, &self.params)
                .map_err(|e| Error::generator("generated-knowledge: answer", e))?;
            candidates.push(Candidate {
                knowledge: k.map(|k| k.join("\n")),
                answer: reply.text.trim().to_owned(),
            });
        }
        let answer = self.pick(question, &candidates)?;
        Ok(KnowledgeAnswer {
            knowledge,
            candidates,
            answer,
        })
    }

    fn generate_knowledge(
        &self,
        generator: &dyn Generator,
        question: &str,
    ) -> Result<Vec<String>, Error> {
        const STEP: &str = "generated-knowledge: knowledge";
        let messages = self.knowledge_messages(question);
        let mut raw = Vec::new();
        let mut replies = Vec::new();
        match self.sampling {
            Sampling::Separate => {
                let params = self.knowledge_params.with_extra_stops(["\nInput:", "\n\n"]);
                for _ in 0..self.count {
                    let reply = generator
                        .generate(&messages, &params)
                        .map_err(|e| Error::generator(STEP, e))?;
                    raw.push(reply.text.trim().to_owned());
                    replies.push(reply.text);
                }
            }
            Sampling::List => {
                let params = self.knowledge_params.with_extra_stops(["\nInput:"]);
                let reply = generator
                    .generate(&messages, &params)
                    .map_err(|e| Error::generator(STEP, e))?;
                raw.extend(reply.text.lines().map(strip_list_marker).take(self.count));
                replies.push(reply.text);
            }
        }
        let mut seen = std::collections::HashSet::new();
        let knowledge: Vec<String> = raw
            .into_iter()
            .filter(|k| !k.is_empty() && seen.insert(answer_key(k)))
            .collect();
        if knowledge.is_empty() {
            return Err(Error::malformed(
                STEP,
                "at least one knowledge statement",
                replies.join("\n"),
            ));
        }
        Ok(knowledge)
    }

    fn pick(&self, question: &str, candidates: &[Candidate]) -> Result<String, Error> {
        let usable: Vec<(usize, &Candidate)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.answer.is_empty())
            .collect();
        let chosen = match &self.pick {
            Pick::First => usable.first().map(|(i, _)| *i),
            Pick::Majority => {
                let mut votes: HashMap<String, usize> = HashMap::new();
                for (_, c) in &usable {
                    *votes.entry(answer_key(&c.answer)).or_default() += 1;
                }
                let best = votes.values().copied().max().unwrap_or(0);
                usable
                    .iter()
                    .find(|(_, c)| votes.get(&answer_key(&c.answer)) == Some(&best))
                    .map(|(i, _)| *i)
            }
            Pick::Scored(scorer) => usable
                .iter()
                .map(|(i, c)| (*i, scorer(question, c)))
                .reduce(|best, next| {
                    if next.1.total_cmp(&best.1).is_gt() {
                        next
                    } else {
                        best
                    }
                })
                .map(|(i, _)| i),
        };
        chosen.map(|i| candidates[i].answer.clone()).ok_or_else(|| {
            Error::malformed("generated-knowledge: answer", "a non-empty answer", "")
        })
    }
}

/// Removes a leading `1.`, `1)`, `-`, `*` or `•` list marker and trims.
fn strip_list_marker(line: &str) -> String {
    let t = line.trim();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let t = if digits > 0 && (t[digits..].starts_with('.') || t[digits..].starts_with(')')) {
        &t[digits + 1..]
    } else {
        t.strip_prefix(['-', '*', '•']).unwrap_or(t)
    };
    t.trim().to_owned()
}

#[cfg(test)]
#[path = "knowledge_tests.rs"]
mod tests;
