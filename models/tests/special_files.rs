//! Model files that are not regular files (a FIFO left where a config or a shard should be)
//! are refused at once with the path named, never opened: opening a FIFO blocks until a writer
//! comes, so a loader that opened it would hang.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use kiln_models::config::ModelConfig;
use kiln_models::gguf::Gguf;
use kiln_models::weights::SafetensorsSource;

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs `f` on another thread and fails the test if it takes longer than a few seconds (the
/// hang this guards against).
fn within_seconds<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what}: still blocked after 20 s"))
}

#[test]
fn fifos_in_place_of_model_files_are_refused_not_opened() {
    let dir = std::env::temp_dir().join(format!("kiln-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let config = dir.join("config.json");
    mkfifo(&config);
    let c = config.clone();
    let err = within_seconds("config.json", move || ModelConfig::from_file(&c))
        .expect_err("a FIFO config.json");
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("not a regular file"),
        "{msg}"
    );

    let shards = dir.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    mkfifo(&shards.join("model.safetensors"));
    let err = within_seconds("model.safetensors", move || {
        SafetensorsSource::open(&shards).map(|_| ())
    })
    .expect_err("a FIFO shard");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a regular file"),
        "{msg}"
    );

    let gguf = dir.join("model.gguf");
    mkfifo(&gguf);
    let g = gguf.clone();
    let err =
        within_seconds("model.gguf", move || Gguf::open(&g).map(|_| ())).expect_err("a FIFO GGUF");
    let msg = err.to_string();
    assert!(
        msg.contains("model.gguf") && msg.contains("not a regular file"),
        "{msg}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
}
