//! `kiln quantize` on bad input: it refuses what it could not write a loadable checkpoint of,
//! and a failed run leaves `--out` as it was, with nothing of its own left behind.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    kiln_env(args, &[])
}

fn kiln_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .env_remove("KILN_DEVICE")
        .env_remove("KILN_MODEL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The f32 tiny Llama of testdata/quant (config.json, generation_config.json, safetensors).
fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/quant/tiny-llama/f32")
}

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/models/tiny-bert")
}

/// A fresh, empty scratch dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-quantize-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names in `dir` that a run left behind (its hidden staging or set-aside dirs).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".kiln-"))
        .collect()
}

/// `from`'s config.json (edited by `edit`) and its model.safetensors (tensors edited by
/// `tensors`) in `to`.
fn variant(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
    tensors: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    std::fs::create_dir_all(to).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(to.join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(from.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors(&mut all);
    let views: Vec<_> = all
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        to.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_failed_run_leaves_the_old_checkpoint_and_nothing_else() {
    let dir = scratch("failed");
    let out = dir.join("out");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let first = kiln(&[
        "quantize",
        "--model",
        &s(&tiny_llama()),
        "--out",
        &s(&out),
        "--quant",
        "nf4",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let good = std::fs::read(out.join("model.safetensors")).unwrap();

    // A NaN in one weight: quantization fails halfway through the file.
    let nan = dir.join("nan");
    variant(
        &tiny_llama(),
        &nan,
        |_| {},
        |tensors| {
            let t = tensors
                .iter_mut()
                .find(|t| t.0 == "model.layers.0.mlp.up_proj.weight")
                .unwrap();
            t.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        },
    );
    let failed = kiln(&[
        "quantize",
        "--model",
        &s(&nan),
        "--out",
        &s(&out),
        "--quant",
        "nf4",
        "--force",
    ]);
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(err.contains("up_proj"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), good);
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_non_empty_out_is_replaced_only_with_force() {
    let dir = scratch("force");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let model = tiny_llama().display().to_string();
    let out_s = out.display().to_string();
    let args = [
        "quantize", "--model", &model, "--out", &out_s, "--quant", "nf4",
    ];

    let refused = kiln(&args);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!out.join("model.safetensors").exists());

    let forced = kiln(&[&args[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(out.join("model.safetensors").is_file());
    assert!(!out.join("notes.txt").exists());
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    // An empty dir needs no --force.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let into_empty = kiln(&[
        "quantize",
        "--model",
        &model,
        "--out",
        empty.to_str().unwrap(),
        "--quant",
        "int8",
    ]);
    assert!(into_empty.status.success(), "{}", stderr(&into_empty));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_out_that_holds_or_is_the_model_is_refused() {
    let dir = scratch("nested");
    let model = dir.join("model");
    variant(&tiny_llama(), &model, |_| {}, |_| {});
    let m = model.display().to_string();
    for (out, says) in [
        (model.clone(), "is the --model dir"),
        (model.join("nf4"), "inside the --model dir"),
        (dir.clone(), "holds the --model dir"),
    ] {
        let run = kiln(&[
            "quantize",
            "--model",
            &m,
            "--out",
            out.to_str().unwrap(),
            "--quant",
            "nf4",
            "--force",
        ]);
        assert_eq!(run.status.code(), Some(1), "{}", out.display());
        let err = stderr(&run);
        assert!(err.contains(says), "{err}");
        assert!(model.join("model.safetensors").is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Hugging Face cache whose snapshot links every file into `blobs/`, as `huggingface_hub`
/// lays it out, holding a sentence-transformers dir (`1_Pooling/`, `modules.json`).
#[cfg(unix)]
fn hub_cache(root: &Path) -> PathBuf {
    use std::os::unix::fs::symlink;
    let repo = root.join("models--org--tiny-bert");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    for d in ["refs", "blobs"] {
        std::fs::create_dir_all(repo.join(d)).unwrap();
    }
    std::fs::create_dir_all(snapshot.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(snapshot.join("onnx")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let files: [(&str, Vec<u8>); 6] = [
        (
            "config.json",
            std::fs::read(tiny_bert().join("config.json")).unwrap(),
        ),
        (
            "model.safetensors",
            std::fs::read(tiny_bert().join("model.safetensors")).unwrap(),
        ),
        ("tokenizer.json", b"{\"stand-in\": true}".to_vec()),
        (
            "modules.json",
            br#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#
                .to_vec(),
        ),
        (
            "1_Pooling/config.json",
            br#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#.to_vec(),
        ),
        ("onnx/model.onnx", b"an export of the f32 model".to_vec()),
    ];
    for (i, (name, bytes)) in files.iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::write(&blob, bytes).unwrap();
        symlink(&blob, snapshot.join(name)).unwrap();
    }
    snapshot
}

#[cfg(unix)]
#[test]
fn a_hub_cache_snapshot_is_copied_as_files_subdirs_included() {
    let dir = scratch("hub");
    let cache = dir.join("hub");
    let snapshot = hub_cache(&cache);
    let out = dir.join("out");
    let run = kiln_env(
        &[
            "quantize",
            "--model",
            "org/tiny-bert",
            "--out",
            out.to_str().unwrap(),
            "--quant",
            "nf4",
        ],
        &[("HF_HUB_CACHE", &cache)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let meta = std::fs::symlink_metadata(out.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
    }
    assert_eq!(
        std::fs::read(out.join("1_Pooling/config.json")).unwrap(),
        std::fs::read(snapshot.join("1_Pooling/config.json")).unwrap()
    );
    assert!(!out.join("onnx").exists());
    let inspect = kiln(&["inspect", out.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["quantization"], "bitsandbytes nf4");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn models_kiln_could_not_load_are_refused_before_writing() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    type Tensors = Box<dyn FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)>;
    let none = || -> Tensors { Box::new(|_| {}) };
    let cases: Vec<(&str, Edit, Tensors, &str)> = vec![
        (
            "heads",
            Box::new(|c| c["num_attention_heads"] = 0.into()),
            none(),
            "num_attention_heads",
        ),
        (
            "type",
            Box::new(|c| c["model_type"] = "qwen9".into()),
            none(),
            "unknown architecture `qwen9`",
        ),
        (
            "vocab",
            Box::new(|c| c["vocab_size"] = 999.into()),
            none(),
            "vocab_size 999",
        ),
        (
            "i8",
            Box::new(|_| {}),
            Box::new(|tensors| {
                let t = tensors
                    .iter_mut()
                    .find(|t| t.0 == "model.layers.0.self_attn.q_proj.weight")
                    .unwrap();
                let n: usize = t.2.iter().product();
                t.1 = safetensors::Dtype::I8;
                t.3 = vec![1; n];
            }),
            "is I8",
        ),
    ];
    let dir = scratch("refused");
    for (name, edit, tensors, says) in cases {
        let model = dir.join(name);
        variant(&tiny_llama(), &model, edit, tensors);
        let out = dir.join(format!("{name}-out"));
        let run = kiln(&[
            "quantize",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quant",
            "nf4",
        ]);
        assert_eq!(run.status.code(), Some(1), "{name}");
        let err = stderr(&run);
        assert!(err.contains(says), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(!out.exists(), "{name}");
    }
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_the_format_ignores_are_refused() {
    let model = tiny_llama().display().to_string();
    let dir = scratch("flags");
    let out = dir.join("out").display().to_string();
    for (quant, flag) in [
        ("int8", vec!["--blocksize", "64"]),
        ("int8", vec!["--double-quant"]),
        ("int8", vec!["--compute-dtype", "bf16"]),
        ("nf4", vec!["--skip", ""]),
    ] {
        let mut args = vec![
            "quantize", "--model", &model, "--out", &out, "--quant", quant,
        ];
        args.extend(&flag);
        let run = kiln(&args);
        assert_eq!(run.status.code(), Some(1), "{flag:?}");
        let err = stderr(&run);
        assert!(err.contains(flag[0]), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!Path::new(&out).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_is_not_a_model_dir() {
    let dir = scratch("file");
    let gguf = dir.join("model.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    for (model, says) in [
        (gguf, "is a GGUF file"),
        (tiny_llama().join("model.safetensors"), "is not a directory"),
    ] {
        let run = kiln(&[
            "quantize",
            "--model",
            model.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
            "--quant",
            "nf4",
        ]);
        assert_eq!(run.status.code(), Some(1));
        let err = stderr(&run);
        assert!(
            err.contains(says) && err.contains("HF safetensors model dir"),
            "{err}"
        );
        assert!(!err.contains("Not a directory"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_os_error_is_printed_once() {
    let dir = scratch("oserror");
    let model = dir.join("empty");
    std::fs::create_dir_all(&model).unwrap();
    let m = model.to_str().unwrap();
    let out = dir.join("out");
    for args in [
        vec![
            "quantize",
            "--model",
            m,
            "--out",
            out.to_str().unwrap(),
            "--quant",
            "nf4",
        ],
        vec!["--device", "cpu", "generate", "--model", m, "hi"],
    ] {
        let run = kiln(&args);
        assert_eq!(run.status.code(), Some(1));
        let err = stderr(&run);
        assert!(err.contains("config.json"), "{err}");
        assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Llama of random-looking weights, big enough (~100 MB) to take a while to quantize.
#[cfg(unix)]
fn slow_llama(dir: &Path) {
    let (hidden, inter, layers, vocab) = (1024usize, 2816usize, 2, 256usize);
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": 8, "vocab_size": vocab,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut shapes = vec![
        ("model.embed_tokens.weight".to_string(), vec![vocab, hidden]),
        ("model.norm.weight".to_string(), vec![hidden]),
        ("lm_head.weight".to_string(), vec![vocab, hidden]),
    ];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for n in ["input_layernorm", "post_attention_layernorm"] {
            shapes.push((format!("{p}.{n}.weight"), vec![hidden]));
        }
        for n in ["q", "k", "v", "o"] {
            shapes.push((
                format!("{p}.self_attn.{n}_proj.weight"),
                vec![hidden, hidden],
            ));
        }
        for n in ["gate", "up"] {
            shapes.push((format!("{p}.mlp.{n}_proj.weight"), vec![inter, hidden]));
        }
        shapes.push((format!("{p}.mlp.down_proj.weight"), vec![hidden, inter]));
    }
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<usize>())
                .flat_map(|i| (((i * 7919) % 201) as f32 * 1e-3 - 0.1).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<_> = shapes
        .iter()
        .zip(&data)
        .map(|((n, s), b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (n.clone(), view.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_the_old_checkpoint_and_nothing_else() {
    let dir = scratch("sigint");
    let model = dir.join("model");
    slow_llama(&model);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["quantize", "--quant", "nf4", "--force", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = dir.join(format!(".out.kiln-tmp-{}", child.id()));
    let started = std::time::Instant::now();
    while !staging.exists() {
        assert!(child.try_wait().unwrap().is_none(), "kiln ended early");
        assert!(started.elapsed().as_secs() < 60, "no staging dir");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!out.join("model.safetensors").exists());
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}
