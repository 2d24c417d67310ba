//! `kiln quantize`: an HF safetensors model to a bitsandbytes checkpoint, tensor by tensor.
//!
//! The model is checked first (config, weight dtypes, embedding shapes) so that kiln never
//! writes a checkpoint it cannot load. The checkpoint is written into a hidden dir beside
//! `--out` and renamed into place once complete: a failed or interrupted run leaves `--out` as
//! it was and removes what it wrote.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_models::bert::BertConfig;
use kiln_models::config::{Architecture, ModelConfig};
use kiln_models::gemma::GemmaConfig;
use kiln_models::gemma2::Gemma2Config;
use kiln_models::gemma3::Gemma3Config;
use kiln_models::llama::LlamaConfig;
use kiln_models::mistral;
use kiln_models::resolve::resolve_model;
use kiln_quant::QuantConfig;
use kiln_quant::checkpoint::{INDEX_FILE, ModelFiles, quantize_checkpoint};
use kiln_quant::codec::{FloatDtype, FourBitType};

use super::common::Dtype;

/// The quantization format.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Quant {
    /// 4-bit NormalFloat.
    Nf4,
    /// 4-bit float.
    Fp4,
    /// LLM.int8 (row-wise int8 with outlier decomposition at run time).
    Int8,
}

/// Arguments of `kiln quantize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The HF model dir (single or sharded safetensors), or a hub id (`org/name[@revision]`)
    /// in the Hugging Face cache.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Where the quantized checkpoint goes (a new or empty dir, or any dir with `--force`).
    #[arg(long)]
    pub out: PathBuf,
    /// The format.
    #[arg(long, value_enum)]
    pub quant: Quant,
    /// Quantize the 4-bit absmax too (bitsandbytes' `bnb_4bit_use_double_quant`).
    #[arg(long)]
    pub double_quant: bool,
    /// 4-bit block size (32..4096).
    #[arg(long)]
    pub blocksize: Option<usize>,
    /// `bnb_4bit_compute_dtype`.
    #[arg(long, value_enum)]
    pub compute_dtype: Option<Dtype>,
    /// Modules to leave unquantized (`lm_head` and embeddings always are); repeatable.
    #[arg(long = "skip")]
    pub skip: Vec<String>,
    /// Replace a non-empty `--out` (the old checkpoint is removed once the new one is complete).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let config = quant_config(&args)?;
    let model = model_dir(&args.model)?;
    check_out(&model, &args.out, args.force)?;
    check_model(&model)?;

    let staging = Staging::new(&args.out)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tensors {wide_msg}")
            .context("progress bar template")?,
    );
    let summary = quantize_checkpoint(&model, staging.dir(), &config, |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.index as u64);
        bar.set_message(p.name.to_string());
    });
    bar.finish_and_clear();
    let summary = summary?;
    copy_rest(&model, staging.dir())?;
    staging.install(&args.out)?;

    writeln!(
        std::io::stdout(),
        "{}: {} weights quantized, {} tensors copied; {:.1} MiB -> {:.1} MiB; {:.3} bits per quantized parameter",
        args.out.display(),
        summary.tensors_quantized,
        summary.tensors_copied,
        summary.bytes_before as f64 / (1 << 20) as f64,
        summary.bytes_after as f64 / (1 << 20) as f64,
        summary.bits_per_param()
    )?;
    Ok(())
}

/// The `BitsAndBytesConfig` the flags describe; flags the format would ignore are errors.
fn quant_config(args: &Args) -> Result<QuantConfig> {
    let mut config = match args.quant {
        Quant::Nf4 => QuantConfig::four_bit(FourBitType::Nf4),
        Quant::Fp4 => QuantConfig::four_bit(FourBitType::Fp4),
        Quant::Int8 => {
            let four_bit_only = [
                ("--double-quant", args.double_quant),
                ("--blocksize", args.blocksize.is_some()),
                ("--compute-dtype", args.compute_dtype.is_some()),
            ];
            if let Some((flag, _)) = four_bit_only.iter().find(|(_, given)| *given) {
                bail!("{flag} applies to 4-bit quantization: use `--quant nf4` or `--quant fp4`");
            }
            QuantConfig::int8()
        }
    };
    if args.double_quant {
        config = config.with_double_quant(true);
    }
    if let Some(n) = args.blocksize {
        config = config.with_blocksize(n);
    }
    if let Some(d) = args.compute_dtype {
        config = config.with_compute_dtype(FloatDtype::from(d));
    }
    if args.skip.iter().any(|m| m.trim().is_empty()) {
        // An empty pattern is a suffix of every module name: nothing would be quantized.
        bail!("--skip needs a module name (e.g. `--skip mlp.down_proj`), got an empty one");
    }
    if !args.skip.is_empty() {
        config = config.with_skip_modules(args.skip.clone());
    }
    config.validate()?;
    Ok(config)
}

