//! Few-shot prompting: demonstrations before the query.

use std::fmt;
use std::sync::Arc;

use kiln_chat_template::Message;

use crate::{Error, GenerationParams, Generator};

/// One demonstration: an input and the output the model should imitate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The demonstration's input.
    pub input: String,
    /// The output for that input.
    pub output: String,
}

impl Example {
    /// An example mapping `input` to `output`.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
        }
    }
}

/// Where the examples go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Each example is a user turn and an assistant turn; the instruction is
    /// the system prompt. Chat models learn most from this form.
    #[default]
    Turns,
    /// All examples inline in one user message, `Input: ...` / `Output: ...`
    /// pairs ending with an open `Output:`, as in GPT-3's prompts. A stop
    /// string at the next `Input:` label keeps the model from inventing more
    /// examples.
    Inline,
}

type Scorer = Arc<dyn Fn(&str, &Example) -> f64 + Send + Sync>;

#[derive(Clone)]
enum Selector {
    All,
    First(usize),
    Scored(usize, Scorer),
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("All"),
            Self::First(k) => write!(f, "First({k})"),
            Self::Scored(k, _) => write!(f, "Scored({k})"),
        }
    }
}

/// Few-shot (in-context) prompting: demonstrations of the task, then the query
/// (Brown et al. 2020, "Language Models are Few-Shot Learners").
///
/// Examples go in as alternating user/assistant turns ([`Layout::Turns`], the
/// default) or inline in a single prompt ([`Layout::Inline`]). By default all
/// examples are used in order; [`select_first`](Self::select_first) keeps the
/// first `k`, and [`select_by`](Self::select_by) keeps the `k` best for the
/// query under a scorer (e.g. embedding similarity, as in Liu et al. 2022,
/// "What Makes Good In-Context Examples for GPT-3?"). Selected examples are
/// placed in ascending score order, so the most relevant sits next to the
/// query; ties keep the order they were given in.
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{Example, FewShot, Layout, Message};
///
/// let antonyms = FewShot::new("Give the antonym.")
///     .example(Example::new("hot", "cold"))
///     .example(Example::new("tall", "short"))
///     .layout(Layout::Inline);
/// let model = ScriptedGenerator::new([" slow\nInput: big\nOutput: small"]);
/// assert_eq!(antonyms.run(&model, "fast")?, "slow");
/// assert_eq!(
///     model.calls()[0].messages,
///     vec![Message::user(
///         "Give the antonym.\n\nInput: hot\nOutput: cold\n\nInput: tall\nOutput: short\n\nInput: fast\nOutput:"
///     )]
/// );
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FewShot {
    instruction: String,
    examples: Vec<Example>,
    layout: Layout,
    selector: Selector,
    input_label: String,
    output_label: String,
    params: GenerationParams,
}

impl FewShot {
    /// A few-shot prompt for `instruction` (may be empty) without examples yet.
    pub fn new(instruction: impl Into<String>) -> Self {
        Self {
            instruction: instruction.into(),
            examples: Vec::new(),
            layout: Layout::Turns,
            selector: Selector::All,
            input_label: "Input".to_owned(),
            output_label: "Output".to_owned(),
            params: GenerationParams::default(),
        }
    }

    /// Adds one example.
    pub fn example(mut self, example: Example) -> Self {
        self.examples.push(example);
        self
    }

    /// Adds examples.
    pub fn examples(mut self, examples: impl IntoIterator<Item = Example>) -> Self {
        self.examples.extend(examples);
        self
    }

    /// Sets the layout (default [`Layout::Turns`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the labels of the inline layout (default `Input` and `Output`).
    pub fn labels(mut self, input: impl Into<String>, output: impl Into<String>) -> Self {
        self.input_label = input.into();
        self.output_label = output.into();
        self
    }

    /// Uses only the first `k` examples.
    pub fn select_first(mut self, k: usize) -> Self {
        self.selector = Selector::First(k);
        self
    }

    /// Uses the `k` examples that `scorer(query, example)` rates highest.
    pub fn select_by(
        mut self,
        k: usize,
        scorer: impl Fn(&str, &Example) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.selector = Selector::Scored(k, Arc::new(scorer));
        self
    }

