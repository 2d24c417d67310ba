//! The minijinja environment, configured as transformers configures jinja2.
//!
//! transformers renders with `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`
//! plus `jinja2.ext.loopcontrols`, its own `tojson` filter (`json.dumps`), the globals
//! `raise_exception` and `strftime_now`, and the `{% generation %}` tag. This module builds the
//! same on minijinja, with Python's spelling of values (`True`, `None`, `['a']`) when printed.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::limits::ensure_bytes;
use crate::namespace::{NS_GUARD, ns_value};
use crate::python::{self, JsonOptions};
use crate::strftime::Civil;
use crate::value::Generator;

/// Marks the start of a `{% generation %}` body in the raw output (a Unicode noncharacter).
pub(crate) const GEN_START: char = '\u{FDD0}';
/// Marks the end of a `{% generation %}` body in the raw output.
pub(crate) const GEN_END: char = '\u{FDD1}';
/// The filter `{% generation %}` blocks are rewritten to.
const GEN_FILTER: &str = "__kiln_generation";

thread_local! {
    /// The instant `strftime_now` formats during the current render (`None`: the clock).
    static NOW: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// Sets the instant `strftime_now` reports on this thread until the guard drops.
pub(crate) struct NowGuard(Option<SystemTime>);

impl NowGuard {
    pub(crate) fn set(now: Option<SystemTime>) -> Self {
        NowGuard(NOW.with(|c| c.replace(now)))
    }
}

impl Drop for NowGuard {
    fn drop(&mut self) {
        NOW.with(|c| c.set(self.0));
    }
}

/// The message of a `raise_exception(...)` call, carried as the error's source.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Python's `None` where a template may iterate it: `tools` and `documents` when not given.
///
/// minijinja iterates `none` as an empty list, Python raises `TypeError`; templates that loop
/// over `tools` without checking it must fail as they do in transformers. This value is `none`
/// to the `none` test, falsy, prints `None`, serializes to `null`, and cannot be iterated.
#[derive(Debug)]
pub(crate) struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("None")
    }
}

/// Whether `value` is Python's `None` (minijinja's `none`, or [`PyNone`]).
pub(crate) fn is_py_none(value: &Value) -> bool {
    value.is_none() || value.downcast_object_ref::<PyNone>().is_some()
}

/// transformers' whitespace settings: `trim_blocks`, `lstrip_blocks`, no trailing newline.
pub(crate) fn syntax() -> SyntaxConfig {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        // The builder only fails on custom delimiters, which are not set here.
        .unwrap_or_default()
}

