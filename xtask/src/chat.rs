//! `cargo xtask chat [PROMPT]`: the main job on a fresh machine.

use std::process::Command;

use anyhow::{Result, ensure};

use crate::fetch;

/// The default chat model: SmolLM2-135M-Instruct in the artifact cache.
const DEFAULT_MODEL: (&str, &str) = ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf");

/// Fetches the default model if missing, builds the CLI (with CUDA when a GPU is usable) and
/// starts `kiln chat`, or answers `prompt` once.
pub fn run(prompt: Option<String>, extra: &[String]) -> Result<()> {
    fetch::fetch(&[DEFAULT_MODEL.0.to_owned()])?;
    let model = fetch::cache_dir()
        .join(DEFAULT_MODEL.0)
        .join(DEFAULT_MODEL.1);
    let gpu = std::path::Path::new("/proc/driver/nvidia/version").exists();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(fetch::repo_root())
        .args(["run", "--quiet", "--package", "kiln"]);
    if gpu {
        cmd.args(["--features", "cuda"]);
    }
    cmd.args(["--", "chat", "--model"]).arg(&model).args(extra);
    if let Some(p) = prompt {
        cmd.arg(p);
    }
    eprintln!(
        "building kiln ({}) and starting the chat ...",
        if gpu { "CUDA" } else { "CPU" }
    );
    let status = cmd.status()?;
    ensure!(status.success(), "kiln chat failed ({status})");
    Ok(())
}
