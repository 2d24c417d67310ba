//! Bounds on one render, so that a downloaded template cannot crash or hang kiln.
//!
//! A chat template is code from the internet. minijinja's fuel bounds the instructions a render
//! runs and the data it makes; on top of that kiln caps the prompt's size, the nesting of the
//! values it prints, the strings its own filters build, and turns a panic of the engine into an
//! error. See "Untrusted templates" in `COMPATIBILITY.md`.

use std::cell::Cell;
use std::fmt;
use std::io;

use minijinja::{Error, ErrorKind, State};

/// How deep the values kiln prints (`{{ x }}`, `|string`, `|tojson`) may nest, in levels.
///
/// Python's `json.dumps` and `repr` give up near 1000 levels (`RecursionError`); kiln stops
/// sooner, so that printing never risks the stack of a small thread.
pub(crate) const MAX_PRINT_DEPTH: usize = 256;

/// How deep the JSON inputs (messages, tools, documents, extra variables) may nest: the limit
/// `serde_json` itself applies when it parses text.
pub const MAX_INPUT_DEPTH: usize = 128;

/// Bounds on what one render of a [`ChatTemplate`](crate::ChatTemplate) may do.
///
/// The defaults are far above what real chat templates need and low enough that a hostile
/// template fails within about a second. The parity suite's templates use at most 4,016 fuel on
/// its conversations; on a 1000-turn chat with tools (2002 messages, prompts of 600 to 800 kB)
/// 72 of its 74 templates use under 400,000. Two are quadratic in the length of the chat and
/// need more there: gemma-4-31B-it 17 million, Reka-Edge 48 million (with the default they stop
/// at about 1,050 and 600 turns; raise [`Limits::fuel`] for chats that long with such
/// templates). Going past a limit fails the render with
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded).
///
/// ```
/// use kiln_chat_template::{ApplyOptions, ChatTemplate, Error, Limit, Limits, Message};
///
/// let spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
/// let template = ChatTemplate::from_source("spin", spin)?.with_limits(Limits {
///     fuel: Some(100_000),
///     ..Limits::default()
/// });
/// let err = template.apply(&[Message::user("hi")], &ApplyOptions::default()).unwrap_err();
/// assert!(matches!(err, Error::LimitExceeded { limit: Limit::Fuel, .. }));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// minijinja's fuel: a budget for the work of one render. One fuel is about one instruction,
    /// or 64 bytes of data made (output, strings and lists built by the template). `None` turns
    /// the budget off, for templates you trust.
    pub fuel: Option<u64>,
    /// The largest prompt, in bytes. No string kiln builds while rendering (the text of a
    /// printed value, a `tojson` dump, a padded string) may be larger either.
    pub max_output_bytes: usize,
    /// How deeply macro calls, loops, `if`s and blocks may nest. minijinja caps this at 500.
    pub max_recursion: usize,
}

impl Limits {
    /// The default fuel: 20 million, about half a second of the costliest work (loops that print
    /// nothing) and at most 1.3 GB of data made.
    pub const DEFAULT_FUEL: u64 = 20_000_000;
    /// The default largest prompt: 16 MiB.
    pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 << 20;
    /// The default recursion limit.
    pub const DEFAULT_MAX_RECURSION: usize = 200;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: Some(Self::DEFAULT_FUEL),
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT_BYTES,
            max_recursion: Self::DEFAULT_MAX_RECURSION,
        }
    }
}

/// Which of the [`Limits`] a render went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::fuel`]: the render did too much work or made too much data.
    Fuel,
    /// [`Limits::max_output_bytes`]: the prompt, or one string made while rendering, is too large.
    OutputSize,
    /// [`Limits::max_recursion`]: macro calls, loops or blocks nested too deeply.
    Recursion,
    /// A value nested too deeply to be printed (256 levels) or taken as input
    /// ([`MAX_INPUT_DEPTH`]).
    Nesting,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Fuel => "fuel",
            Limit::OutputSize => "output size",
            Limit::Recursion => "recursion",
            Limit::Nesting => "nesting depth",
        })
    }
}

/// Marks a minijinja error as caused by a limit (carried as its source).
#[derive(Debug)]
pub(crate) struct LimitHit(pub Limit);

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} limit", self.0)
    }
}

impl std::error::Error for LimitHit {}

/// A minijinja error for going past `limit`.
pub(crate) fn limit_error(
    limit: Limit,
    message: impl Into<std::borrow::Cow<'static, str>>,
) -> Error {
    Error::new(ErrorKind::InvalidOperation, message).with_source(LimitHit(limit))
}

thread_local! {
    /// [`Limits::max_output_bytes`] of the render running on this thread.
    static MAX_BYTES: Cell<usize> = const { Cell::new(Limits::DEFAULT_MAX_OUTPUT_BYTES) };
}

/// Sets the size limit kiln's own filters see on this thread until the guard drops.
pub(crate) struct BytesGuard(usize);

impl BytesGuard {
    pub(crate) fn set(max: usize) -> Self {
        BytesGuard(MAX_BYTES.with(|c| c.replace(max)))
    }
}

impl Drop for BytesGuard {
    fn drop(&mut self) {
        MAX_BYTES.with(|c| c.set(self.0));
    }
}

/// The largest string kiln's printing and filters may build in the current render.
pub(crate) fn max_bytes() -> usize {
    MAX_BYTES.with(Cell::get)
}

/// Fails unless a string of `len` bytes may be built now: within [`max_bytes`] and, when fuel is
/// on, payable by the fuel left (one fuel per 64 bytes, as minijinja charges it afterwards).
///
/// Called before allocating for a size the template chose (a width, an indent), so the
/// allocation never happens when it could not be paid for.
pub(crate) fn ensure_bytes(state: &State, what: &str, len: usize) -> Result<(), Error> {
    if len > max_bytes() {
        return Err(limit_error(
            Limit::OutputSize,
            format!(
                "{what} would build a string of {len} bytes, more than the limit of {}",
                max_bytes()
            ),
        ));
    }
    if let Some((_, remaining)) = state.fuel_levels()
        && (len as u64) / 64 >= remaining
    {
        return Err(Error::new(
            ErrorKind::OutOfFuel,
            format!("{what} would build a string of {len} bytes, more than the fuel left pays for"),
        ));
    }
    Ok(())
}

/// The prompt buffer: fails the render once it would grow past its limit.
pub(crate) struct OutputBuffer {
    pub buf: Vec<u8>,
    limit: usize,
    pub exceeded: bool,
}

impl OutputBuffer {
    pub(crate) fn new(capacity: usize, limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity.min(limit)),
            limit,
            exceeded: false,
        }
    }
}

impl io::Write for OutputBuffer {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > self.limit - self.buf.len() {
            self.exceeded = true;
            return Err(io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
