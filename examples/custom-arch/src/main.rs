//! Writes a `toy_bigram` model dir, registers the architecture and chats with it through the
//! same `ChatPipeline` the built-in models use.
//!
//! Run: `cargo run -p kiln-example-custom-arch -- [DIR] [PROMPT]`

use std::ops::ControlFlow;

use burn::backend::NdArray;
use kiln_chat_template::Message;
use kiln_models::generate::GenerationConfig;
use kiln_models::pipeline::{ChatPipeline, LoadOptions};
use kiln_models::registry::Registry;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kiln-toy-bigram"));
    let prompt = args.next().unwrap_or_else(|| "three".to_owned());
    kiln_example_custom_arch::write_checkpoint(&dir)?;
    println!("wrote {}", dir.display());

    let mut registry = Registry::<NdArray>::default();
    kiln_example_custom_arch::register(&mut registry);
    let pipeline = ChatPipeline::load_with(&dir, &LoadOptions::default(), &registry)?;
    let config = GenerationConfig {
        max_new_tokens: Some(20),
        ..GenerationConfig::default()
    };
    print!("{prompt} -> ");
    let out = pipeline.chat(&[Message::user(prompt.clone())], &config, &mut |delta| {
        print!("{delta}");
        ControlFlow::Continue(())
    })?;
    println!("\nstop: {:?}, tokens: {:?}", out.stop, out.tokens);
    Ok(())
}
