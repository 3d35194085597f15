//! The string syntax shared by listening and client endpoints, as in Twisted's strports:
//! `KIND:FIELD:FIELD…`, each field a positional value or `key=value`.
//!
//! - `\` escapes the next character, so `\:` is a colon inside a value and `\\` a backslash;
//! - a value that starts with `[` runs to the matching `]`, colons included, so an IPv6 address
//!   can be written `interface=[::1]` (Twisted writes `interface=\:\:1`; both work);
//! - `=` separates a key only where it is not escaped.
//!
//! [`Quoted`] writes a value back so that parsing gives the same value: `Display` and `FromStr`
//! round-trip through these two functions, which is what lets a socket be handed over by name.

use std::fmt::{self, Write};
use std::time::Duration;

/// One endpoint string, split into its kind, positional values and `key=value` pairs.
#[derive(Debug)]
pub struct Description {
    pub kind: String,
    pub positional: Vec<String>,
    pub keywords: Vec<(String, String)>,
}

impl Description {
    /// Splits `text`; fails only on a dangling backslash or an unclosed bracket.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut chars = text.chars();
        let mut more = true;
        while more {
            let mut key = None;
            let mut value = String::new();
            // Brackets group only at the start of a value, so a `[` inside a path is literal.
            let mut at_value_start = true;
            more = false;
            while let Some(c) = chars.next() {
                match c {
                    ':' => {
                        more = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("it ends with a lone backslash".into()),
                    },
                    '[' if at_value_start => loop {
                        match chars.next() {
                            Some(']') => break,
                            Some(c) => value.push(c),
                            None => return Err("a '[' is never closed".into()),
                        }
                    },
                    '=' if key.is_none() => {
                        key = Some(std::mem::take(&mut value));
                        at_value_start = true;
                        continue;
                    }
                    c => value.push(c),
                }
                at_value_start = false;
            }
            fields.push((key, value));
        }
        let mut fields = fields.into_iter();
        let kind = match fields.next() {
            Some((None, kind)) => kind,
            _ => return Err("it does not start with a type such as tcp:".into()),
        };
        let mut description = Self {
            kind,
            positional: Vec::new(),
            keywords: Vec::new(),
        };
        for (key, value) in fields {
            match key {
                Some(key) => description.keywords.push((key, value)),
                None if description.keywords.is_empty() => description.positional.push(value),
                None => return Err(format!("'{value}' comes after a key=value field")),
            }
        }
        Ok(description)
    }

    /// Checks every key against `allowed`, and that no key is given twice.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<(), String> {
        for (index, (key, _)) in self.keywords.iter().enumerate() {
            if !allowed.contains(&key.as_str()) {
                return Err(format!(
                    "unknown parameter '{key}' for {} (expected {})",
                    self.kind,
                    allowed.join(", ")
                ));
            }
            if self.keywords[..index].iter().any(|(k, _)| k == key) {
                return Err(format!("'{key}' is given twice"));
            }
        }
        Ok(())
    }

    /// The value of `key`, if given.
    pub fn keyword(&self, key: &str) -> Option<&str> {
        self.keywords
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `index`th positional value, or the value of `key` (Twisted accepts both, as in
    /// `tcp:80` and `tcp:port=80`); an error if both are given.
    pub fn value(&self, index: usize, key: &str) -> Result<Option<&str>, String> {
        match (self.positional.get(index), self.keyword(key)) {
            (Some(_), Some(_)) => Err(format!("the {key} is given twice")),
            (Some(value), None) => Ok(Some(value)),
            (None, value) => Ok(value),
        }
    }

    /// Fails if more than `count` positional values were given.
    pub fn at_most_positional(&self, count: usize) -> Result<(), String> {
        match self.positional.get(count) {
            Some(extra) => Err(format!("unexpected field '{extra}'")),
            None => Ok(()),
        }
    }
}

/// Writes `value` so that [`Description::parse`] reads it back unchanged.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An IPv6 address reads better in brackets than with every colon escaped.
        if self.0.contains(':') && self.0.parse::<std::net::Ipv6Addr>().is_ok() {
            return write!(f, "[{}]", self.0);
        }
        for (index, c) in self.0.chars().enumerate() {
            if matches!(c, '\\' | ':' | '=') || (c == '[' && index == 0) {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        Ok(())
    }
}

/// Parses a positive number of seconds such as `30` or `2.5`, for `timeout=`. Decimal digits
/// are read exactly, to the nanosecond (digits beyond it are dropped), so every duration that
/// [`Seconds`] writes reads back the same, which a float would not do.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let invalid = || format!("timeout '{text}' is not a positive number of seconds");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return Err(invalid());
    }
    let secs = match whole {
        "" => 0,
        _ => whole.parse::<u64>().map_err(|_| invalid())?,
    };
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0, |nanos, digit| nanos * 10 + u32::from(digit - b'0'));
    Some(Duration::new(secs, nanos))
        .filter(|d| !d.is_zero())
        .ok_or_else(invalid)
}

