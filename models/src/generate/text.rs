//! Turning a growing decoded text into safe deltas.

/// Tracks the decoded output and what has been handed out.
///
/// A delta is released only when it is final: text ending in U+FFFD (an incomplete UTF-8
/// sequence split across byte-fallback tokens) waits, and so does a tail that could be the
/// start of a stop string.
pub struct TextStream {
    stop_strings: Vec<String>,
    text: String,
    emitted: usize,
    done: bool,
}

impl TextStream {
    /// A stream that watches for `stop_strings`.
    pub fn new(stop_strings: &[String]) -> Self {
        Self {
            stop_strings: stop_strings
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            text: String::new(),
            emitted: 0,
            done: false,
        }
    }

    /// Takes the full text decoded so far; returns the new final part and, when a stop string
    /// appeared, that string (the text is then cut before it).
    pub fn push(&mut self, decoded: &str) -> (&str, Option<String>) {
        if self.done {
            return ("", None);
        }
        self.text = decoded.to_owned();
        if let Some((pos, s)) = self
            .stop_strings
            .iter()
            .filter_map(|s| self.text.find(s.as_str()).map(|p| (p, s.clone())))
            .min_by_key(|(p, _)| *p)
        {
            self.text.truncate(pos);
            self.done = true;
            let start = self.emitted.min(pos);
            self.emitted = pos;
            return (&self.text[start..pos], Some(s));
        }
        let mut end = self.text.len();
        if self.text.ends_with('\u{FFFD}') {
            end = self.text.trim_end_matches('\u{FFFD}').len();
        }
        end -= self.pending_stop_prefix(&self.text[..end]);
        if end <= self.emitted {
            return ("", None);
        }
        let start = self.emitted;
        self.emitted = end;
        (&self.text[start..end], None)
    }

    /// Length of the longest tail of `text` that begins some stop string.
    fn pending_stop_prefix(&self, text: &str) -> usize {
        let mut best = 0;
        for s in &self.stop_strings {
            for (i, _) in s.char_indices().skip(1) {
                if i > best && text.ends_with(&s[..i]) {
                    best = i;
                }
            }
        }
        best
    }

    /// Everything not yet handed out (call at the end).
    pub fn finish(&mut self) -> &str {
        let start = self.emitted.min(self.text.len());
        self.emitted = self.text.len();
        &self.text[start..]
    }

    /// The text so far (stop string removed).
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_utf8_waits() {
        let mut s = TextStream::new(&[]);
        assert_eq!(s.push("caf").0, "caf");
        assert_eq!(s.push("caf\u{FFFD}").0, "");
        assert_eq!(s.push("café").0, "é");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let mut s = TextStream::new(&["\nUser:".to_owned()]);
        assert_eq!(s.push("Paris.").0, "Paris.");
        assert_eq!(s.push("Paris.\nUs").0, "");
        let (delta, hit) = s.push("Paris.\nUser: next");
        assert_eq!((delta, hit.as_deref()), ("", Some("\nUser:")));
        assert_eq!(s.text(), "Paris.");
    }

    #[test]
    fn a_false_alarm_is_released() {
        let mut s = TextStream::new(&["###".to_owned()]);
        assert_eq!(s.push("a #").0, "a ");
        assert_eq!(s.push("a #1").0, "#1");
        assert_eq!(s.finish(), "");
    }
}
