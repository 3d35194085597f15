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

/// The codings `accept_encoding` allows, the client's preferred first (by q-value; ours,
/// [`Coding::PREFERRED`], breaks ties). A coding is allowed when it is listed, or `*` is, with
/// a q-value above zero (`gzip;q=0` refuses gzip) and no lower than `identity`'s when that is
/// listed, directly or as `*` (`identity;q=1, gzip;q=0.5` asks for the file as it is; at equal
/// q-values the smaller response wins).
pub fn accepted(accept_encoding: Option<&[u8]>) -> Vec<Coding> {
    let Some(text) = accept_encoding.and_then(|v| std::str::from_utf8(v).ok()) else {
        return Vec::new();
    };
    let weight = |wanted: &str| -> Option<f32> {
        text.split(',').find_map(|item| {
            let mut fields = item.split(';');
            let name = fields.next()?.trim();
            if !name.eq_ignore_ascii_case(wanted) {
                return None;
            }
            let q = fields
                .find_map(|param| {
                    let (key, value) = param.trim().split_once('=')?;
                    key.trim().eq_ignore_ascii_case("q").then(|| value.trim())
                })
                .map_or(Some(1.0), |value| value.parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(0.0);
            Some(q)
        })
    };
    // Identity not listed takes `*`'s q-value (RFC 9110 §12.5.3); with neither, a listed
    // coding is preferred to it.
    let identity = weight("identity").or_else(|| weight("*")).unwrap_or(0.0);
    let mut allowed: Vec<(Coding, f32)> = Coding::PREFERRED
        .into_iter()
        .filter_map(|coding| {
            let q = weight(coding.name())
                .or_else(|| (coding == Coding::Gzip).then(|| weight("x-gzip")).flatten())
                .or_else(|| weight("*"))?;
            (q > 0.0 && q >= identity).then_some((coding, q))
        })
        .collect();
    // A stable sort keeps our preference among equal q-values.
    allowed.sort_by(|a, b| b.1.total_cmp(&a.1));
    allowed.into_iter().map(|(coding, _)| coding).collect()
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
        assert_eq!(
            codings("gzip;q=1, br;q=0.5"),
            [Coding::Gzip, Coding::Brotli]
        );
        assert_eq!(codings("identity;q=1, gzip;q=0.5"), []);
        assert_eq!(codings("identity;q=0.1, gzip;q=0.5"), [Coding::Gzip]);
        assert_eq!(codings("gzip;q=nonsense, br"), [Coding::Brotli]);
        // `*` stands for identity and br here: gzip is below identity, br ties with it.
        assert_eq!(codings("*;q=0.5, gzip;q=0.4"), [Coding::Brotli]);
        assert_eq!(
            codings("*;q=0.5, gzip;q=0.6"),
            [Coding::Gzip, Coding::Brotli]
        );
        assert_eq!(accepted(None), []);
    }
}
