//! Namespaces that cannot come to contain themselves.
//!
//! `{% set ns.attr = value %}` is the only way a template can change a value after making it,
//! so it is the only way to build a cycle (`{% set ns.me = ns %}`). minijinja prints, compares
//! and hashes values recursively, and on a cycle it recurses until the stack overflows, which
//! aborts the whole process; the assignment itself cannot be intercepted. So kiln rewrites every
//! namespace assignment of a template before compiling it, passing the value through
//! [`NS_GUARD`], which refuses values holding a namespace (no namespace inside a namespace means
//! no cycle) and values nested deeper than [`MAX_STORED_DEPTH`] (which a loop could otherwise grow
//! one level per iteration, `{% set ns.x = [ns.x] %}`, until printing it overflows the stack).

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use crate::limits::{Limit, limit_error};
use crate::value::{Generator, JsonList, JsonMap, seq_items};

/// The function (and filter) namespace assignments are routed through.
pub(crate) const NS_GUARD: &str = "__kiln_ns_value";

/// How deeply a value stored in a namespace may nest.
const MAX_STORED_DEPTH: usize = 64;

/// The fuel one container costs the walk of [`ns_value`].
const CONTAINER_COST: u64 = 16;

/// Rewrites `{% set a.b = value %}` into `{% set a.b =__kiln_ns_value(( value ))%}` and
/// `{% set a.b | filters %}` into `{% set a.b | filters |__kiln_ns_value%}`. Returns `None` when
/// the source assigns to no namespace.
///
/// The scan follows minijinja's lexer: comments, `{{ }}` and `{% raw %}` are skipped, string
/// literals and brackets are respected when looking for the end of a tag. Text is only inserted
/// inside a line, so errors keep their line numbers.
pub(crate) fn guard_namespace_sets(source: &str) -> Option<String> {
    let b = source.as_bytes();
    let mut edits: Vec<(usize, &'static str)> = Vec::new();
    let mut i = 0;
    while let Some(off) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b'{'))
    {
        let at = i + off;
        i = match b.get(at + 1) {
            Some(b'#') => find(b, at + 2, b"#}").map_or(b.len(), |e| e + 2),
            Some(b'{') => tag_end(b, at + 2, b"}}").map_or(b.len(), |(_, after)| after),
            Some(b'%') => {
                let start = at + 2 + usize::from(matches!(b.get(at + 2), Some(b'-' | b'+')));
                let Some((close, after)) = tag_end(b, start, b"%}") else {
                    break;
                };
                let inner = &source[start..close];
                let (keyword, rest) = split_keyword(inner);
                match keyword {
                    "raw" if rest.trim().is_empty() => end_of_raw(b, after),
                    "set" => {
                        if let Some(found) = set_edits(inner, inner.len() - rest.len()) {
                            edits.extend(found.into_iter().map(|(pos, text)| (start + pos, text)));
                        }
                        after
                    }
                    _ => after,
                }
            }
            _ => at + 1,
        };
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(source.len() + edits.len() * 20);
    let mut copied = 0;
    for (pos, text) in edits {
        out.push_str(&source[copied..pos]);
        out.push_str(text);
        copied = pos;
    }
    out.push_str(&source[copied..]);
    Some(out)
}

/// The insertions for a `set` tag whose body is `inner` (the keyword ends at `kw_end`), when its
/// target is dotted (a namespace attribute).
fn set_edits(inner: &str, kw_end: usize) -> Option<Vec<(usize, &'static str)>> {
    let rest = &inner.as_bytes()[kw_end..];
    let mut depth = 0i32;
    let mut dotted = false;
    for (k, &c) in rest.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'.' => dotted = true,
            b'=' if depth == 0 => {
                if !dotted || rest.get(k + 1) == Some(&b'=') {
                    return None;
                }
                let value_start = kw_end + k + 1;
                return Some(vec![
                    (value_start, "__kiln_ns_value(("),
                    (inner.len(), "))"),
                ]);
            }
            b'|' if depth == 0 => {
                return dotted.then(|| vec![(inner.len(), "|__kiln_ns_value")]);
            }
            b'\'' | b'"' => return None,
            _ => {}
        }
    }
    None
}

