//! Prompt chaining: steps whose outputs feed the next step.

use std::fmt;
use std::sync::Arc;

use kiln_chat_template::Message;
use serde::de::DeserializeOwned;

use crate::json::find_json;
use crate::{Attempt, Completion, Error, GenerationParams, Generator, StopReason, Tools};

type Prompt<I> = Arc<dyn Fn(&I) -> Vec<Message> + Send + Sync>;
type Parse<O> = Arc<dyn Fn(&str) -> Result<O, String> + Send + Sync>;
type Validate<O> = Arc<dyn Fn(&O) -> Result<(), String> + Send + Sync>;

/// One model call of a [`Chain`]: a prompt built from the step's input, and
/// a parser that turns the reply into the step's output.
///
/// A rejected reply (an empty text reply, JSON that is missing or malformed or
/// of the wrong shape, a failed [`validate`](Self::validate)) is retried up to
/// [`max_retries`](Self::max_retries) times: the model sees its reply and a
/// user turn saying exactly what was wrong. When every attempt fails the step
/// fails with [`Error::RetriesExhausted`], carrying all attempts.
///
/// A step given [`tools`](Self::tools) offers them to the model
/// ([`Generator::generate_with_tools`]): while the model answers with tool calls, the calls
/// (an assistant turn) and their results (`role: tool` turns) are appended to the step's
/// conversation and the model is asked again, at most
/// [`max_tool_rounds`](Self::max_tool_rounds) times; its first answer without calls is the reply
/// the step parses.
pub struct Step<I, O> {
    name: String,
    prompt: Prompt<I>,
    parse: Parse<O>,
    validate: Option<Validate<O>>,
    json: bool,
    max_retries: usize,
    params: GenerationParams,
    tools: Tools,
    max_tool_rounds: usize,
}

impl<I, O> Clone for Step<I, O> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            prompt: self.prompt.clone(),
            parse: self.parse.clone(),
            validate: self.validate.clone(),
            json: self.json,
            max_retries: self.max_retries,
            params: self.params.clone(),
            tools: self.tools.clone(),
            max_tool_rounds: self.max_tool_rounds,
        }
    }
}

impl<I, O> fmt::Debug for Step<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("json", &self.json)
            .field("validated", &self.validate.is_some())
            .field("max_retries", &self.max_retries)
            .field("params", &self.params)
            .field("tools", &self.tools)
            .field("max_tool_rounds", &self.max_tool_rounds)
            .finish()
    }
}

impl<I> Step<I, String> {
    /// A step whose output is the reply's text, whitespace-trimmed (an empty
    /// reply is rejected).
    pub fn text(
        name: impl Into<String>,
        prompt: impl Fn(&I) -> Vec<Message> + Send + Sync + 'static,
    ) -> Self {
        Self::with_parser(name, prompt, false, |reply| {
            let t = reply.trim();
            if t.is_empty() {
                Err("the reply is empty".to_owned())
            } else {
                Ok(t.to_owned())
            }
        })
    }
}

impl<I> Step<I, ()> {
    /// A step whose output is JSON parsed into `T`, found in the reply as
    /// [`extract_json`](crate::extract_json) does (prose and code fences are
    /// fine). Retries twice by default. Name `T` with a turbofish,
    /// `Step::json::<MyType>(...)`, or let it be inferred.
    pub fn json<T: DeserializeOwned + 'static>(
        name: impl Into<String>,
        prompt: impl Fn(&I) -> Vec<Message> + Send + Sync + 'static,
    ) -> Step<I, T> {
        Step::with_parser(name, prompt, true, find_json::<T>)
    }
}

