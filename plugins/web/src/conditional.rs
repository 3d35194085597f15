//! Validators (ETag, Last-Modified) and conditional requests, in RFC 9110 §13.2.2's order:
//! If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then If-Range.

use crate::encoding::Coding;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, HeaderValue, Method};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file's validators, as sent in `ETag` and `Last-Modified`.
pub struct Validators {
    /// A strong entity tag, quotes included: the length and the modification time to the
    /// nanosecond, so a rewrite within the same second still changes it.
    pub etag: String,
    /// The modification time, to the second (HTTP dates have no finer unit).
    pub modified: SystemTime,
}

impl Validators {
    /// The validators of a file of `len` bytes modified at `modified`, sent with `coding`
    /// (a precompressed sibling). The coding is part of the tag: `a.js` and `a.js.gz` can have
    /// the same length and time, and a client resuming one with `If-Range` must not be given
    /// bytes of the other.
    pub fn of(len: u64, modified: SystemTime, coding: Option<Coding>) -> Self {
        let since_epoch = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        let coding = coding.map_or("", Coding::name);
        let dash = if coding.is_empty() { "" } else { "-" };
        Self {
            etag: format!("\"{len:x}-{:x}{dash}{coding}\"", since_epoch.as_nanos()),
            modified: UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()),
        }
    }

    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(self.modified)
    }
}

/// What the preconditions decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the file (a Range may still apply).
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates the preconditions of a GET or HEAD request against the file's validators.
pub fn evaluate(headers: &HeaderMap, method: &Method, file: &Validators) -> Precondition {
    if let Some(value) = headers.get(IF_MATCH) {
        if !matches_any(value, &file.etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(date) = single_date(headers, IF_UNMODIFIED_SINCE) {
        if file.modified > date {
            return Precondition::Failed;
        }
    }
    let read_only = method == Method::GET || method == Method::HEAD;
    if let Some(value) = headers.get(IF_NONE_MATCH) {
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
        if matches_any(value, &file.etag, Comparison::Weak) {
            return match read_only {
                true => Precondition::NotModified,
                false => Precondition::Failed,
            };
        }
    } else if let Some(date) = single_date(headers, IF_MODIFIED_SINCE).filter(|_| read_only) {
        if file.modified <= date {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether a Range may be honoured: true without If-Range, or if its validator is still the
/// file's (a strong ETag match, or exactly its Last-Modified date). A stale one means "send
/// it all".
pub fn range_allowed(headers: &HeaderMap, file: &Validators) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        return !text.starts_with("W/") && text == file.etag;
    }
    httpdate::parse_http_date(text).is_ok_and(|date| date == file.modified)
}

#[derive(Clone, Copy)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether `value` (`*`, or a list of entity tags) matches `etag`.
fn matches_any(value: &HeaderValue, etag: &str, comparison: Comparison) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    if text.trim() == "*" {
        return true;
    }
    entity_tags(text).any(|(weak, tag)| match comparison {
        Comparison::Strong => !weak && tag == etag,
        Comparison::Weak => tag == etag,
    })
}

/// The entity tags in a list such as `"a", W/"b"`: (weak, the quoted tag). A comma may stand
/// inside quotes, so the list is walked, not split.
fn entity_tags(mut text: &str) -> impl Iterator<Item = (bool, &str)> {
    std::iter::from_fn(move || {
        text = text.trim_start_matches([' ', '\t', ',']);
        let weak = text.starts_with("W/");
        let rest = text.strip_prefix("W/").unwrap_or(text);
        let end = rest.strip_prefix('"')?.find('"')? + 2;
        let tag = &rest[..end];
        text = &rest[end..];
        Some((weak, tag))
    })
}

/// An HTTP date from `name`, if there is exactly one valid one.
fn single_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Validators {
        Validators::of(12, UNIX_EPOCH + Duration::new(1_700_000_000, 500), None)
    }

    fn check(pairs: &[(http::HeaderName, &str)]) -> Precondition {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        evaluate(&headers, &Method::GET, &file())
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let etag = file().etag;
        let old = "Sat, 01 Jan 2000 00:00:00 GMT";
        let now = file().last_modified();
        assert_eq!(check(&[(IF_NONE_MATCH, &etag)]), Precondition::NotModified);
        assert_eq!(
            check(&[(IF_NONE_MATCH, &format!("W/{etag}"))]),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[(IF_NONE_MATCH, &format!("\"x\", {etag}"))]),
            Precondition::NotModified
        );
        assert_eq!(check(&[(IF_NONE_MATCH, "*")]), Precondition::NotModified);
        assert_eq!(
            check(&[(IF_NONE_MATCH, "\"other\""), (IF_MODIFIED_SINCE, &now)]),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[(IF_NONE_MATCH, &etag), (IF_MODIFIED_SINCE, old)]),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[(IF_MODIFIED_SINCE, &now)]),
            Precondition::NotModified
        );
        assert_eq!(check(&[(IF_MODIFIED_SINCE, old)]), Precondition::Proceed);
        assert_eq!(
            check(&[(IF_MODIFIED_SINCE, "yesterday")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let etag = file().etag;
        assert_eq!(check(&[(IF_MATCH, &etag)]), Precondition::Proceed);
        assert_eq!(
            check(&[(IF_MATCH, &format!("W/{etag}"))]),
            Precondition::Failed
        );
        assert_eq!(check(&[(IF_MATCH, "\"nope\"")]), Precondition::Failed);
        assert_eq!(
            check(&[(IF_UNMODIFIED_SINCE, "Sat, 01 Jan 2000 00:00:00 GMT")]),
            Precondition::Failed
        );
        assert_eq!(
            check(&[(IF_UNMODIFIED_SINCE, &file().last_modified())]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range_needs_a_strong_current_validator() {
        let range = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_RANGE, HeaderValue::from_str(value).unwrap());
            range_allowed(&headers, &file())
        };
        assert!(range(&file().etag));
        assert!(!range(&format!("W/{}", file().etag)));
        assert!(!range("\"stale\""));
        assert!(range(&file().last_modified()));
        assert!(!range("Sat, 01 Jan 2000 00:00:00 GMT"));
        assert!(range_allowed(&HeaderMap::new(), &file()));
    }
}
