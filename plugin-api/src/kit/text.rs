//! Text from clients and files, shown to people: which characters a terminal or a reader would
//! act on instead of showing. One definition for the host's log and every plugin's own output
//! (the ftp plugin's listings), so that what one escapes the other does not let through.

/// Whether `c` changes how the text around it is shown rather than showing itself: C0 controls
/// (tab included: callers that keep tabs say so), DEL, C1 controls (U+0080 to U+009F: some
/// terminals obey U+009B as CSI), the line and paragraph separators (U+2028, U+2029), and the
/// bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069), which
/// make a line read in another order than it was written (`evil\u{202e}txt.exe`).
pub fn acts_on_display(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_direction_marks_act_printable_text_does_not() {
        for c in [
            '\0', '\t', '\n', '\u{1b}', '\u{7f}', '\u{9b}', '\u{2028}', '\u{202e}', '\u{2067}',
        ] {
            assert!(acts_on_display(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', 'Ā', '日', '\u{200b}'] {
            assert!(!acts_on_display(c), "{c:?}");
        }
    }
}
