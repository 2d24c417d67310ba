//! What kiln writes: results on standard output, where a closed pipe (`kiln ... | head`) ends
//! the command quietly as it ends Unix tools, and errors on standard error, each cause once.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an `io::Error` of kind `BrokenPipe`
//! (and a panic inside `println!`). Commands write with `writeln!(out, ...)?`; `main` turns a
//! broken pipe anywhere in the error chain into a quiet, successful exit.

use std::io::{self, Write};

/// Whether `err`, or any error it wraps, is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Writes `bytes` to standard output and flushes.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// A `println!` that lost its reader would panic: exit quietly instead. A net under the
/// writes that do not go through `writeln!(...)?` yet; std's message is the only thing that
/// tells this panic apart.
pub fn exit_quietly_on_broken_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(|m| {
            m.starts_with("failed printing to stdout") && m.contains("Broken pipe")
        }) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// `err` and its causes joined by `: ` as `{:#}` joins them, leaving out a cause whose text
/// the previous message already holds (errors that print their source, as
/// `"{path}: {source}"` does, would otherwise repeat it).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if !previous.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        previous = message;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_holds_is_printed_once() {
        let os = io::Error::from(io::ErrorKind::NotFound);
        let shown = os.to_string();
        let err = anyhow::Error::new(Wrap(os)).context("loading the model");
        assert_eq!(
            error_chain(&err),
            format!("loading the model: /m/config.json: {shown}")
        );
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&err), "outer: inner");
    }

    #[test]
    fn broken_pipe_is_found_under_context() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    /// An error that prints its source, as the crates' `Io` variants do.
    #[derive(Debug)]
    struct Wrap(io::Error);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "/m/config.json: {}", self.0)
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