/// A fresh environment with transformers' jinja2 configuration.
pub(crate) fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(syntax());
    // Template names such as `tokenizer_config.json` must not switch on JSON escaping.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // minijinja is built without its `debug` feature (source snippets in errors, spans): errors
    // still carry the template name and line, which is all `map_error` reads.
    env.set_formatter(|out, _state, value| {
        match value.as_str() {
            Some(s) if value.kind() == ValueKind::String => out.write_str(s),
            _ => {
                let mut s = String::new();
                python::py_str(&mut s, value)?;
                out.write_str(&s)
            }
        }
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "formatting failed"))
    });
    env.set_unknown_method_callback(python_method);
    env.add_filter("tojson", tojson);
    env.add_filter("string", string);
    env.add_filter("trim", trim);
    env.add_filter("center", center);
    env.add_filter("indent", crate::filters::indent);
    env.add_filter("join", crate::filters::join);
    env.add_filter("wordcount", wordcount);
    env.add_filter("truncate", truncate);
    env.add_filter("striptags", minijinja_contrib::filters::striptags);
    env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
    env.add_filter(GEN_FILTER, generation);
    env.add_filter(
        "map",
        |state: &mut State, value: Value, args: Rest<ValueOrKwargs>| {
            generator(&value, |v| minijinja::filters::map(state, v, args))
        },
    );
    env.add_filter(
        "select",
        |state: &mut State, value: Value, test: Option<String>, args: Rest<ValueOrKwargs>| {
            generator(&value, |v| {
                minijinja::filters::select(state, v, test.map(Into::into), args)
            })
        },
    );
    env.add_filter(
        "reject",
        |state: &mut State, value: Value, test: Option<String>, args: Rest<ValueOrKwargs>| {
            generator(&value, |v| {
                minijinja::filters::reject(state, v, test.map(Into::into), args)
            })
        },
    );
    env.add_filter(
        "selectattr",
        |state: &mut State,
         value: Value,
         attr: String,
         test: Option<String>,
         args: Rest<ValueOrKwargs>| {
            generator(&value, |v| {
                minijinja::filters::selectattr(state, v, attr.into(), test.map(Into::into), args)
            })
        },
    );
    env.add_filter(
        "rejectattr",
        |state: &mut State,
         value: Value,
         attr: String,
         test: Option<String>,
         args: Rest<ValueOrKwargs>| {
            generator(&value, |v| {
                minijinja::filters::rejectattr(state, v, attr.into(), test.map(Into::into), args)
            })
        },
    );
    env.add_test("none", |v: &Value| is_py_none(v));
    env.add_test("iterable", is_iterable);
    env.add_test("sequence", is_sequence);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_function("cycler", |items: Rest<Value>| {
        minijinja_contrib::globals::cycler(items.0)
    });
    env.add_function("joiner", minijinja_contrib::globals::joiner);
    // `~` and, where `Markup` is made, `+` are rewritten to call these (see `operators`).
    env.add_function(crate::operators::CAT, crate::operators::cat);
    env.add_function(crate::operators::ADD, crate::operators::add);
    env.add_filter(crate::operators::STR, crate::operators::strict_str);
    // Namespace assignments are rewritten to pass through this (see `namespace`).
    env.add_function(NS_GUARD, ns_value);
    env.add_filter(NS_GUARD, ns_value);
    env
}

/// Binds Python-style arguments (positional, then by keyword) to `names`.
pub(crate) fn python_args<const N: usize>(
    args: Rest<ValueOrKwargs>,
    names: [&str; N],
) -> Result<[Option<Value>; N], Error> {
    let mut slots: [Option<Value>; N] = std::array::from_fn(|_| None);
    let mut next = 0;
    for arg in args.0.into_iter().map(Value::from) {
        if arg.is_kwargs() {
            // Only the names given are looked up, and every one must be known.
            let kwargs = Kwargs::try_from(arg)?;
            for given in kwargs.args() {
                let Some(i) = names.iter().position(|n| *n == given) else {
                    return Err(Error::new(
                        ErrorKind::TooManyArguments,
                        format!("unexpected keyword argument `{given}`"),
                    ));
                };
                slots[i] = kwargs.peek::<Option<Value>>(given)?;
            }
        } else if next < N {
            slots[next] = Some(arg);
            next += 1;
        } else {
            return Err(Error::new(
                ErrorKind::TooManyArguments,
                format!("takes at most {N} arguments"),
            ));
        }
    }
    Ok(slots)
}

/// jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`.
fn truncate(value: &Value, args: Rest<ValueOrKwargs>) -> Result<String, Error> {
    let [length, killwords, end, leeway] =
        python_args(args, ["length", "killwords", "end", "leeway"])?;
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    let length = length.map(usize::try_from).transpose()?.unwrap_or(255);
    let killwords = killwords.is_some_and(|v| v.is_true());
    let end = end.map(|v| v.to_string()).unwrap_or_else(|| "...".into());
    let leeway = leeway.map(usize::try_from).transpose()?.unwrap_or(5);
    let chars: Vec<char> = s.chars().collect();
    let end_len = end.chars().count();
    if length < end_len {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "truncate: length is shorter than end",
        ));
    }
    if chars.len() <= length + leeway {
        return Ok(s);
    }
    let head: String = chars[..length - end_len].iter().collect();
    let kept = if killwords {
        head
    } else {
        match head.rfind(' ') {
            Some(i) => head[..i].to_owned(),
            None => head,
        }
    };
    Ok(kept + &end)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(state: &State, value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    if args.0.is_empty() {
        return python::json_dumps_value(value, &JsonOptions::default());
    }
    let [ensure_ascii, indent, separators, sort_keys] =
        python_args(args, ["ensure_ascii", "indent", "separators", "sort_keys"])?;
    let mut opts = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    opts.indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_owned().into())
        }
        Some(v) if v.kind() == ValueKind::Bool => {
            Some(Cow::Borrowed(if v.is_true() { " " } else { "" }))
        }
        Some(v) => {
            let n = usize::try_from(i64::try_from(v)?.max(0)).unwrap_or(0);
            ensure_bytes(state, "tojson: indent", n)?;
            Some(match SPACES.get(..n) {
                Some(spaces) => Cow::Borrowed(spaces),
                None => Cow::Owned(" ".repeat(n)),
            })
        }
    };
    if opts.indent.is_some() {
        opts.item_separator = ",".into();
    }
    if let Some(seps) = separators.filter(|v| !v.is_none()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                opts.item_separator = item.as_str().unwrap_or_default().to_owned().into();
                opts.key_separator = key.as_str().unwrap_or_default().to_owned().into();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings",
                ));
            }
        }
    }
    python::json_dumps_value(value, &opts)
}

/// Indents of up to 16 spaces, borrowed rather than built for every `tojson(indent=n)`.
const SPACES: &str = "                ";

/// jinja2's `map`/`select`/`reject`/`selectattr`/`rejectattr`: a falsy input gives nothing
/// (they start with `if value:`), and the result is a one-shot generator, as in Python (so
/// `tojson` and `length` reject it as they do there).
fn generator(
    value: &Value,
    f: impl FnOnce(Value) -> Result<Vec<Value>, Error>,
) -> Result<Value, Error> {
    let items = if value.is_true() {
        f(value.clone())?
    } else {
        Vec::new()
    };
    Ok(Generator::new_value(items))
}

