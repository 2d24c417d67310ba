//! jinja2 filters whose minijinja counterparts differ from them on chat-template inputs.

use minijinja::value::{Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind, State};

use crate::env::python_args;
use crate::limits::ensure_bytes;

/// jinja2's `indent(s, width=4, first=False, blank=False)`.
///
/// jinja2 appends a newline before splitting with Python's `str.splitlines`, so a trailing
/// newline of `s` survives (`'{\n'|indent(4, first=true)` is `'    {\n'`; minijinja drops it),
/// every Python line boundary (`\r\n`, `\r`, `\v`, `\f`, `\x1c`-`\x1e`, `\x85`, U+2028, U+2029)
/// becomes `\n`, and `width` may be a string. `s` must be a string, as Python's `+=` requires.
pub(crate) fn indent(
    state: &State,
    value: &Value,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    let [width, first, blank] = python_args(args, ["width", "first", "blank"])?;
    let first = first.is_some_and(|v| v.is_true());
    let blank = blank.is_some_and(|v| v.is_true());
    let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "unsupported operand type(s) for +=: '{}' and 'str'",
                py_type_name(value)
            ),
        ));
    };
    let indention: std::borrow::Cow<'_, str> = match &width {
        None => "    ".into(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().into(),
        Some(w) => {
            let n = i64::try_from(w.clone())?;
            let n = usize::try_from(n).unwrap_or(0);
            ensure_bytes(state, "indent", n)?;
            " ".repeat(n).into()
        }
    };
    let lines = splitlines(s);
    let worst = s
        .len()
        .saturating_add(indention.len().saturating_mul(lines.len() + 1));
    ensure_bytes(state, "indent", worst)?;
    let mut out = String::with_capacity(worst);
    if first {
        out.push_str(&indention);
    }
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            if blank || !line.is_empty() {
                out.push_str(&indention);
            }
        }
        out.push_str(line);
    }
    Ok(if value.is_safe() {
        Value::from_safe_string(out)
    } else {
        Value::from(out)
    })
}

/// jinja2's `join(value, d='', attribute=None)` with auto-escaping off:
/// `str(d).join(map(str, value))`, Python's `str()` of every item (`1e-05`, `['a']`, `None`).
pub(crate) fn join(
    state: &State,
    value: &Value,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    let [d, attribute] = python_args(args, ["d", "attribute"])?;
    let mut sep = String::new();
    if let Some(d) = &d {
        crate::python::py_str(&mut sep, d)?;
    }
    let path: Vec<Value> = match &attribute {
        Some(a) if !a.is_none() => {
            let mut text = String::new();
            crate::python::py_str(&mut text, a)?;
            text.split('.')
                .map(|p| match p.parse::<i64>() {
                    Ok(i) => Value::from(i),
                    Err(_) => Value::from(p),
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let mut item = item;
        for key in &path {
            item = item.get_item(key)?;
        }
        crate::python::py_str(&mut out, &item)?;
        ensure_bytes(state, "join", out.len())?;
    }
    Ok(Value::from(out))
}

/// The Python type name of a template value, for error messages.
pub(crate) fn py_type_name(value: &Value) -> &'static str {
    if crate::env::is_py_none(value) {
        return "NoneType";
    }
    match value.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable => "generator",
        _ => "object",
    }
}

/// Python's `(s + "\n").splitlines()`: the lines of `s` split at every Python line boundary,
/// with a final empty line when `s` ends with one (and `[""]` for an empty `s`).
pub(crate) fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => match chars.peek() {
                Some((_, '\n')) => {
                    chars.next();
                    i + 2
                }
                _ => i + 1,
            },
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..i]);
        start = end;
    }
    // The appended "\n" ends the last line, which may be empty.
    lines.push(&s[start..]);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> String {
        let env = crate::env::new_environment();
        env.render_str(src, ()).unwrap()
    }

    #[test]
    fn indent_like_jinja2() {
        // Expected strings: jinja2 3.1.6 on the same templates.
        assert_eq!(render("{{ '{\\n'|indent(4, first=true) }}"), "    {\n");
        assert_eq!(render("{{ 'a\\nb\\n\\nc'|indent(2) }}"), "a\n  b\n\n  c");
        assert_eq!(
            render("{{ 'a\\n\\nb'|indent(2, blank=true) }}"),
            "a\n  \n  b"
        );
        assert_eq!(render("{{ 'a\\r\\nb\\rc'|indent('> ') }}"), "a\n> b\n> c");
        assert_eq!(render("{{ ''|indent(first=true) }}"), "    ");
        assert_eq!(render("{{ 'x\\n'|indent(width=1, blank=true) }}"), "x\n ");
    }

    #[test]
    fn join_like_jinja2() {
        // Expected strings: jinja2 3.1.6 (sandboxed, as transformers) on the same templates.
        assert_eq!(
            render("{{ [1e-05, none, true, ['a'], {'k': 2.0}] | join(', ') }}"),
            "1e-05, None, True, ['a'], {'k': 2.0}"
        );
        assert_eq!(
            render("{{ [{'a': [1e16]}, {'a': ['q']}] | join('-', attribute='a.0') }}"),
            "1e+16-q"
        );
        assert_eq!(render("{{ 'abc' | join(1) }}"), "a1b1c");
        assert_eq!(render("{{ nothing | join }}"), "");
        assert_eq!(render("{{ {'a': 1, 'b': 2} | join }}"), "ab");
    }

    #[test]
    fn splitlines_like_python() {
        assert_eq!(splitlines(""), [""]);
        assert_eq!(splitlines("a\n"), ["a", ""]);
        assert_eq!(splitlines("a\u{2028}b\x0cc"), ["a", "b", "c"]);
    }
}
