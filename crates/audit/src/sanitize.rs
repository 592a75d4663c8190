//! Making untrusted text safe to put on one log line.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// What a sanitizer replaces (always with `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Line-safe: every control character (C0, DEL, C1 including U+0085 and U+009B),
    /// U+FEFF, U+2028, U+2029 and the bidi controls U+202A–U+202E, U+2066–U+2069.
    Line,
    /// Column-safe: [`Line`](Mode::Line) plus `,` and `=`, so a value cannot forge a
    /// `key=value` column.
    Column,
    /// Bracket-safe: [`Column`](Mode::Column) plus space, `[` and `]`, for the ids in
    /// the envelope bracket.
    Bracket,
}

impl Mode {
    /// Whether `c` must be replaced under this mode.
    pub fn rejects(self, c: char) -> bool {
        let line = c.is_control()
            || matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        match self {
            Self::Line => line,
            Self::Column => line || matches!(c, ',' | '='),
            Self::Bracket => line || matches!(c, ',' | '=' | ' ' | '[' | ']'),
        }
    }

    /// Whether any character of `text` must be replaced: a byte scan, decoding only
    /// the lead bytes of the multi-byte characters that can be rejected (C2 for C1
    /// controls, E2 for U+2028–U+2069, EF for U+FEFF).
    pub fn rejects_any(self, text: &str) -> bool {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let hit = match b {
                0x00..=0x1f | 0x7f => true,
                b',' | b'=' => self != Self::Line,
                b' ' | b'[' | b']' => self == Self::Bracket,
                0xc2 | 0xe2 | 0xef => text[i..].chars().next().is_some_and(|c| self.rejects(c)),
                _ => false,
            };
            if hit {
                return true;
            }
            i += 1;
        }
        false
    }

    fn clean(self, text: &str) -> Cow<'_, str> {
        if !self.rejects_any(text) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(text.chars().map(|c| if self.rejects(c) { '?' } else { c }).collect())
    }
}

/// Line-safe copy of `text`; borrowed (no allocation) when already clean.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    Mode::Line.clean(text)
}

/// Column-safe copy of `text` (also replaces `,` and `=`); borrowed when clean.
pub fn sanitize_kv(text: &str) -> Cow<'_, str> {
    Mode::Column.clean(text)
}

/// At most `max` characters of `text`, with `…` appended when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
    }
}

/// Streaming sanitizer: writes `text` to a formatter with unsafe characters replaced,
/// without allocating.
///
/// ```
/// use audit::{Mode, Sanitized};
/// assert_eq!(Sanitized(Mode::Column, "a=b,\nc").to_string(), "a?b??c");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Sanitized<'a>(pub Mode, pub &'a str);

impl fmt::Display for Sanitized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Sanitized(mode, text) = *self;
        let mut rest = text;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| mode.rejects(c)) {
            f.write_str(&rest[..at])?;
            f.write_char('?')?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_character_is_replaced() {
        let bad = [
            '\0', '\n', '\r', '\t', '\x1b', '\x7f', '\u{80}', '\u{85}', '\u{9b}', '\u{9f}', '\u{FEFF}', '\u{2028}',
            '\u{2029}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}',
        ];
        for c in bad {
            let s = format!("a{c}b");
            assert_eq!(sanitize(&s), "a?b", "{:?}", c);
            assert_eq!(Sanitized(Mode::Line, &s).to_string(), "a?b");
        }
        assert_eq!(sanitize("a,b=c d"), "a,b=c d");
        assert_eq!(sanitize_kv("a,b=c d"), "a?b?c d");
        assert_eq!(Sanitized(Mode::Bracket, "a,b=c d[e]").to_string(), "a?b?c?d?e?");
        assert_eq!(sanitize("héllo ✓ 日本"), "héllo ✓ 日本");
    }

    #[test]
    fn clean_input_is_borrowed() {
        assert!(matches!(sanitize("cluster:api"), Cow::Borrowed(_)));
        assert!(matches!(sanitize_kv("cluster:api"), Cow::Borrowed(_)));
        assert!(matches!(sanitize("a\nb"), Cow::Owned(_)));
    }

    proptest::proptest! {
        #[test]
        fn byte_scan_agrees_with_char_scan(text in "\\PC*|[\\x00-\\x{3000}]{0,20}") {
            for mode in [Mode::Line, Mode::Column, Mode::Bracket] {
                proptest::prop_assert_eq!(mode.rejects_any(&text), text.chars().any(|c| mode.rejects(c)));
            }
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }
}
