//! The response for a file: validators, conditional requests, ranges (one, or several as
//! `multipart/byteranges`), and the precompressed coding it was found in.

use crate::body::{Body, Part};
use crate::conditional::{self, Precondition, Validators};
use crate::range::{self, Ranges};
use crate::site::Hit;
use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, RANGE, VARY,
};
use http::response::Builder;
use http::{HeaderMap, Method, Response, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The response to a GET or HEAD for `hit`.
pub fn respond(method: &Method, headers: &HeaderMap, hit: Hit) -> Response<Body> {
    let validators = Validators::of(hit.file.len, hit.file.modified, hit.coding);
    let mut builder = Response::builder()
        .header(ETAG, &validators.etag)
        .header(LAST_MODIFIED, validators.last_modified())
        .header(VARY, "Accept-Encoding");
    if let Some(coding) = hit.coding {
        builder = builder.header(CONTENT_ENCODING, coding.name());
    }
    match conditional::evaluate(headers, method, &validators) {
        Precondition::NotModified => return empty(builder.status(StatusCode::NOT_MODIFIED)),
        Precondition::Failed => {
            return crate::handler::plain(StatusCode::PRECONDITION_FAILED, builder)
        }
        Precondition::Proceed => {}
    }
    builder = builder.header(ACCEPT_RANGES, "bytes");
    let len = hit.file.len;
    // Only GET and HEAD come here. A HEAD gets the headers its GET would get (RFC 9110
    // §9.3.2), a 206's included, as from nginx and Apache.
    let ranges = match headers.get(RANGE) {
        Some(value) if conditional::range_allowed(headers, &validators) => {
            range::parse(value.as_bytes(), len)
        }
        _ => Ranges::Full,
    };
    let source = Source::new(hit.file.file, hit.content);
    match ranges {
        Ranges::Full => finish(
            builder
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, hit.content_type),
            Body::from_parts(vec![source.part(0, len)]),
        ),
        Ranges::Partial(ranges) if ranges.len() == 1 => {
            let (first, last) = ranges[0];
            finish(
                builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_TYPE, hit.content_type)
                    .header(CONTENT_RANGE, format!("bytes {first}-{last}/{len}")),
                Body::from_parts(vec![source.part(first, last - first + 1)]),
            )
        }
        Ranges::Partial(ranges) => {
            let boundary = boundary(&validators);
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            for (first, last) in ranges {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {first}-{last}/{len}\r\n\r\n",
                    String::from_utf8_lossy(hit.content_type.as_bytes())
                );
                parts.push(Part::Bytes(head.into()));
                parts.push(source.part(first, last - first + 1));
            }
            parts.push(Part::Bytes(format!("\r\n--{boundary}--\r\n").into()));
            finish(
                builder.status(StatusCode::PARTIAL_CONTENT).header(
                    CONTENT_TYPE,
                    format!("multipart/byteranges; boundary={boundary}"),
                ),
                Body::from_parts(parts),
            )
        }
        Ranges::Unsatisfiable => crate::handler::plain(
            StatusCode::RANGE_NOT_SATISFIABLE,
            builder.header(CONTENT_RANGE, format!("bytes */{len}")),
        ),
    }
}

/// Where a file's bytes come from: memory, when it was small enough to read at once.
enum Source {
    Memory(bytes::Bytes),
    File(Arc<std::fs::File>),
}

impl Source {
    fn new(file: std::fs::File, content: Option<bytes::Bytes>) -> Self {
        match content {
            Some(content) => Self::Memory(content),
            None => Self::File(Arc::new(file)),
        }
    }

    fn part(&self, offset: u64, len: u64) -> Part {
        match self {
            Self::Memory(content) => {
                Part::Bytes(content.slice(offset as usize..(offset + len) as usize))
            }
            Self::File(file) => Part::File {
                file: file.clone(),
                offset,
                len,
            },
        }
    }
}

/// A multipart boundary that differs between responses and between files.
fn boundary(validators: &Validators) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let tag: u64 = validators
        .etag
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("host-web-{tag:016x}{count:08x}")
}

/// Sets Content-Length from the body.
pub fn finish(builder: Builder, body: Body) -> Response<Body> {
    builder
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| internal_error())
}

/// A response with no body at all (304).
fn empty(builder: Builder) -> Response<Body> {
    builder
        .body(Body::empty())
        .unwrap_or_else(|_| internal_error())
}

pub fn internal_error() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
