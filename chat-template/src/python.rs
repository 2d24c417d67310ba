//! Python's spelling of values: `json.dumps`, `repr` and `str`, over minijinja values.
//!
//! Templates were written against Python: `{{ tools | tojson }}` is `json.dumps`, and
//! `{{ some_list }}` is `str(some_list)`. These functions reproduce CPython's output byte for byte
//! for the JSON-like values templates see (strings, numbers, booleans, None, lists, dicts, tuples).

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use crate::value::JsonMap;

/// Options of `json.dumps` that transformers' `tojson` exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(s)`: newline before every item, indented by `s` per level.
    pub indent: Option<String>,
    pub item_separator: Cow<'static, str>,
    pub key_separator: Cow<'static, str>,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            ensure_ascii: false,
            indent: None,
            item_separator: Cow::Borrowed(", "),
            key_separator: Cow::Borrowed(": "),
            sort_keys: false,
        }
    }
}

fn not_serializable(value: &Value) -> Error {
    let kind = match value.kind() {
        ValueKind::Undefined => "Undefined".to_owned(),
        ValueKind::Iterable => "generator".to_owned(),
        other => other.to_string(),
    };
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {kind} is not JSON serializable"),
    )
}

/// The entries of a map value, in insertion order.
pub(crate) fn map_entries(value: &Value) -> Vec<(Value, Value)> {
    if let Some(map) = value.downcast_object_ref::<JsonMap>() {
        return map.0.clone();
    }
    match value.as_object().and_then(|o| o.try_iter_pairs()) {
        Some(pairs) => pairs.collect(),
        None => Vec::new(),
    }
}

/// `json.dumps(value, ...)`.
pub(crate) fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    if let Some(memo) = value
        .downcast_object_ref::<JsonMap>()
        .and_then(|m| m.1.as_ref())
    {
        if let Some((memo_opts, text)) = memo.get() {
            if memo_opts == opts {
                return Ok(text.clone());
            }
        } else {
            let mut out = String::new();
            write_json(&mut out, value, opts, 0)?;
            let _ = memo.set((opts.clone(), out.clone()));
            return Ok(out);
        }
    }
    let mut out = String::new();
    write_json(&mut out, value, opts, 0)?;
    Ok(out)
}

fn newline_indent(out: &mut String, opts: &JsonOptions, level: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    level: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_json_number(out, value),
        ValueKind::String => {
            write_json_str(out, value.as_str().unwrap_or_default(), opts.ensure_ascii)
        }
        ValueKind::Seq => {
            let mut items = value.try_iter()?.peekable();
            if items.peek().is_none() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            newline_indent(out, opts, level + 1);
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_separator);
                    newline_indent(out, opts, level + 1);
                }
                write_json(out, &item, opts, level + 1)?;
            }
            newline_indent(out, opts, level);
            out.push(']');
        }
        ValueKind::Map => {
            let owned;
            let entries: &[(Value, Value)] = match value.downcast_object_ref::<JsonMap>() {
                Some(map) => &map.0,
                None => {
                    owned = map_entries(value);
                    &owned
                }
            };
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            let sorted;
            let entries: &[(Value, Value)] = if opts.sort_keys {
                let mut keyed = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    keyed.push((json_key(k)?, (k.clone(), v.clone())));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                sorted = keyed.into_iter().map(|(_, kv)| kv).collect::<Vec<_>>();
                &sorted
            } else {
                entries
            };
            out.push('{');
            newline_indent(out, opts, level + 1);
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_separator);
                    newline_indent(out, opts, level + 1);
                }
                match k.as_str() {
                    Some(key) if k.kind() == ValueKind::String => {
                        write_json_str(out, key, opts.ensure_ascii)
                    }
                    _ => write_json_str(out, &json_key(k)?, opts.ensure_ascii),
                }
                out.push_str(&opts.key_separator);
                write_json(out, v, opts, level + 1)?;
            }
            newline_indent(out, opts, level);
            out.push('}');
        }
        _ if crate::env::is_py_none(value) => out.push_str("null"),
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Dict keys as `json.dumps` converts them.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::None => Ok("null".to_owned()),
        ValueKind::Number => {
            let mut s = String::new();
            write_json_number(&mut s, key);
            Ok(s)
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "keys must be str, int, float, bool or None, not {}",
                key.kind()
            ),
        )),
    }
}