impl<I, O> Step<I, O> {
    fn with_parser(
        name: impl Into<String>,
        prompt: impl Fn(&I) -> Vec<Message> + Send + Sync + 'static,
        json: bool,
        parse: impl Fn(&str) -> Result<O, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            prompt: Arc::new(prompt),
            parse: Arc::new(parse),
            validate: None,
            json,
            max_retries: 2,
            params: GenerationParams::default(),
            tools: Tools::new(),
            max_tool_rounds: 8,
        }
    }

    /// Offers `tools` to the model in this step (see [`Step`]).
    pub fn tools(mut self, tools: Tools) -> Self {
        self.tools = tools;
        self
    }

    /// Sets how many rounds of tool calls one attempt may take (default 8).
    pub fn max_tool_rounds(mut self, n: usize) -> Self {
        self.max_tool_rounds = n;
        self
    }

    /// Sets how many times a rejected reply is retried (default 2; 0 means one attempt).
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// Adds a check on the parsed output; its error message is told to the
    /// model on the retry (e.g. `"give at least 3 pairs"`).
    pub fn validate(
        mut self,
        check: impl Fn(&O) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validate = Some(Arc::new(check));
        self
    }

    /// Sets the generation parameters.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The messages of the first attempt for `input`.
    pub fn messages(&self, input: &I) -> Vec<Message> {
        (self.prompt)(input)
    }

    fn run(
        &self,
        generator: &dyn Generator,
        input: &I,
        trace: &mut Vec<StepRecord>,
    ) -> Result<O, Error> {
        let mut messages = self.messages(input);
        let mut attempts = Vec::new();
        let schemas = self.tools.schemas();
        if !self.tools.is_empty() {
            self.tools.names().map_err(|e| match e {
                Error::InvalidConfig { reason, .. } => Error::InvalidConfig {
                    strategy: "chain",
                    reason: format!("step `{}`: {reason}", self.name),
                },
                other => other,
            })?;
        }
        for _ in 0..=self.max_retries {
            let reply = self.reply(generator, &mut messages, &schemas)?;
            let parsed = (self.parse)(&reply.text).and_then(|value| match &self.validate {
                Some(check) => check(&value)
                    .map(|()| value)
                    .map_err(|why| format!("the answer was rejected: {why}")),
                None => Ok(value),
            });
            match parsed {
                Ok(value) => {
                    trace.push(StepRecord {
                        name: self.name.clone(),
                        messages,
                        reply: reply.text,
                        rejected: attempts,
                    });
                    return Ok(value);
                }
                Err(mut problem) => {
                    if reply.stop == StopReason::MaxTokens {
                        problem.push_str(" (the reply hit the token limit)");
                    }
                    messages.push(Message::assistant(reply.text.clone()));
                    messages.push(Message::user(self.feedback(&problem)));
                    attempts.push(Attempt {
                        reply: reply.text,
                        problem,
                    });
                }
            }
        }
        Err(Error::RetriesExhausted {
            step: self.name.clone(),
            attempts,
        })
    }

    /// The model's next answer without tool calls; the calls before it, and their results,
    /// are appended to `messages`.
    fn reply(
        &self,
        generator: &dyn Generator,
        messages: &mut Vec<Message>,
        schemas: &[serde_json::Value],
    ) -> Result<Completion, Error> {
        let step = || format!("chain step `{}`", self.name);
        if schemas.is_empty() {
            return generator
                .generate(messages, &self.params)
                .map_err(|e| Error::generator(step(), e));
        }
        for _ in 0..=self.max_tool_rounds {
            let reply = generator
                .generate_with_tools(messages, schemas, &self.params)
                .map_err(|e| Error::generator(step(), e))?;
            if reply.tool_calls.is_empty() {
                return Ok(reply);
            }
            let mut call = Message::assistant(reply.text);
            if call.text().is_empty() {
                call.content = None;
            }
            call.tool_calls = reply.tool_calls;
            let results: Vec<Message> = call
                .tool_calls
                .iter()
                .map(|c| self.tools.answer(c))
                .collect();
            messages.push(call);
            messages.extend(results);
        }
        Err(Error::ToolRoundsExhausted {
            step: self.name.clone(),
            rounds: self.max_tool_rounds,
        })
    }

    fn feedback(&self, problem: &str) -> String {
        if self.json {
            format!(
                "Your reply could not be used: {problem}. \
                 Reply again with only the corrected JSON and no other text."
            )
        } else {
            format!("Your reply could not be used: {problem}. Please answer again.")
        }
    }
}

/// What one step of a chain did; see [`Chain::run_traced`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// The messages of the accepted attempt (with earlier rejected replies
    /// and the feedback on them).
    pub messages: Vec<Message>,
    /// The accepted reply.
    pub reply: String,
    /// The rejected attempts before it.
    pub rejected: Vec<Attempt>,
}

