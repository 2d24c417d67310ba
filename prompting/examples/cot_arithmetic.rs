//! Chain-of-thought on an arithmetic word problem, zero-shot (Kojima et al.)
//! and few-shot (Wei et al.).
//!
//! `cargo run -p kiln-prompting --example cot_arithmetic --features testing`.
//! To use a real model, replace the one line marked below with any `Generator`.

use kiln_prompting::testing::ScriptedGenerator;
use kiln_prompting::{AnswerKind, ChainOfThought, CotExample, Generator};

fn main() -> Result<(), kiln_prompting::Error> {
    // The one line to change for a real model.
    let model: Box<dyn Generator> = Box::new(scripted());

    let question = "A juggler can juggle 16 balls. Half of the balls are golf balls, and half of \
                    the golf balls are blue. How many blue golf balls are there?";

    let zero_shot = ChainOfThought::zero_shot().answer_kind(AnswerKind::Number);
    let out = zero_shot.run(&model, question)?;
    println!(
        "zero-shot reasoning:\n{}\nanswer: {}\n",
        out.reasoning, out.answer
    );

    let few_shot = ChainOfThought::few_shot([CotExample::new(
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. \
         After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. \
         So there must have been 21 - 15 = 6.",
        "6",
    )])
    .answer_kind(AnswerKind::Number);
    let out = few_shot.run(&model, question)?;
    println!(
        "few-shot reasoning:\n{}\nanswer: {}",
        out.reasoning, out.answer
    );
    Ok(())
}

fn scripted() -> ScriptedGenerator {
    ScriptedGenerator::new([
        "There are 16 balls in total. Half of the balls are golf balls. That means there are 8 \
         golf balls. Half of the golf balls are blue. That means there are 4 blue golf balls.",
        " 4.",
        "There are 16 balls and half are golf balls, so 16 / 2 = 8 golf balls. Half of the golf \
         balls are blue, so 8 / 2 = 4. The answer is 4.",
    ])
}
