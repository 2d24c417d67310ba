//! Small text helpers shared by the parsers.

/// Byte index of the last ASCII-case-insensitive occurrence of `needle`.
pub(crate) fn find_ascii_ci_last(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    // Bytes equal up to ASCII case start on a character boundary, because the
    // needle's first byte is itself a boundary byte.
    haystack
        .as_bytes()
        .windows(needle.len())
        .rposition(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Byte index of the first ASCII-case-insensitive occurrence of `needle`.
pub(crate) fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The text up to the first line break, trimmed.
pub(crate) fn first_line(s: &str) -> &str {
    s.trim_start().lines().next().unwrap_or("").trim()
}

/// The first number in `s` (`-12`, `3.5`, `1,250`), with thousands commas removed.
pub(crate) fn first_number(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let start = b.iter().position(u8::is_ascii_digit)?;
    let negative = start > 0 && b[start - 1] == b'-';
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        let next_is_digit = b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if c.is_ascii_digit() {
            out.push(c as char);
        } else if c == b',' && next_is_digit && !out.contains('.') {
            // A thousands separator: skip it.
        } else if c == b'.' && next_is_digit && !out.contains('.') {
            out.push('.');
        } else {
            break;
        }
        i += 1;
    }
    Some(out)
}

/// A key under which answers that differ only in case, surrounding
/// whitespace, quotes or final punctuation count as the same.
pub(crate) fn answer_key(s: &str) -> String {
    s.trim()
        .trim_end_matches(['.', '!', '?'])
        .trim_matches(['"', '\'', '`'])
        .trim()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(
            first_number("about $1,250.50 total.").as_deref(),
            Some("1250.50")
        );
        assert_eq!(first_number("It is -3, not 4").as_deref(), Some("-3"));
        assert_eq!(first_number("4.").as_deref(), Some("4"));
        assert_eq!(first_number("1,2 or 3").as_deref(), Some("12"));
        assert_eq!(first_number("none"), None);
    }

    #[test]
    fn case_insensitive_search_handles_multibyte_text() {
        let s = "İstanbul: the ANSWER is 7; the answer is 8";
        let at = find_ascii_ci_last(s, "the answer is").unwrap();
        assert_eq!(&s[at..], "the answer is 8");
        let at = find_ascii_ci(s, "the answer is").unwrap();
        assert_eq!(&s[at..at + 13], "the ANSWER is");
        assert_eq!(find_ascii_ci_last("short", "longer needle"), None);
    }

    #[test]
    fn answer_keys() {
        assert_eq!(answer_key(" Yes. "), "yes");
        assert_eq!(answer_key("\"Paris\"!"), "paris");
        assert_eq!(first_line("\n  a b \n c"), "a b");
    }
}
