//! Python's spelling of values: `json.dumps`, `repr` and `str`, over minijinja values.
//!
//! Templates were written against Python: `{{ tools | tojson }}` is `json.dumps`, and
//! `{{ some_list }}` is `str(some_list)`. These functions reproduce CPython's output byte for byte
//! for the JSON-like values templates see (strings, numbers, booleans, None, lists, dicts, tuples).

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use crate::limits::{Limit, MAX_PRINT_DEPTH, limit_error, max_bytes};
use crate::value::{JsonMap, seq_items};

/// Options of `json.dumps` that transformers' `tojson` exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(s)`: newline before every item, indented by `s` per level.
    pub indent: Option<Cow<'static, str>>,
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
        return map.pairs().to_vec();
    }
    match value.as_object().and_then(|o| o.try_iter_pairs()) {
        Some(pairs) => pairs.collect(),
        None => Vec::new(),
    }
}

/// `json.dumps(value, ...)`.
///
/// Fails on values nested deeper than [`MAX_PRINT_DEPTH`] and on output longer than the render's
/// size limit (values made by a template may share parts, so their text can be exponentially
/// longer than the work that built them).
pub(crate) fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut writer = JsonWriter::new(opts);
    writer.value(value, 0)?;
    Ok(writer.out)
}

/// The error for printing a value nested deeper than [`MAX_PRINT_DEPTH`].
fn too_deep() -> Error {
    limit_error(
        Limit::Nesting,
        format!("cannot print a value nested deeper than {MAX_PRINT_DEPTH} levels"),
    )
}

/// The error for printing a value whose text is longer than `max` bytes.
fn too_long(max: usize) -> Error {
    limit_error(
        Limit::OutputSize,
        format!("the text of a value is longer than the limit of {max} bytes"),
    )
}

/// `json.dumps(value, ...)` as a template string. A prepared object (see
/// [`JsonMap`](crate::value::JsonMap)) computes it once per options and shares the text after.
pub(crate) fn json_dumps_value(value: &Value, opts: &JsonOptions) -> Result<Value, Error> {
    let memo = value
        .downcast_object_ref::<JsonMap>()
        .and_then(|m| m.1.as_ref());
    match memo {
        Some(memo) => match memo.get() {
            Some((memo_opts, text)) if memo_opts == opts => Ok(text.clone()),
            Some(_) => json_dumps(value, opts).map(Value::from),
            None => {
                let text = Value::from(json_dumps(value, opts)?);
                let _ = memo.set((opts.clone(), text.clone()));
                Ok(text)
            }
        },
        None => json_dumps(value, opts).map(Value::from),
    }
}

/// Writes `json.dumps` output.
struct JsonWriter<'a> {
    out: String,
    opts: &'a JsonOptions,
    /// `"\n"` and the indent repeated for the deepest level reached so far (indented output).
    newline: String,
    /// The longest output allowed.
    max: usize,
}

impl<'a> JsonWriter<'a> {
    fn new(opts: &'a JsonOptions) -> Self {
        // Deep enough for most documents; deeper levels extend it.
        let newline = match &opts.indent {
            Some(indent) => {
                let mut newline = String::with_capacity(1 + 8 * indent.len());
                newline.push('\n');
                for _ in 0..8 {
                    newline.push_str(indent);
                }
                newline
            }
            None => String::new(),
        };
        Self {
            out: String::with_capacity(1024),
            opts,
            newline,
            max: max_bytes(),
        }
    }

    /// The newline and indentation before an item at `level` (nothing on one line).
    fn newline_indent(&mut self, level: usize) -> Result<(), Error> {
        let Some(indent) = &self.opts.indent else {
            return Ok(());
        };
        let len = 1 + level * indent.len();
        if self.out.len() + len > self.max {
            return Err(too_long(self.max));
        }
        while self.newline.len() < len {
            self.newline.push_str(indent);
        }
        self.out.push_str(&self.newline[..len]);
        Ok(())
    }

