//! Zero-shot prompting: an instruction, the input, and output constraints.

use kiln_chat_template::Message;

use crate::{Error, GenerationParams, Generator};

/// Zero-shot instruction prompting: a task instruction, the input, and
/// explicit output constraints, with no examples.
///
/// This is the instruction-following setting instruction-tuned models are
/// trained for (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot
/// Learners"; Ouyang et al. 2022, InstructGPT). Constraints are stated as a
/// list after the input, where small models are most likely to heed them.
///
/// The user message reads:
///
/// ```text
/// {instruction}
///
/// {input label}:
/// {input}
///
/// Constraints:
/// - {constraint}
/// ```
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{Message, ZeroShot};
///
/// let summarize = ZeroShot::new("Summarize the text.")
///     .input_label("Text")
///     .answer_in("Korean")
///     .max_sentences(3);
/// let model = ScriptedGenerator::new(["  서울은 한국의 수도이다.\n"]);
/// let summary = summarize.run(&model, "Seoul is the capital of South Korea ...")?;
/// assert_eq!(summary, "서울은 한국의 수도이다.");
/// assert_eq!(
///     model.calls()[0].messages,
///     vec![Message::user(
///         "Summarize the text.\n\nText:\nSeoul is the capital of South Korea ...\n\n\
///          Constraints:\n- Answer in Korean.\n- Use at most 3 sentences."
///     )]
/// );
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ZeroShot {
    instruction: String,
    system: Option<String>,
    input_label: String,
    constraints: Vec<String>,
    params: GenerationParams,
}

impl ZeroShot {
    /// A zero-shot prompt for `instruction`.
    pub fn new(instruction: impl Into<String>) -> Self {
        Self {
            instruction: instruction.into(),
            system: None,
            input_label: "Input".to_owned(),
            constraints: Vec::new(),
            params: GenerationParams::default(),
        }
    }

    /// Adds a system prompt before the user turn.
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system = Some(text.into());
        self
    }

    /// Sets the label written before the input (default `Input`).
    pub fn input_label(mut self, label: impl Into<String>) -> Self {
        self.input_label = label.into();
        self
    }

    /// Adds an output constraint, written as one list item.
    pub fn constraint(mut self, text: impl Into<String>) -> Self {
        self.constraints.push(text.into());
        self
    }

    /// Adds the constraint `Answer in {language}.`
    pub fn answer_in(self, language: &str) -> Self {
        self.constraint(format!("Answer in {language}."))
    }

    /// Adds the constraint `Use at most {n} sentence(s).`
    pub fn max_sentences(self, n: usize) -> Self {
        let unit = if n == 1 { "sentence" } else { "sentences" };
        self.constraint(format!("Use at most {n} {unit}."))
    }

    /// Sets the generation parameters.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The messages sent for `input` (an empty input leaves out the input section).
    pub fn messages(&self, input: &str) -> Vec<Message> {
        let mut text = self.instruction.clone();
        if !input.is_empty() {
            text.push_str(&format!("\n\n{}:\n{input}", self.input_label));
        }
        if !self.constraints.is_empty() {
            text.push_str("\n\nConstraints:");
            for c in &self.constraints {
                text.push_str("\n- ");
                text.push_str(c);
            }
        }
        let mut messages = Vec::with_capacity(2);
        messages.extend(self.system.as_deref().map(Message::system));
        messages.push(Message::user(text));
        messages
    }

    /// Runs the prompt and returns the whitespace-trimmed reply.
    pub fn run(&self, generator: &dyn Generator, input: &str) -> Result<String, Error> {
        let reply = generator
            .generate(&self.messages(input), &self.params)
            .map_err(|e| Error::generator("zero-shot", e))?;
        Ok(reply.text.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_only() {
        let z = ZeroShot::new("Tell a joke.").system("You are funny.");
        assert_eq!(
            z.messages(""),
            vec![
                Message::system("You are funny."),
                Message::user("Tell a joke.")
            ]
        );
    }

    #[test]
    fn one_sentence_is_singular() {
        let z = ZeroShot::new("Summarize.")
            .max_sentences(1)
            .constraint("No lists.");
        assert_eq!(
            z.messages("x")[0].text(),
            "Summarize.\n\nInput:\nx\n\nConstraints:\n- Use at most 1 sentence.\n- No lists."
        );
    }
}