/// Python methods on values: a few here, the rest from minijinja-contrib's `pycompat`.
fn python_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.kind(), method) {
        (ValueKind::Seq, "index") => {
            let [needle] = args else {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "index() takes one argument",
                ));
            };
            let found = value.try_iter()?.position(|v| &v == needle);
            // Paid for like minijinja's own searches: half a fuel per item looked at.
            let looked_at = found.map_or_else(|| value.len().unwrap_or(0), |i| i + 1);
            state.consume_fuel(looked_at as u64 / 2)?;
            match found {
                Some(i) => Ok(Value::from(i)),
                None => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "list.index(x): x not in list",
                )),
            }
        }
        // minijinja-contrib's versions of these use Rust's whitespace, which lacks the
        // separators U+001C..U+001F that Python's `str.isspace()` counts.
        (ValueKind::String, "strip" | "lstrip" | "rstrip") if no_chars(args) => {
            let s = value.as_str().unwrap_or_default();
            let kept = match method {
                "strip" => s.trim_matches(python::is_py_space),
                "lstrip" => s.trim_start_matches(python::is_py_space),
                _ => s.trim_end_matches(python::is_py_space),
            };
            Ok(if kept.len() == s.len() {
                value.clone()
            } else if value.is_safe() {
                Value::from_safe_string(kept.to_owned())
            } else {
                Value::from(kept)
            })
        }
        (ValueKind::String, "split") => {
            let s = value.as_str().unwrap_or_default();
            let sep = args.first().filter(|v| !v.is_none());
            let maxsplit = match args.get(1) {
                Some(v) => i64::try_from(v.clone())?,
                None => -1,
            };
            match sep {
                None => Ok(Value::from(split_whitespace(s, maxsplit))),
                Some(sep) if sep.as_str() == Some("") => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "str.split(): empty separator",
                )),
                Some(_) => {
                    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
                }
            }
        }
        (ValueKind::String, "isspace") if args.is_empty() => {
            let s = value.as_str().unwrap_or_default();
            Ok(Value::from(
                !s.is_empty() && s.chars().all(python::is_py_space),
            ))
        }
        (ValueKind::String, "splitlines") if args.is_empty() => {
            let s = value.as_str().unwrap_or_default();
            let mut lines = crate::filters::splitlines(s);
            // `splitlines` of `s + "\n"` ends with the part after the last boundary.
            if lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            Ok(Value::from_iter(lines.into_iter().map(Value::from)))
        }
        (ValueKind::String, "rsplit") => {
            let s = value.as_str().unwrap_or_default();
            let sep = args.first().filter(|v| !v.is_none()).map(|v| v.to_string());
            let maxsplit = match args.get(1) {
                Some(v) => i64::try_from(v.clone())?,
                None => -1,
            };
            Ok(Value::from(rsplit(s, sep.as_deref(), maxsplit)))
        }
        (ValueKind::String, "format") => {
            let spec = value.as_str().unwrap_or_default();
            ensure_bytes(
                state,
                "str.format",
                format_padding(spec).saturating_add(spec.len()),
            )?;
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        }
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// An upper bound on the padding the replacement fields of a `str.format` string ask for: the
/// sum of every number written in their format specs (widths and precisions; a digit used as
/// fill only makes the bound larger). The pycompat `format` takes no [`State`], so the size is
/// checked against the limits before it runs.
fn format_padding(spec: &str) -> usize {
    let mut total = 0usize;
    let mut in_spec = false;
    let mut number = 0usize;
    for c in spec.chars() {
        match c {
            ':' => in_spec = true,
            '{' | '}' => in_spec = false,
            _ => {}
        }
        match c.to_digit(10) {
            Some(d) if in_spec => {
                number = number.saturating_mul(10).saturating_add(d as usize);
            }
            _ => {
                total = total.saturating_add(number);
                number = 0;
            }
        }
    }
    total.saturating_add(number)
}

/// Whether a `strip`-like method was called without characters to strip (or with `None`).
fn no_chars(args: &[Value]) -> bool {
    match args {
        [] => true,
        [chars] => chars.is_none(),
        _ => false,
    }
}

/// Python's `str.split(None, maxsplit)`: runs of whitespace (`str.isspace()`) separate words,
/// and the words after `maxsplit` splits are one, with their leading whitespace dropped.
fn split_whitespace(s: &str, maxsplit: i64) -> Vec<String> {
    let limit = usize::try_from(maxsplit).ok();
    let mut parts = Vec::new();
    let mut rest = s.trim_start_matches(python::is_py_space);
    while !rest.is_empty() {
        if limit.is_some_and(|n| parts.len() == n) {
            parts.push(rest.to_owned());
            break;
        }
        match rest.find(python::is_py_space) {
            Some(i) => {
                parts.push(rest[..i].to_owned());
                rest = rest[i..].trim_start_matches(python::is_py_space);
            }
            None => {
                parts.push(rest.to_owned());
                break;
            }
        }
    }
    parts
}

/// Python's `str.rsplit(sep, maxsplit)`.
fn rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Vec<String> {
    let limit = usize::try_from(maxsplit).ok();
    let mut parts: Vec<String> = match sep {
        Some(sep) if !sep.is_empty() => match limit {
            Some(n) => s.rsplitn(n + 1, sep).map(str::to_owned).collect(),
            None => s.rsplit(sep).map(str::to_owned).collect(),
        },
        _ => {
            let mut parts = Vec::new();
            let mut rest = s.trim_end_matches(python::is_py_space);
            while !rest.is_empty() {
                if limit.is_some_and(|n| parts.len() == n) {
                    parts.push(rest.to_owned());
                    break;
                }
                match rest.rfind(python::is_py_space) {
                    Some(i) => {
                        let word_start = i + rest[i..].chars().next().map_or(1, char::len_utf8);
                        parts.push(rest[word_start..].to_owned());
                        rest = rest[..i].trim_end_matches(python::is_py_space);
                    }
                    None => {
                        parts.push(rest.to_owned());
                        break;
                    }
                }
            }
            parts
        }
    };
    parts.reverse();
    parts
}