/// The model dir `--model` names (hub ids looked up in the local cache).
fn model_dir(spec: &Path) -> Result<PathBuf> {
    let resolved = resolve_model(spec)?;
    tracing::info!("model: {resolved}");
    let path = resolved.path;
    if path.is_dir() {
        return Ok(path);
    }
    let takes = "`kiln quantize` takes an HF safetensors model dir (config.json and *.safetensors)";
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        bail!(
            "{} is a GGUF file: {takes}; GGUF models are quantized already",
            path.display()
        );
    }
    bail!("{} is not a directory: {takes}", path.display())
}

/// Refuses an `--out` that would destroy something: a non-empty dir without `--force`, a file,
/// the model dir itself, or a dir that holds it or that it holds.
fn check_out(model: &Path, out: &Path, force: bool) -> Result<()> {
    if out.file_name().is_none() {
        bail!("--out {}: name the directory to write", out.display());
    }
    let (m, o) = (real_path(model), real_path(out));
    if o == m {
        bail!("--out {} is the --model dir", out.display());
    }
    if o.starts_with(&m) {
        bail!(
            "--out {} is inside the --model dir {}: write it elsewhere",
            out.display(),
            model.display()
        );
    }
    if m.starts_with(&o) {
        bail!(
            "--out {} holds the --model dir {}: write it elsewhere",
            out.display(),
            model.display()
        );
    }
    let meta = match fs::metadata(out) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("--out {}", out.display())),
    };
    if !meta.is_dir() {
        bail!("--out {} exists and is not a directory", out.display());
    }
    let empty = fs::read_dir(out)
        .with_context(|| format!("--out {}", out.display()))?
        .next()
        .is_none();
    if !empty && !force {
        bail!(
            "--out {} is not empty: pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// `path` made absolute with its links resolved, as far as it exists.
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses a model whose quantized checkpoint kiln could not load: a `config.json` its
/// architectures reject, weights that are not floats, embeddings that disagree with the config.
fn check_model(dir: &Path) -> Result<()> {
    let config_path = dir.join("config.json");
    let config = ModelConfig::from_file(&config_path)?;
    let in_config = || config_path.display().to_string();
    let (vocab, hidden) = match config.require_architecture().with_context(in_config)? {
        Architecture::Llama => {
            let c = LlamaConfig::from_config(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
        Architecture::Mistral => {
            let c = mistral::config_from_hf(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
        Architecture::Gemma => {
            let c = GemmaConfig::from_config(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
        Architecture::Gemma2 => {
            let c = Gemma2Config::from_config(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
        Architecture::Gemma3Text => {
            let c = Gemma3Config::from_config(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
        Architecture::Bert => {
            let c = BertConfig::from_config(&config).with_context(in_config)?;
            (c.vocab_size, c.hidden_size)
        }
    };
    let files = ModelFiles::open(dir)?;
    for name in files.names() {
        let Some(info) = files.info(name) else {
            continue;
        };
        if name.ends_with(".weight") && FloatDtype::from_safetensors(info.dtype).is_none() {
            bail!(
                "{}: tensor `{name}` is {:?}: `kiln quantize` takes f32, f16 or bf16 weights",
                dir.display(),
                info.dtype
            );
        }
        let vocab_table = [
            "embed_tokens.weight",
            "word_embeddings.weight",
            "lm_head.weight",
        ]
        .iter()
        .any(|t| name.ends_with(t));
        if vocab_table && info.shape != [vocab, hidden] {
            bail!(
                "{}: tensor `{name}` has shape {:?}, but config.json says vocab_size {vocab} and \
                 hidden_size {hidden}",
                dir.display(),
                info.shape
            );
        }
    }
    Ok(())
}

/// Files of the model dir's top level that the quantizer writes itself, or that hold the
/// unquantized weights in another format.
fn rewritten(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    let weights = [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".gguf",
        ".onnx",
    ];
    name == INDEX_FILE || name == "config.json" || weights.iter().any(|e| name.ends_with(e))
}

/// Copies what the quantizer leaves out, as regular files: files the model dir links to (a hub
/// cache snapshot links every file into its blobs) and its subdirectories (sentence-transformers
/// modules such as `1_Pooling/`), except hidden ones (`.git`, `.cache`) and the exports of the
/// unquantized model (`onnx/`, `openvino/`).
fn copy_rest(from: &Path, to: &Path) -> Result<()> {
    copy_dir(from, to, true, &mut HashSet::new())
}

fn copy_dir(from: &Path, to: &Path, top: bool, seen: &mut HashSet<PathBuf>) -> Result<()> {
    let real = from
        .canonicalize()
        .with_context(|| from.display().to_string())?;
    if !seen.insert(real) {
        // A link back up the tree.
        return Ok(());
    }
    let entries = fs::read_dir(from).with_context(|| from.display().to_string())?;
    for entry in entries {
        let entry = entry.with_context(|| from.display().to_string())?;
        let (name, path) = (entry.file_name(), entry.path());
        let target = to.join(&name);
        let meta = fs::metadata(&path)
            .with_context(|| format!("{}: a link to nothing", path.display()))?;
        if meta.is_dir() {
            let hidden = name.to_string_lossy().starts_with('.');
            if hidden || (top && (name == "onnx" || name == "openvino")) {
                continue;
            }
            fs::create_dir_all(&target).with_context(|| target.display().to_string())?;
            copy_dir(&path, &target, false, seen)?;
        } else if meta.is_file() {
            let written = fs::symlink_metadata(&target).is_ok();
            if written || (top && rewritten(&name)) {
                continue;
            }
            fs::copy(&path, &target)
                .with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
        } else {
            tracing::warn!("{}: not a regular file; not copied", path.display());
        }
    }
    Ok(())
}

/// `.{name}.kiln-{what}-{pid}` beside `out`.
fn sibling(out: &Path, what: &str) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let hidden = format!(".{name}.kiln-{what}-{}", std::process::id());
    match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(hidden),
        _ => PathBuf::from(hidden),
    }
}

/// Removes `dir`, trying again when the quantizer created a file in it meanwhile.
fn remove_quietly(dir: &Path) {
    for _ in 0..3 {
        if fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
    }
    tracing::warn!("could not remove {}", dir.display());
}

/// The hidden dir beside `--out` the checkpoint is written into. It is removed when dropped
/// before [`Staging::install`] (an error, a panic) and on Ctrl-C.
struct Staging {
    dir: PathBuf,
    /// The dir while it is still to be removed; shared with the Ctrl-C handler.
    pending: Arc<Mutex<Option<PathBuf>>>,
}

impl Staging {
    fn new(out: &Path) -> Result<Self> {
        let dir = sibling(out, "tmp");
        // The handler goes first: a Ctrl-C must not find the dir without it.
        let pending = Arc::new(Mutex::new(Some(dir.clone())));
        let on_interrupt = Arc::clone(&pending);
        let handler = ctrlc::set_handler(move || {
            let pending = on_interrupt.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(dir) = pending.as_ref() {
                remove_quietly(dir);
            }
            // The shell's status for a SIGINT; the lock, still held, keeps `install` and `drop`
            // from running meanwhile.
            std::process::exit(130);
        });
        if let Err(e) = handler {
            tracing::warn!("Ctrl-C would leave {} behind: {e}", dir.display());
        }
        let staging = Self { dir, pending };
        let dir = &staging.dir;
        if dir.exists() {
            // Left by a killed run that had this process id.
            fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
        }
        fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        Ok(staging)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the checkpoint to `out`; an existing `out` is moved aside first and removed last.
    fn install(self, out: &Path) -> Result<()> {
        // Held throughout: a Ctrl-C now waits until `out` is whole again.
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let aside = fs::symlink_metadata(out)
            .is_ok()
            .then(|| sibling(out, "old"));
        if let Some(aside) = &aside {
            fs::rename(out, aside).with_context(|| format!("moving {} aside", out.display()))?;
        }
        if let Err(e) = fs::rename(&self.dir, out) {
            if let Some(aside) = &aside {
                let _ = fs::rename(aside, out);
            }
            return Err(e)
                .with_context(|| format!("moving {} to {}", self.dir.display(), out.display()));
        }
        *pending = None;
        if let Some(aside) = aside
            && let Err(e) = fs::remove_dir_all(&aside)
        {
            tracing::warn!("could not remove the old {}: {e}", aside.display());
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = pending.take() {
            remove_quietly(&dir);
        }
    }
}
