//! The `Range` header (RFC 9110 §14.1.2): which bytes of a file of a known length to send.

/// At most this many ranges are sent as `multipart/byteranges`; a request for more (after
/// overlapping and adjacent ones are merged) gets the whole file, as RFC 9110 §14.2 allows, so
/// a few bytes of header cannot ask for thousands of parts.
const MAX_PARTS: usize = 16;
/// Longer Range headers are ignored rather than parsed.
const MAX_HEADER_LEN: usize = 1024;

/// What to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// The whole file: no Range, one that is not valid bytes ranges, or too many parts.
    Full,
    /// These byte ranges, inclusive, sorted, none overlapping or adjacent.
    Partial(Vec<(u64, u64)>),
    /// Not one range overlaps the file: `416` with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Parses `header` (`bytes=0-99`, `bytes=-500`, `bytes=9500-`, `bytes=0-0,-1`) for a file of
/// `len` bytes.
pub fn parse(header: &[u8], len: u64) -> Ranges {
    let Some(specs) = std::str::from_utf8(header)
        .ok()
        .filter(|h| h.len() <= MAX_HEADER_LEN)
        .and_then(|h| strip_prefix_ignore_case(h.trim(), "bytes="))
    else {
        return Ranges::Full;
    };
    let mut wanted = Vec::new();
    // `bytes=-5` of an empty file is satisfiable (RFC 9110 §14.1.1: a non-zero suffix) but
    // selects nothing a 206 could describe: the whole, empty, file is sent, as by nginx.
    let mut empty_suffix = false;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let Some(range) = parse_spec(spec) else {
            return Ranges::Full;
        };
        empty_suffix |= len == 0 && matches!(range, Spec::Suffix(n) if n > 0);
        if let Some(range) = range.within(len) {
            wanted.push(range);
        }
    }
    if wanted.is_empty() {
        return match !empty_suffix && specs.split(',').any(|s| !s.trim().is_empty()) {
            true => Ranges::Unsatisfiable,
            false => Ranges::Full,
        };
    }
    wanted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(wanted.len());
    for (first, last) in wanted {
        match merged.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    match merged.len() > MAX_PARTS {
        true => Ranges::Full,
        false => Ranges::Partial(merged),
    }
}

enum Spec {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl Spec {
    /// The inclusive range this spec selects in `len` bytes, if any.
    fn within(&self, len: u64) -> Option<(u64, u64)> {
        match *self {
            Spec::From(first, _) if first >= len => None,
            Spec::From(first, last) => Some((first, last.unwrap_or(u64::MAX).min(len - 1))),
            Spec::Suffix(0) => None,
            Spec::Suffix(_) if len == 0 => None,
            Spec::Suffix(n) => Some((len - n.min(len), len - 1)),
        }
    }
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        match text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            true => text.parse().ok(),
            false => None,
        }
    };
    match (first, last) {
        ("", suffix) => Some(Spec::Suffix(number(suffix)?)),
        (first, "") => Some(Spec::From(number(first)?, None)),
        (first, last) => {
            let (first, last) = (number(first)?, number(last)?);
            (first <= last).then_some(Spec::From(first, Some(last)))
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(header: &str, len: u64) -> Ranges {
        parse(header.as_bytes(), len)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ranges("bytes=0-99", 1000), Ranges::Partial(vec![(0, 99)]));
        assert_eq!(
            ranges("bytes=990-2000", 1000),
            Ranges::Partial(vec![(990, 999)])
        );
        assert_eq!(
            ranges("bytes=900-", 1000),
            Ranges::Partial(vec![(900, 999)])
        );
        assert_eq!(
            ranges("bytes=-100", 1000),
            Ranges::Partial(vec![(900, 999)])
        );
        assert_eq!(ranges("bytes=-5000", 1000), Ranges::Partial(vec![(0, 999)]));
        assert_eq!(
            ranges("Bytes = 0-0", 1000),
            Ranges::Full,
            "no spaces around '='"
        );
        assert_eq!(ranges("BYTES=0-0", 1000), Ranges::Partial(vec![(0, 0)]));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(ranges("bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(ranges("bytes=5000-6000", 1000), Ranges::Unsatisfiable);
        assert_eq!(ranges("bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(ranges("bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(ranges("bytes=-0", 0), Ranges::Unsatisfiable);
        assert_eq!(
            ranges("bytes=-1", 0),
            Ranges::Full,
            "satisfiable, and empty"
        );
    }

    #[test]
    fn invalid_ranges_are_ignored() {
        for header in [
            "bytes=",
            "bytes=a-b",
            "bytes=5-1",
            "items=0-1",
            "bytes=0-1-2",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=0x1-2",
        ] {
            assert_eq!(ranges(header, 1000), Ranges::Full, "{header}");
        }
    }

    #[test]
    fn several_ranges_merge_and_are_capped() {
        assert_eq!(
            ranges("bytes=0-1,5-6", 1000),
            Ranges::Partial(vec![(0, 1), (5, 6)])
        );
        assert_eq!(
            ranges("bytes=5-6,0-1", 1000),
            Ranges::Partial(vec![(0, 1), (5, 6)])
        );
        assert_eq!(
            ranges("bytes=0-5,3-9,10-12", 1000),
            Ranges::Partial(vec![(0, 12)])
        );
        assert_eq!(
            ranges("bytes=0-1,2000-3000", 1000),
            Ranges::Partial(vec![(0, 1)])
        );
        let many: Vec<String> = (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        assert_eq!(
            ranges(&format!("bytes={}", many.join(",")), 1000),
            Ranges::Full
        );
        let overlapping = vec!["0-999"; 500].join(",");
        assert_eq!(
            ranges(&format!("bytes={overlapping}"), 1000),
            Ranges::Full,
            "too long to parse"
        );
    }
}