    fn value(&mut self, value: &Value, level: usize) -> Result<(), Error> {
        if level > MAX_PRINT_DEPTH {
            return Err(too_deep());
        }
        if self.out.len() > self.max {
            return Err(too_long(self.max));
        }
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => write_json_number(&mut self.out, value),
            ValueKind::String => write_json_str(
                &mut self.out,
                value.as_str().unwrap_or_default(),
                self.opts.ensure_ascii,
            ),
            ValueKind::Seq => match seq_items(value) {
                Some(items) => self.seq(items, level)?,
                None => {
                    let items: Vec<Value> = value.try_iter()?.collect();
                    self.seq(&items, level)?;
                }
            },
            ValueKind::Map => match value.downcast_object_ref::<JsonMap>() {
                Some(map) => self.map(map.pairs(), level)?,
                None => self.map(&map_entries(value), level)?,
            },
            _ if crate::env::is_py_none(value) => self.out.push_str("null"),
            _ => return Err(not_serializable(value)),
        }
        Ok(())
    }

    fn seq(&mut self, items: &[Value], level: usize) -> Result<(), Error> {
        if items.is_empty() {
            self.out.push_str("[]");
            return Ok(());
        }
        self.out.push('[');
        self.newline_indent(level + 1)?;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(&self.opts.item_separator);
                self.newline_indent(level + 1)?;
            }
            self.value(item, level + 1)?;
        }
        self.newline_indent(level)?;
        self.out.push(']');
        Ok(())
    }

    fn map(&mut self, entries: &[(Value, Value)], level: usize) -> Result<(), Error> {
        if entries.is_empty() {
            self.out.push_str("{}");
            return Ok(());
        }
        let sorted;
        let entries: &[(Value, Value)] = if self.opts.sort_keys {
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
        self.out.push('{');
        self.newline_indent(level + 1)?;
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                self.out.push_str(&self.opts.item_separator);
                self.newline_indent(level + 1)?;
            }
            match k.as_str() {
                Some(key) if k.kind() == ValueKind::String => {
                    write_json_str(&mut self.out, key, self.opts.ensure_ascii)
                }
                _ => write_json_str(&mut self.out, &json_key(k)?, self.opts.ensure_ascii),
            }
            self.out.push_str(&self.opts.key_separator);
            self.value(v, level + 1)?;
        }
        self.newline_indent(level)?;
        self.out.push('}');
        Ok(())
    }
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

/// Whether `json.dumps` escapes any byte of `bytes`; eight bytes at a time, as most strings need
/// no escape at all.
fn needs_escape(bytes: &[u8], ensure_ascii: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `x` is below `n` (exact for n <= 0x80).
    let has_less = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    // Whether some byte of `x` equals `b`.
    let has_byte = |x: u64, b: u8| has_less(x ^ (ONES * u64::from(b)), 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        if has_less(x, 0x20) || has_byte(x, b'"') || has_byte(x, b'\\') {
            return true;
        }
        if ensure_ascii && (x & HIGH != 0 || has_byte(x, 0x7f)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| ESCAPE[b as usize] || (ensure_ascii && b >= 0x7f))
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    if !needs_escape(s.as_bytes(), ensure_ascii) {
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
///
/// Fails on values nested deeper than [`MAX_PRINT_DEPTH`] and when the text grows past the
/// render's size limit (see [`json_dumps`]).
pub(crate) fn py_str(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::String => {
            out.push_str(value.as_str().unwrap_or_default());
            Ok(())
        }
        _ => py_repr(out, value),
    }
}

/// `repr(value)`, with the limits of [`py_str`].
pub(crate) fn py_repr(out: &mut String, value: &Value) -> Result<(), Error> {
    repr_at(out, value, 0, max_bytes())
}

fn repr_at(out: &mut String, value: &Value, depth: usize, max: usize) -> Result<(), Error> {
    if depth > MAX_PRINT_DEPTH {
        return Err(too_deep());
    }
    if out.len() > max {
        return Err(too_long(max));
    }
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
                    repr_at(out, &item, depth + 1, max)?;
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
                repr_at(out, k, depth + 1, max)?;
                out.push_str(": ");
                repr_at(out, v, depth + 1, max)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
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
    fn escape_scan_matches_bytewise() {
        let bytewise = |b: &[u8], ascii: bool| {
            b.iter()
                .any(|&c| c < 0x20 || c == b'"' || c == b'\\' || (ascii && c >= 0x7f))
        };
        let specials = [
            0u8, 0x1f, 0x20, b'"', b'\\', b'!', b'#', b'[', b']', 0x7e, 0x7f, 0x80, 0xff,
        ];
        for len in 0..20 {
            for pos in 0..len {
                for &c in &specials {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = c;
                    for ascii in [false, true] {
                        assert_eq!(
                            needs_escape(&bytes, ascii),
                            bytewise(&bytes, ascii),
                            "{bytes:?} {ascii}"
                        );
                    }
                }
            }
        }
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
        py_repr(&mut s, &v).unwrap();
        assert_eq!(s, r#"["it's", None, True, {'k': 'a\nb'}]"#);
    }
}
