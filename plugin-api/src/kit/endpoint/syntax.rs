//! The string syntax shared by listening and client endpoints, as in Twisted's strports:
//! `KIND:FIELD:FIELD…`, each field a positional value or `key=value`.
//!
//! - `\` escapes the next character, so `\:` is a colon inside a value and `\\` a backslash;
//! - a value that starts with `[` runs to the matching `]`, colons included, so an IPv6 address
//!   can be written `interface=[::1]` (Twisted writes `interface=\:\:1`; both work);
//! - `=` separates a key only where it is not escaped.
//!
//! [`quote`] writes a value back so that parsing gives the same value: `Display` and `FromStr`
//! round-trip through these two functions, which is what lets a socket be handed over by name.

use std::fmt::{self, Write};

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

/// Parses a number of seconds such as `30` or `2.5`, for `timeout=`.
pub fn seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("timeout '{text}' is not a positive number of seconds"))
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
    fn reports_malformed_strings() {
        assert!(Description::parse(r"tcp:80\").is_err());
        assert!(Description::parse("tcp:80:interface=[::1").is_err());
        assert!(Description::parse("tcp:interface=x:80").is_err());
        assert!(Description::parse("=x").is_err());
        let twice = parse("tcp:80:backlog=1:backlog=2");
        assert!(twice.check_keys(&["backlog"]).is_err());
    }
}