type Runner<I, O> =
    Box<dyn Fn(&dyn Generator, I, &mut Vec<StepRecord>) -> Result<O, Error> + Send + Sync>;

/// Prompt chaining: a pipeline of [`Step`]s where each step's output is the
/// next step's input, typed end to end.
///
/// This is the practice of decomposing a task into a sequence of simpler
/// prompts (Wu et al. 2022, "AI Chains: Transparent and Controllable
/// Human-AI Interaction by Chaining Large Language Model Prompts"). Steps can
/// demand JSON parsed into a serde type, with retries that tell the model what
/// was wrong; [`map`](Self::map) inserts plain Rust between model calls.
///
/// ```
/// use kiln_prompting::testing::ScriptedGenerator;
/// use kiln_prompting::{Chain, Message, Step};
///
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Qa { question: String, answer: String }
///
/// let chain = Chain::new(Step::text("facts", |article: &String| {
///     vec![Message::user(format!("List the key facts of this article:\n{article}"))]
/// }))
/// .then(
///     Step::json::<Vec<Qa>>("qa", |facts: &String| {
///         vec![Message::user(format!(
///             "Write question/answer pairs about these facts as a JSON array of \
///              {{\"question\", \"answer\"}} objects:\n{facts}"
///         ))]
///     })
///     .validate(|qas| if qas.is_empty() { Err("give at least one pair".into()) } else { Ok(()) }),
/// );
///
/// let model = ScriptedGenerator::new([
///     "- The bridge opened in 1932.",
///     "Here you go: [{\"question\": \"When did the bridge open?\"}]",
///     "```json\n[{\"question\": \"When did the bridge open?\", \"answer\": \"1932\"}]\n```",
/// ]);
/// let qas = chain.run(&model, "The Sydney Harbour Bridge opened in 1932 ...".to_owned())?;
/// assert_eq!(qas, vec![Qa { question: "When did the bridge open?".into(), answer: "1932".into() }]);
///
/// // The model was told what was wrong with its first JSON.
/// let retry = model.calls()[2].messages.last().unwrap().text();
/// assert!(retry.contains("missing field `answer`"), "{retry}");
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
pub struct Chain<I, O> {
    names: Vec<String>,
    run: Runner<I, O>,
}

impl<I, O> fmt::Debug for Chain<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain").field("steps", &self.names).finish()
    }
}

impl<I: 'static, O: 'static> Chain<I, O> {
    /// A chain of one step.
    pub fn new(step: Step<I, O>) -> Self {
        Self {
            names: vec![step.name.clone()],
            run: Box::new(move |g, input, trace| step.run(g, &input, trace)),
        }
    }

    /// Appends a step that takes this chain's output.
    pub fn then<P: 'static>(self, step: Step<O, P>) -> Chain<I, P> {
        let mut names = self.names;
        names.push(step.name.clone());
        let first = self.run;
        Chain {
            names,
            run: Box::new(move |g, input, trace| {
                let mid = first(g, input, trace)?;
                step.run(g, &mid, trace)
            }),
        }
    }

    /// Appends a transformation in plain Rust (no model call, not traced).
    pub fn map<P: 'static>(self, f: impl Fn(O) -> P + Send + Sync + 'static) -> Chain<I, P> {
        let first = self.run;
        Chain {
            names: self.names,
            run: Box::new(move |g, input, trace| first(g, input, trace).map(&f)),
        }
    }

    /// The names of the model steps, in order.
    pub fn steps(&self) -> &[String] {
        &self.names
    }

    /// Runs every step on `input` and returns the last output.
    pub fn run(&self, generator: &dyn Generator, input: I) -> Result<O, Error> {
        (self.run)(generator, input, &mut Vec::new())
    }

    /// Like [`run`](Self::run), also returning what each model step did.
    pub fn run_traced(
        &self,
        generator: &dyn Generator,
        input: I,
    ) -> Result<(O, Vec<StepRecord>), Error> {
        let mut trace = Vec::new();
        let out = (self.run)(generator, input, &mut trace)?;
        Ok((out, trace))
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