/// jinja2's `iterable` test: whether Python's `iter()` accepts the value.
fn is_iterable(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Bytes
            | ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Iterable
    )
}

/// jinja2's `sequence` test: whether the value has `len()` and `[]` (strings and dicts too).
fn is_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Bytes
            | ValueKind::Seq
            | ValueKind::Map
    )
}

/// jinja2's `string` filter: Python's `str()`.
fn string(value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    Ok(Value::from(s))
}

/// jinja2's `trim(value, chars=None)`: Python's `str.strip()`.
///
/// A string with nothing to strip comes back as the same value, without a copy.
fn trim(value: &Value, chars: Option<String>) -> Result<Value, Error> {
    if value.kind() == ValueKind::String && !value.is_safe() {
        let s = value.as_str().unwrap_or_default();
        let kept = strip(s, chars.as_deref());
        return Ok(if kept.len() == s.len() {
            value.clone()
        } else {
            Value::from(kept)
        });
    }
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    Ok(Value::from(strip(&s, chars.as_deref())))
}

/// Python's `s.strip(chars)`.
fn strip<'a>(s: &'a str, chars: Option<&str>) -> &'a str {
    match chars {
        Some(chars) => s.trim_matches(|c| chars.contains(c)),
        None => s.trim_matches(python::is_py_space),
    }
}

/// jinja2's `center(value, width=80)`: Python's `str.center`.
fn center(state: &State, value: &Value, width: Option<usize>) -> Result<String, Error> {
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    let width = width.unwrap_or(80);
    let len = s.chars().count();
    if width <= len {
        return Ok(s);
    }
    ensure_bytes(state, "center", s.len() + (width - len))?;
    let margin = width - len;
    // CPython: left = margin / 2 + (margin & width & 1).
    let left = margin / 2 + (margin & width & 1);
    let mut out = " ".repeat(left);
    out.push_str(&s);
    out.push_str(&" ".repeat(margin - left));
    Ok(out)
}

/// jinja2's `wordcount`: the number of `\w+` runs.
fn wordcount(value: &Value) -> Result<usize, Error> {
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    let mut count = 0;
    let mut in_word = false;
    for c in s.chars() {
        let word = c.is_alphanumeric() || c == '_';
        if word && !in_word {
            count += 1;
        }
        in_word = word;
    }
    Ok(count)
}

/// The body of a `{% generation %}` block, fenced so the renderer can find it again.
fn generation(body: String) -> String {
    let mut out = String::with_capacity(body.len() + 6);
    out.push(GEN_START);
    out.push_str(&body);
    out.push(GEN_END);
    out
}

/// `raise_exception(message)`: fails the render with the template's own message.
fn raise_exception(message: Value) -> Result<Value, Error> {
    let mut text = String::new();
    python::py_str(&mut text, &message)?;
    Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
}

/// `strftime_now(format)`.
fn strftime_now(_state: &State, format: String) -> String {
    let now = NOW.with(Cell::get).unwrap_or_else(SystemTime::now);
    Civil::from_system_time(now).strftime(&format)
}

