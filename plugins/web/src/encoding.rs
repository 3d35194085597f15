//! Precompressed siblings: `a.js.br` or `a.js.gz` served for `a.js` to clients that accept
//! that encoding (`Accept-Encoding`, RFC 9110 §12.5.3).

/// A content coding we may find a sibling for, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    pub const PREFERRED: [Coding; 2] = [Coding::Brotli, Coding::Gzip];

    /// The sibling's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` value.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The codings `accept_encoding` allows, most preferred first. A coding is allowed when it
/// is listed, or `*` is, with a q-value above zero (`gzip;q=0` refuses gzip).
pub fn accepted(accept_encoding: Option<&[u8]>) -> Vec<Coding> {
    let Some(text) = accept_encoding.and_then(|v| std::str::from_utf8(v).ok()) else {
        return Vec::new();
    };
    let weight = |wanted: &str| -> Option<bool> {
        text.split(',').find_map(|item| {
            let mut fields = item.split(';');
            let name = fields.next()?.trim();
            if !name.eq_ignore_ascii_case(wanted) {
                return None;
            }
            let refused = fields.any(|param| {
                param.trim().split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("q")
                        && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            Some(!refused)
        })
    };
    Coding::PREFERRED
        .into_iter()
        .filter(|coding| {
            weight(coding.name())
                .or_else(|| {
                    (*coding == Coding::Gzip)
                        .then(|| weight("x-gzip"))
                        .flatten()
                })
                .or_else(|| weight("*"))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codings(header: &str) -> Vec<Coding> {
        accepted(Some(header.as_bytes()))
    }

    #[test]
    fn accept_encoding_lists_and_refuses() {
        assert_eq!(codings("gzip, deflate, br"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("gzip"), [Coding::Gzip]);
        assert_eq!(codings("br;q=0.5"), [Coding::Brotli]);
        assert_eq!(codings("br;q=0, gzip;q=1.0"), [Coding::Gzip]);
        assert_eq!(codings("*"), [Coding::Brotli, Coding::Gzip]);
        assert_eq!(codings("*;q=0"), []);
        assert_eq!(codings("gzip;q=0, *"), [Coding::Brotli]);
        assert_eq!(codings("identity"), []);
        assert_eq!(codings("X-GZIP"), [Coding::Gzip]);
        assert_eq!(accepted(None), []);
    }
}