/// The first identifier of a tag body and what follows it.
fn split_keyword(inner: &str) -> (&str, &str) {
    let body = inner.trim_start();
    let len = body
        .bytes()
        .position(|c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .unwrap_or(body.len());
    body.split_at(len)
}

/// The first occurrence of `needle` in `b` from `from`.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The end of a tag whose body starts at `from`: the start of its closing marker (with its
/// `-`/`+`) and the position after it. Brackets nest and string literals are skipped, as in
/// minijinja's lexer.
fn tag_end(b: &[u8], from: usize, end: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0i32;
    let mut p = from;
    while p < b.len() {
        let c = b[p];
        if depth == 0 {
            if matches!(c, b'-' | b'+') && b[p + 1..].starts_with(end) {
                return Some((p, p + 1 + end.len()));
            }
            if b[p..].starts_with(end) {
                return Some((p, p + end.len()));
            }
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'\'' | b'"' => {
                p += 1;
                while p < b.len() && b[p] != c {
                    p += if b[p] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        p += 1;
    }
    None
}

/// The position after the `{% endraw %}` that closes a raw block whose body starts at `from`.
fn end_of_raw(b: &[u8], from: usize) -> usize {
    let mut p = from;
    while let Some(at) = find(b, p, b"{%") {
        let mut q = at + 2;
        if matches!(b.get(q), Some(b'-' | b'+')) {
            q += 1;
        }
        while b.get(q).is_some_and(u8::is_ascii_whitespace) {
            q += 1;
        }
        if b[q..].starts_with(b"endraw") {
            q += 6;
            while b.get(q).is_some_and(u8::is_ascii_whitespace) {
                q += 1;
            }
            if matches!(b.get(q), Some(b'-' | b'+')) {
                q += 1;
            }
            if b[q..].starts_with(b"%}") {
                return q + 2;
            }
        }
        p = at + 2;
    }
    b.len()
}

/// `__kiln_ns_value(value)`: `value` itself, once it is known not to hold a namespace nor to
/// nest deeper than [`MAX_STORED_DEPTH`]. The walk is paid for with fuel.
pub(crate) fn ns_value(state: &State, value: Value) -> Result<Value, Error> {
    check_stored(state, &value, 0)?;
    Ok(value)
}

fn check_stored(state: &State, value: &Value, depth: usize) -> Result<(), Error> {
    if !matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    ) || value.downcast_object_ref::<JsonMap>().is_some()
        || value.downcast_object_ref::<JsonList>().is_some()
    {
        // Scalars, and JSON inputs (which hold no namespace and are at most 128 deep).
        return Ok(());
    }
    if is_namespace(value) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "cannot store a namespace inside a namespace (kiln refuses it so that no value can \
             contain itself)",
        ));
    }
    if depth >= MAX_STORED_DEPTH {
        return Err(limit_error(
            Limit::Nesting,
            format!("a value stored in a namespace nests deeper than {MAX_STORED_DEPTH} levels"),
        ));
    }
    // Each container costs about what minijinja charges to build a small one, so that a value
    // sharing its parts (`[x, x]` nested) cannot make the walk exponential for free.
    state.consume_fuel(CONTAINER_COST)?;
    let visit = |n: usize, item: &Value| {
        if n % 16 == 15 {
            state.consume_fuel(1)?;
        }
        check_stored(state, item, depth + 1)
    };
    if let Some(items) = seq_items(value) {
        return items
            .iter()
            .enumerate()
            .try_for_each(|(n, item)| visit(n, item));
    }
    if let Some(generator) = value.downcast_object_ref::<Generator>() {
        // A one-shot generator is looked at without being consumed.
        return generator
            .remaining()
            .iter()
            .enumerate()
            .try_for_each(|(n, item)| visit(n, item));
    }
    if value.kind() == ValueKind::Map {
        if let Some(pairs) = value.as_object().and_then(|o| o.try_iter_pairs()) {
            for (n, (k, v)) in pairs.enumerate() {
                visit(2 * n, &k)?;
                visit(2 * n + 1, &v)?;
            }
        }
        return Ok(());
    }
    value
        .try_iter()?
        .enumerate()
        .try_for_each(|(n, item)| visit(n, &item))
}

/// Whether `value` is one of minijinja's namespaces (the type is private to minijinja: it is
/// recognized by the type name of one made here).
fn is_namespace(value: &Value) -> bool {
    static NAME: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| {
        minijinja::functions::namespace(None)
            .ok()
            .and_then(|ns| ns.as_object().map(|o| o.type_name()))
    });
    matches!((name, value.as_object()), (Some(name), Some(o)) if o.type_name() == *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_assignments_are_wrapped() {
        let cases = [
            (
                "{% set ns.a = 1 %}",
                Some("{% set ns.a =__kiln_ns_value(( 1 ))%}"),
            ),
            (
                "{%- set ns.a = x, y -%}",
                Some("{%- set ns.a =__kiln_ns_value(( x, y ))-%}"),
            ),
            (
                "{% set ns.a | upper %}x{% endset %}",
                Some("{% set ns.a | upper |__kiln_ns_value%}x{% endset %}"),
            ),
            ("{% set ns.a %}x{% endset %}", None),
            ("{% set a = b.c %}{% if a == 1 %}{% endif %}", None),
            ("{{ '{% set ns.a = 1 %}' }}", None),
            ("{# {% set ns.a = 1 %} #}", None),
            ("{% raw %}{% set ns.a = 1 %}{% endraw %}", None),
            (
                "{% raw %}x{%- endraw %}{% set ns.a = '%}' %}",
                Some("{% raw %}x{%- endraw %}{% set ns.a =__kiln_ns_value(( '%}' ))%}"),
            ),
            (
                "{{ {'a': {'b': 1}}}}{% set ns.a = {'k': [1]} %}",
                Some("{{ {'a': {'b': 1}}}}{% set ns.a =__kiln_ns_value(( {'k': [1]} ))%}"),
            ),
        ];
        for (src, want) in cases {
            assert_eq!(guard_namespace_sets(src).as_deref(), want, "{src}");
        }
    }
}
