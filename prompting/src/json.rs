//! Finding a JSON value in a model's reply.

use serde::de::DeserializeOwned;

use crate::Error;

/// At most this many bracket positions are tried per reply.
const MAX_CANDIDATES: usize = 256;

/// Extracts the first JSON object or array in `reply` that deserializes into `T`.
///
/// Models wrap JSON in prose and code fences; this looks, in order, inside
/// `` ```json `` (or unlabeled) fenced blocks, then through the whole reply,
/// at every balanced `{...}` or `[...]` (brackets inside JSON strings are
/// respected) and returns the first that parses as `T`.
///
/// On failure the error's `expected` field says what was wrong with the most
/// plausible candidate (the longest one): no JSON at all, a syntax error, a
/// value of the wrong shape (serde's message, e.g. a missing field), or an
/// object that never closes because the reply was cut off.
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Qa { question: String, answer: String }
///
/// let reply = "Sure! Here it is:\n```json\n{\"question\": \"Who?\", \"answer\": \"Ada [Lovelace]\"}\n```\nAnything else?";
/// let qa: Qa = kiln_prompting::extract_json(reply)?;
/// assert_eq!(qa.answer, "Ada [Lovelace]");
///
/// let err = kiln_prompting::extract_json::<Qa>("{\"question\": \"Who?\"}").unwrap_err();
/// assert!(err.to_string().contains("missing field `answer`"));
/// # Ok::<(), kiln_prompting::Error>(())
/// ```
pub fn extract_json<T: DeserializeOwned>(reply: &str) -> Result<T, Error> {
    find_json(reply).map_err(|problem| {
        Error::malformed(
            "extract_json",
            format!("JSON of the requested type ({problem})"),
            reply,
        )
    })
}

/// Like [`extract_json`], but the error is the problem described for the model.
pub(crate) fn find_json<T: DeserializeOwned>(reply: &str) -> Result<T, String> {
    // (span length, problem) of the longest failed candidate.
    let mut worst: Option<(usize, String)> = None;
    let mut tried = 0usize;
    for source in fenced_blocks(reply).into_iter().chain([reply]) {
        let mut pos = 0;
        while let Some(off) = source[pos..].find(['{', '[']) {
            if tried == MAX_CANDIDATES {
                break;
            }
            tried += 1;
            let start = pos + off;
            let kind = if source[start..].starts_with('{') {
                "object"
            } else {
                "array"
            };
            let (span, problem, next) = match balanced_end(source, start) {
                Scan::Closed(end) => {
                    let candidate = &source[start..end];
                    match serde_json::from_str::<serde_json::Value>(candidate) {
                        Ok(_) => match serde_json::from_str::<T>(candidate) {
                            Ok(value) => return Ok(value),
                            Err(e) => (
                                end - start,
                                format!(
                                    "the JSON {kind} does not have the expected structure: {e}"
                                ),
                                end,
                            ),
                        },
                        Err(e) => (
                            end - start,
                            format!("the JSON {kind} is not valid JSON: {e}"),
                            start + 1,
                        ),
                    }
                }
                Scan::Unclosed => (
                    source.len() - start,
                    format!("the JSON {kind} is never closed (the reply may have been cut off)"),
                    start + 1,
                ),
                Scan::Mismatched(at) => (
                    at - start,
                    format!(
                        "the JSON {kind} has a mismatched closing bracket `{}`",
                        &source[at..at + 1]
                    ),
                    start + 1,
                ),
            };
            if worst.as_ref().is_none_or(|(len, _)| span > *len) {
                worst = Some((span, problem));
            }
            pos = next;
        }
    }
    Err(worst
        .map(|(_, p)| p)
        .unwrap_or_else(|| "the reply contains no JSON object or array".to_owned()))
}

enum Scan {
    /// Balanced; the byte index just past the closing bracket.
    Closed(usize),
    /// The text ends before the brackets balance.
    Unclosed,
    /// A closing bracket of the wrong kind at this byte index.
    Mismatched(usize),
}

fn balanced_end(s: &str, start: usize) -> Scan {
    let bytes = s.as_bytes();
    let mut stack: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    // Brackets and quotes are ASCII, so scanning bytes never splits a character
    // that matters.
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return Scan::Mismatched(i);
                }
                if stack.is_empty() {
                    return Scan::Closed(i + 1);
                }
            }
            _ => {}
        }
    }
    Scan::Unclosed
}

/// Bodies of fenced code blocks labeled `json` or unlabeled.
fn fenced_blocks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(nl) = after.find('\n') else { break };
        let label = after[..nl].trim();
        let body = &after[nl + 1..];
        let Some(close) = body.find("```") else {
            // An unterminated fence (cut-off reply): the body runs to the end.
            if label.is_empty() || label.eq_ignore_ascii_case("json") {
                out.push(body);
            }
            break;
        };
        if label.is_empty() || label.eq_ignore_ascii_case("json") {
            out.push(&body[..close]);
        }
        rest = &body[close + 3..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Qa {
        question: String,
        answer: String,
    }

    fn qa(q: &str, a: &str) -> Qa {
        Qa {
            question: q.into(),
            answer: a.into(),
        }
    }

    #[test]
    fn bare_object() {
        let got: Qa = find_json(r#"{"question":"q","answer":"a"}"#).unwrap();
        assert_eq!(got, qa("q", "a"));
    }

    #[test]
    fn object_in_prose_after_bracketed_noise() {
        let reply = r#"As noted [1], {see below} the pair is {"question": "Why {x}?", "answer": "because \"]\""} ok."#;
        let got: Qa = find_json(reply).unwrap();
        assert_eq!(got, qa("Why {x}?", "because \"]\""));
    }

    #[test]
    fn fenced_block_wins_over_earlier_prose_json() {
        let reply = "Example: {\"question\": \"old\", \"answer\": \"old\"}\n```json\n{\"question\": \"new\", \"answer\": \"new\"}\n```";
        let got: Qa = find_json(reply).unwrap();
        assert_eq!(got, qa("new", "new"));
    }

    #[test]
    fn array_of_objects() {
        let reply = "```\n[{\"question\": \"a\", \"answer\": \"b\"}, {\"question\": \"c\", \"answer\": \"d\"}]\n```";
        let got: Vec<Qa> = find_json(reply).unwrap();
        assert_eq!(got, vec![qa("a", "b"), qa("c", "d")]);
    }

    #[test]
    fn missing_field_is_named() {
        let err = find_json::<Qa>(r#"Here: {"question": "q"}"#).unwrap_err();
        assert_eq!(
            err,
            "the JSON object does not have the expected structure: missing field `answer` at line 1 column 17"
        );
    }

    #[test]
    fn cut_off_reply_is_reported_as_unclosed() {
        let err = find_json::<Qa>("See [1]. ```json\n{\"question\": \"q\", \"ans").unwrap_err();
        assert_eq!(
            err,
            "the JSON object is never closed (the reply may have been cut off)"
        );
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = find_json::<Qa>("{'question': 'q', 'answer': 'a'}").unwrap_err();
        assert_eq!(
            err,
            "the JSON object is not valid JSON: key must be a string at line 1 column 2"
        );
    }

    #[test]
    fn no_json_at_all() {
        let err = find_json::<Qa>("I cannot help with that.").unwrap_err();
        assert_eq!(err, "the reply contains no JSON object or array");
    }

    #[test]
    fn mismatched_bracket() {
        let err = find_json::<Qa>("{\"question\": [\"q\"}").unwrap_err();
        assert_eq!(err, "the JSON object has a mismatched closing bracket `}`");
    }
}