    /// Sets the generation parameters.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The examples used for `query`, in prompt order.
    pub fn selected(&self, query: &str) -> Vec<&Example> {
        match &self.selector {
            Selector::All => self.examples.iter().collect(),
            Selector::First(k) => self.examples.iter().take(*k).collect(),
            Selector::Scored(k, scorer) => {
                let mut scored: Vec<(usize, f64)> = self
                    .examples
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i, scorer(query, e)))
                    .collect();
                // Best first; among equals the earlier example wins.
                scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                scored.truncate(*k);
                scored.reverse();
                scored.iter().map(|(i, _)| &self.examples[*i]).collect()
            }
        }
    }

    /// The messages sent for `query`.
    pub fn messages(&self, query: &str) -> Vec<Message> {
        let examples = self.selected(query);
        match self.layout {
            Layout::Turns => {
                let mut m = Vec::with_capacity(2 * examples.len() + 2);
                if !self.instruction.is_empty() {
                    m.push(Message::system(self.instruction.as_str()));
                }
                for e in examples {
                    m.push(Message::user(e.input.as_str()));
                    m.push(Message::assistant(e.output.as_str()));
                }
                m.push(Message::user(query));
                m
            }
            Layout::Inline => {
                let (i, o) = (&self.input_label, &self.output_label);
                let mut blocks = Vec::with_capacity(examples.len() + 2);
                if !self.instruction.is_empty() {
                    blocks.push(self.instruction.clone());
                }
                for e in examples {
                    blocks.push(format!("{i}: {}\n{o}: {}", e.input, e.output));
                }
                blocks.push(format!("{i}: {query}\n{o}:"));
                vec![Message::user(blocks.join("\n\n"))]
            }
        }
    }

    /// The parameters sent: the configured ones, plus for the inline layout a
    /// stop string at the next input label.
    fn effective_params(&self) -> GenerationParams {
        match self.layout {
            Layout::Turns => self.params.clone(),
            Layout::Inline => {
                let stop = format!("\n{}:", self.input_label);
                self.params.with_extra_stops([stop.as_str()])
            }
        }
    }

    /// Runs the prompt and returns the whitespace-trimmed reply.
    pub fn run(&self, generator: &dyn Generator, query: &str) -> Result<String, Error> {
        let reply = generator
            .generate(&self.messages(query), &self.effective_params())
            .map_err(|e| Error::generator("few-shot", e))?;
        Ok(reply.text.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedGenerator;

    fn shots() -> FewShot {
        FewShot::new("Classify the sentiment.").examples([
            Example::new("I loved it", "positive"),
            Example::new("Terrible food", "negative"),
            Example::new("Loved the terrible food", "mixed"),
        ])
    }

    #[test]
    fn turns_layout_is_exact() {
        let g = ScriptedGenerator::new(["positive"]);
        assert_eq!(
            shots().select_first(2).run(&g, "Great!").unwrap(),
            "positive"
        );
        let call = &g.calls()[0];
        assert_eq!(
            call.messages,
            vec![
                Message::system("Classify the sentiment."),
                Message::user("I loved it"),
                Message::assistant("positive"),
                Message::user("Terrible food"),
                Message::assistant("negative"),
                Message::user("Great!"),
            ]
        );
        assert!(call.params.stop.is_empty());
    }

    #[test]
    fn scorer_keeps_top_k_with_best_last_and_stable_ties() {
        // Score = number of words shared with the query.
        let overlap = |q: &str, e: &Example| {
            let q: Vec<&str> = q.split_whitespace().collect();
            e.input.split_whitespace().filter(|w| q.contains(w)).count() as f64
        };
        let f = shots().select_by(2, overlap);
        let outputs = |f: &FewShot, q: &str| -> Vec<String> {
            f.selected(q).iter().map(|e| e.output.clone()).collect()
        };
        // Scores 0, 1, 2: the best two, the best one last.
        assert_eq!(outputs(&f, "terrible food"), ["negative", "mixed"]);
        // Scores 0, 1, 1: a tie; the earlier example counts as better.
        assert_eq!(outputs(&f, "food"), ["mixed", "negative"]);
        assert_eq!(
            outputs(&shots().select_by(1, overlap), "food"),
            ["negative"]
        );
    }

    #[test]
    fn nan_scores_do_not_panic() {
        let f = shots().select_by(5, |_, _| f64::NAN);
        assert_eq!(f.selected("x").len(), 3);
    }

    #[test]
    fn inline_layout_adds_a_label_stop_string_and_custom_labels() {
        let g = ScriptedGenerator::new(["négatif\nAvis: autre"]);
        let f = FewShot::new("")
            .example(Example::new("Nul", "négatif"))
            .labels("Avis", "Sentiment")
            .layout(Layout::Inline)
            .params(GenerationParams::default().stop(["###"]));
        assert_eq!(f.run(&g, "Bof").unwrap(), "négatif");
        let call = &g.calls()[0];
        assert_eq!(
            call.messages,
            vec![Message::user(
                "Avis: Nul\nSentiment: négatif\n\nAvis: Bof\nSentiment:"
            )]
        );
        assert_eq!(
            call.params.stop,
            vec!["###".to_owned(), "\nAvis:".to_owned()]
        );
    }
}