fn write_json_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        match value.as_i64() {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            None => {
                let _ = write!(out, "{value}");
            }
        }
    } else {
        let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
        if f.is_nan() {
            out.push_str("NaN");
        } else if f.is_infinite() {
            out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            out.push_str(&float_repr(f));
        }
    }
}

/// Bytes `json.dumps` escapes whatever `ensure_ascii` says: `"`, `\\` and the C0 controls.
const fn escape_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static ESCAPE: [bool; 256] = escape_table();

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    let bytes = s.as_bytes();
    let needs = |b: u8| ESCAPE[b as usize] || (ensure_ascii && b >= 0x7f);
    if !bytes.iter().any(|&b| needs(b)) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' | '\\' => true,
            c if (c as u32) < 0x20 => true,
            c => ensure_ascii && !(' '..='~').contains(&c),
        };
        if !escape {
            continue;
        }
        out.push_str(&s[start..i]);
        start = i + c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `repr(float)`: the shortest round-tripping digits, in CPython's layout.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // CPython: value = 0.DIGITS * 10^decpt; exponent form when decpt <= -4 or decpt > 16.
    let decpt = exp + 1;
    let n = digits.len() as i32;
    let mut out = String::from(sign);
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt < n {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(&digits);
        for _ in 0..(decpt - n) {
            out.push('0');
        }
        out.push_str(".0");
    }
    out
}

/// `str(value)`: strings as they are, everything else as `repr`.
pub(crate) fn py_str(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => py_repr(out, value),
    }
}

/// `repr(value)`.
pub(crate) fn py_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Number => {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            out.push_str(&float_repr(f));
        }
        ValueKind::String => repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let tuple = value.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut count = 0;
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &item);
                    count += 1;
                }
            }
            if tuple && count == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, (k, v)) in map_entries(value).iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, k);
                out.push_str(": ");
                py_repr(out, v);
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Characters `str.isprintable()` rejects (besides the C0/C1 controls), so `repr` escapes them.
fn is_unprintable(c: char) -> bool {
    let u = c as u32;
    u < 0x20
        || (0x7f..=0xa0).contains(&u)
        || u == 0xad
        || u == 0x1680
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x2064).contains(&u)
        || u == 0x3000
        || u == 0xfeff
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff9..=0xfffb).contains(&u)
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`.
fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_unprintable(c) => {
                let u = c as u32;
                let _ = if u <= 0xff {
                    write!(out, "\\x{u:02x}")
                } else {
                    write!(out, "\\u{u:04x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isspace()` characters (what `str.strip()` removes).
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..='\u{1f}' | ' ' | '\u{85}' | '\u{a0}')
        || (c as u32 > 0xff && c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_cpython() {
        // Expected strings are CPython's repr() of the same literals.
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (2.0, "2.0"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn json_dumps_default_and_indent() {
        let v = Value::from_pairs([
            ("b", Value::from(vec![Value::from(1), Value::from(2.0)])),
            ("a", Value::from("é\"<&>")),
        ]);
        let compact = json_dumps(&v, &JsonOptions::default()).unwrap();
        assert_eq!(compact, r#"{"b": [1, 2.0], "a": "é\"<&>"}"#);
        let opts = JsonOptions {
            ensure_ascii: true,
            indent: Some("  ".into()),
            item_separator: ",".into(),
            sort_keys: true,
            ..JsonOptions::default()
        };
        let pretty = json_dumps(&v, &opts).unwrap();
        assert_eq!(
            pretty,
            "{\n  \"a\": \"\\u00e9\\\"<&>\",\n  \"b\": [\n    1,\n    2.0\n  ]\n}"
        );
    }

    #[test]
    fn repr_of_containers() {
        let v = Value::from(vec![
            Value::from("it's"),
            Value::from(()),
            Value::from(true),
            Value::from_pairs([("k", Value::from("a\nb"))]),
        ]);
        let mut s = String::new();
        py_repr(&mut s, &v);
        assert_eq!(s, r#"["it's", None, True, {'k': 'a\nb'}]"#);
    }
}
