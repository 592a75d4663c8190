//! Rendering untrusted text (a peer's command name, a user name) on one line.

use std::borrow::Cow;

/// Replaces every control character (C0, DEL, C1), U+FEFF, the line and paragraph
/// separators and the bidi controls with `?`. Borrowed when nothing needs replacing.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if unsafe_char(c) { '?' } else { c }).collect())
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_replaced() {
        assert!(matches!(one_line("plain"), Cow::Borrowed("plain")));
        assert_eq!(one_line("a\nb\x1b[31m\u{202E}c\u{85}"), "a?b?[31m?c?");
    }
}
