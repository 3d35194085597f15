//! File names that are not safe to send as they are.
//!
//! A name may hold any byte but `/` and NUL, including CR and LF: sent raw, `evil\r\n226 x`
//! would end a listing line early and forge a reply or a log line, and ESC or CSI (U+009B)
//! would be acted on by the terminal that shows it. The policy, in one place:
//!
//! - listings meant for programs (NLST, MLSD) skip such names: a name with its control
//!   characters replaced would be the name of another file, and a client cannot send CR or LF
//!   in a command anyway, so it could never fetch the file;
//! - everything meant for people (LIST, STAT, the paths in replies and in the log) shows them
//!   with each control character replaced by `?`, as `ls -q` does.
//!
//! Control characters are those of `plugin_api::text::acts_on_display` (C0, DEL, C1, the line
//! separators and the bidirectional overrides, which make `evil\u{202e}txt.exe` read as
//! `evilexe.txt`), and the single bytes 0x80 to 0x9F where a name is not UTF-8 (a terminal in
//! an 8-bit mode takes 0x9B for CSI). Bytes of valid UTF-8 are kept otherwise: 0x80 to 0x9F are
//! also continuation bytes of ordinary characters (`Ā` is C4 80).

/// Whether `name` holds no control character.
pub fn is_clean(name: &[u8]) -> bool {
    pieces(name).all(|piece| !piece.is_control)
}

/// `name` with each control character replaced by `?`; other bytes, UTF-8 or not, as they are.
pub fn escaped(name: &[u8]) -> Vec<u8> {
    let mut shown = Vec::with_capacity(name.len());
    for piece in pieces(name) {
        match piece.is_control {
            true => shown.push(b'?'),
            false => shown.extend_from_slice(piece.bytes),
        }
    }
    shown
}

/// [`escaped`], as text for the log (invalid UTF-8 shown as U+FFFD).
pub fn for_log(name: &[u8]) -> String {
    String::from_utf8_lossy(&escaped(name)).into_owned()
}

/// One character of a name, or one byte of it that is not part of valid UTF-8.
struct Piece<'a> {
    bytes: &'a [u8],
    is_control: bool,
}

fn pieces(name: &[u8]) -> impl Iterator<Item = Piece<'_>> {
    name.utf8_chunks().flat_map(|chunk| {
        let valid = chunk.valid();
        let characters = valid.char_indices().map(move |(at, c)| Piece {
            bytes: &valid.as_bytes()[at..at + c.len_utf8()],
            is_control: plugin_api::text::acts_on_display(c),
        });
        let invalid = chunk.invalid().chunks(1).map(|byte| Piece {
            bytes: byte,
            is_control: (0x80..=0x9F).contains(&byte[0]),
        });
        characters.chain(invalid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_and_replaced() {
        assert!(is_clean("café.txt".as_bytes()) && is_clean(b"\xff odd"));
        assert!(!is_clean(b"evil\r\n226 fake") && !is_clean(b"tab\there") && !is_clean(b"\x7f"));
        assert_eq!(escaped(b"evil\r\n226 fake\r\nx"), b"evil??226 fake??x");
        assert_eq!(for_log(b"a\x1b[31m"), "a?[31m");
    }

    #[test]
    fn c1_controls_are_control_characters_in_utf8_and_in_8_bit_names() {
        assert!(!is_clean("csi\u{9b}31m".as_bytes()) && !is_clean(b"latin\x9b31m"));
        assert_eq!(escaped("csi\u{9b}31m".as_bytes()), b"csi?31m");
        assert_eq!(escaped("\u{85}nel".as_bytes()), b"?nel");
        assert_eq!(escaped(b"latin\x9b31m \xe9t\xe9"), b"latin?31m \xe9t\xe9");
        // Continuation bytes in 0x80..0x9F belong to ordinary characters.
        assert!(is_clean("Ā ğ €".as_bytes()));
        assert_eq!(escaped("Ā€".as_bytes()), "Ā€".as_bytes());
    }
}