/// Writes a duration as [`seconds`] reads it: `30`, `2.5`, `0.000000001`.
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs())?;
        match self.0.subsec_nanos() {
            0 => Ok(()),
            nanos => write!(f, ".{}", format!("{nanos:09}").trim_end_matches('0')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Description {
        Description::parse(text).unwrap()
    }

    #[test]
    fn splits_positional_and_keyword_fields() {
        let d = parse("tcp:80:interface=127.0.0.1:backlog=5");
        assert_eq!(d.kind, "tcp");
        assert_eq!(d.positional, ["80"]);
        assert_eq!(d.keyword("interface"), Some("127.0.0.1"));
        assert_eq!(d.keyword("backlog"), Some("5"));
    }

    #[test]
    fn brackets_and_escapes_keep_colons() {
        assert_eq!(
            parse("tcp:80:interface=[::1]").keyword("interface"),
            Some("::1")
        );
        assert_eq!(
            parse(r"tcp:80:interface=\:\:1").keyword("interface"),
            Some("::1")
        );
        assert_eq!(parse("unix:/tmp/a[1]:mode=0600").positional, ["/tmp/a[1]"]);
        assert_eq!(parse(r"unix:/tmp/a\=b").positional, ["/tmp/a=b"]);
    }

    #[test]
    fn quoting_round_trips_awkward_values() {
        for value in [
            "::1",
            "a:b",
            r"back\slash",
            "[x]",
            "a=b",
            "x[y]",
            "",
            "é:日本",
        ] {
            let text = format!("unix:{}", Quoted(value));
            assert_eq!(parse(&text).positional, [value], "{text}");
        }
    }

    #[test]
    fn seconds_are_read_and_written_exactly() {
        for (text, duration, written) in [
            ("30", Duration::from_secs(30), "30"),
            ("2.5", Duration::from_millis(2500), "2.5"),
            (".25", Duration::from_millis(250), "0.25"),
            ("1.", Duration::from_secs(1), "1"),
            ("0.000000001", Duration::from_nanos(1), "0.000000001"),
            ("0.0000000019", Duration::from_nanos(1), "0.000000001"),
            (
                "18446744073709551615.999999999",
                Duration::MAX,
                "18446744073709551615.999999999",
            ),
        ] {
            assert_eq!(seconds(text), Ok(duration), "{text}");
            assert_eq!(Seconds(duration).to_string(), written);
        }
        for bad in [
            "",
            ".",
            "0",
            "0.0000000001",
            "-1",
            "+1",
            "1e3",
            "inf",
            "1.2.3",
            " 1",
            "18446744073709551616",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_malformed_strings() {
        assert!(Description::parse(r"tcp:80\").is_err());
        assert!(Description::parse("tcp:80:interface=[::1").is_err());
        assert!(Description::parse("tcp:interface=x:80").is_err());
        assert!(Description::parse("=x").is_err());
        let twice = parse("tcp:80:backlog=1:backlog=2");
        assert!(twice.check_keys(&["backlog"]).is_err());
    }
}
