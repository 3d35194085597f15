//! One command line taken apart: its verb and its argument.

/// Telnet's "interpret as command" byte. RFC 959 runs the control connection over Telnet, and
/// some clients still send Telnet's interrupt sequence (IAC IP, IAC DM) before `ABOR`.
const IAC: u8 = 0xFF;

/// The longest verb there is (`XCUP`, `EPSV`, …); anything longer is not a command.
const MAX_VERB: usize = 4;

#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    /// The verb in upper case; empty if the line held no valid verb.
    pub verb: String,
    /// What followed the verb and one space, as sent: file names are bytes.
    pub arg: Vec<u8>,
}

impl Command {
    pub fn parse(line: &[u8]) -> Self {
        let line = without_telnet(line);
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(at) => (&line[..at], line[at + 1..].to_vec()),
            None => (&line[..], Vec::new()),
        };
        let verb = match verb.len() <= MAX_VERB && verb.iter().all(u8::is_ascii_alphabetic) {
            true => String::from_utf8_lossy(verb).to_ascii_uppercase(),
            false => String::new(),
        };
        Self { verb, arg }
    }

    /// The argument as text, for commands whose argument is a keyword or a number.
    pub fn word(&self) -> String {
        String::from_utf8_lossy(&self.arg)
            .trim()
            .to_ascii_uppercase()
    }
}

/// The line without Telnet commands: `IAC IAC` is a literal 0xFF; `IAC x` is dropped.
fn without_telnet(line: &[u8]) -> Vec<u8> {
    let mut clean = Vec::with_capacity(line.len());
    let mut bytes = line.iter();
    while let Some(&byte) = bytes.next() {
        if byte != IAC {
            clean.push(byte);
        } else if bytes.next() == Some(&IAC) {
            clean.push(IAC);
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &[u8]) -> (String, Vec<u8>) {
        let command = Command::parse(line);
        (command.verb, command.arg)
    }

    #[test]
    fn verbs_are_case_insensitive_and_arguments_kept_as_sent() {
        assert_eq!(parsed(b"retr a.txt"), ("RETR".into(), b"a.txt".to_vec()));
        assert_eq!(
            parsed(b"STOR  two spaces"),
            ("STOR".into(), b" two spaces".to_vec())
        );
        assert_eq!(parsed(b"NOOP"), ("NOOP".into(), Vec::new()));
        assert_eq!(
            parsed(b"CWD caf\xc3\xa9\xff\xff"),
            ("CWD".into(), b"caf\xc3\xa9\xff".to_vec())
        );
    }

    #[test]
    fn telnet_interrupts_before_abor_are_dropped() {
        assert_eq!(parsed(b"\xff\xf4\xff\xf2ABOR"), ("ABOR".into(), Vec::new()));
    }

    #[test]
    fn garbage_has_no_verb() {
        for line in [&b"\x00\x01\x02"[..], b"", b"TOOLONG x", b"12 x", b"\xfd"] {
            assert_eq!(Command::parse(line).verb, "", "{line:?}");
        }
    }
}