/// Rewrites `{% generation %}`/`{% endgeneration %}` into a filter block, keeping the tag's
/// whitespace control (`-`/`+`) and position so `trim_blocks`/`lstrip_blocks` act the same.
/// Returns `None` when the source has no such tag.
pub(crate) fn rewrite_generation_tags(source: &str) -> Option<String> {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    let mut found = false;
    while let Some(pos) = rest.find("{%") {
        let (before, tag) = rest.split_at(pos);
        out.push_str(before);
        let after_open = &tag[2..];
        let ctrl_len = usize::from(after_open.starts_with(['-', '+']));
        let inner = &after_open[ctrl_len..];
        let trimmed = inner.trim_start();
        let keyword = ["endgeneration", "generation"].into_iter().find(|k| {
            trimmed.starts_with(k)
                && trimmed[k.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_whitespace() || c == '-' || c == '+' || c == '%')
        });
        match keyword {
            Some(k) => {
                found = true;
                let ws = inner.len() - trimmed.len();
                out.push_str("{%");
                out.push_str(&after_open[..ctrl_len]);
                out.push_str(&inner[..ws]);
                out.push_str(if k == "generation" {
                    "filter __kiln_generation"
                } else {
                    "endfilter"
                });
                rest = &trimmed[k.len()..];
            }
            None => {
                out.push_str("{%");
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    found.then_some(out)
}

/// Removes the generation fences from `raw`, returning the text and the fenced byte ranges.
pub(crate) fn extract_generation_spans(raw: &str) -> (String, Vec<std::ops::Range<usize>>) {
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut starts = Vec::new();
    for c in raw.chars() {
        match c {
            GEN_START => starts.push(text.len()),
            GEN_END => {
                if let Some(start) = starts.pop() {
                    spans.push(start..text.len());
                }
            }
            c => text.push(c),
        }
    }
    spans.sort_by_key(|r| (r.start, r.end));
    (text, spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsplit_like_python() {
        // Expected lists are CPython's str.rsplit results for the same calls.
        assert_eq!(rsplit("a,b,c", Some(","), 1), ["a,b", "c"]);
        assert_eq!(rsplit("a,b,c", Some(","), -1), ["a", "b", "c"]);
        assert_eq!(rsplit("  a b  c ", None, 1), ["  a b", "c"]);
        assert_eq!(rsplit("  a b  c ", None, -1), ["a", "b", "c"]);
        assert_eq!(rsplit("", None, -1), Vec::<String>::new());
    }

    #[test]
    fn generation_tags_become_filter_blocks() {
        let src = "a{%- generation -%}b{% endgeneration %}c{% if x %}{%+generation%}{%endgeneration+%}{% endif %}";
        let got = rewrite_generation_tags(src).unwrap();
        assert_eq!(
            got,
            "a{%- filter __kiln_generation -%}b{% endfilter %}c{% if x %}{%+filter __kiln_generation%}{%endfilter+%}{% endif %}"
        );
        assert_eq!(rewrite_generation_tags("{% generations %}{{ x }}"), None);
    }

    #[test]
    fn json_arrays_behave_as_python_lists() {
        // Expected: jinja2 3.1 (sandboxed, as transformers) on the same template and values.
        let env = new_environment();
        let src = "{{ x[-1] }}|{{ x[1:] }}|{{ x|length }}|{% for i in x %}{{ i }}{% endfor %}|\
                   {{ x|tojson }}|{{ 2 in x }}|{{ x|reverse|list }}|{{ x == [1, 2, 3] }}|\
                   {{ x[0:2]|join(\",\") }}|{{ m[\"k\"][-1][\"a\"] }}";
        let x = crate::value::from_json(&serde_json::json!([1, 2, 3])).unwrap();
        let m = crate::value::from_json(&serde_json::json!({"k": [{"a": 1}, {"a": "z"}]})).unwrap();
        let got = env
            .render_str(src, minijinja::context! { x => x, m => m })
            .unwrap();
        assert_eq!(got, "3|[2, 3]|3|123|[1, 2, 3]|True|[3, 2, 1]|True|1,2|z");
    }

    #[test]
    fn spans_are_byte_ranges_of_the_clean_text() {
        let raw = format!("é{GEN_START}ab{GEN_END}c{GEN_START}{GEN_END}");
        let (text, spans) = extract_generation_spans(&raw);
        assert_eq!(text, "éabc");
        assert_eq!(spans, vec![2..4, 5..5]);
    }
}
