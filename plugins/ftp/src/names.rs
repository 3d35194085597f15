//! File names that are not safe to send as they are.
//!
//! A name may hold any byte but `/` and NUL, including CR and LF: sent raw, `evil\r\n226 x`
//! would end a listing line early and forge a reply or a log line. The policy, in one place:
//!
//! - listings meant for programs (NLST, MLSD) skip such names: a name with its control
//!   characters replaced would be the name of another file, and a client cannot send CR or LF
//!   in a command anyway, so it could never fetch the file;
//! - everything meant for people (LIST, STAT, the paths in replies and in the log) shows them
//!   with each control character replaced by `?`, as `ls -q` and vsftpd do.

/// Whether `name` holds no control character (C0 or DEL).
pub fn is_clean(name: &[u8]) -> bool {
    !name.iter().any(|&b| is_control(b))
}

/// `name` with each control character replaced by `?`; other bytes, UTF-8 or not, as they are.
pub fn escaped(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|&b| if is_control(b) { b'?' } else { b })
        .collect()
}

/// [`escaped`], as text for the log (invalid UTF-8 shown as U+FFFD).
pub fn for_log(name: &[u8]) -> String {
    String::from_utf8_lossy(&escaped(name)).into_owned()
}

fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7F
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
}
