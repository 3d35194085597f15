//! One request, one response: the checks HTTP requires of every request, the methods we
//! answer, the lookup of the path, and the headers every response carries.

use crate::access_log::{AccessLog, PendingLine};
use crate::body::{self, Body};
use crate::encoding;
use crate::file_response::{self, finish};
use crate::request_path::RequestPath;
use crate::site::{Lookup, Site};
use http::header::{
    ACCEPT_ENCODING, ALLOW, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION, ORIGIN, VARY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::response::Builder;
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use plugin_api::metrics::{self, CounterChild};
use plugin_api::tokio::task::spawn_blocking;
use plugin_api::tracing::warn;
use plugin_api::PeerAddr;
use std::convert::Infallible;
use std::sync::Arc;

/// Longest request target accepted (path and query); longer ones get `414`. The whole header
/// block has its own, larger limit in `connection`.
pub const MAX_TARGET: usize = 8 * 1024;
const ALLOWED: &str = "GET, HEAD, OPTIONS";
/// The listing page may show nothing but itself: no script runs even if a name got through.
const LISTING_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// Everything a request is answered from.
pub struct Handler {
    pub site: Site,
    /// `--add-header`, added to every response.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// `--cors`: the origin allowed to read responses from other sites' pages.
    pub cors: Option<HeaderValue>,
    pub access_log: AccessLog,
    pub requests: Requests,
}

/// `web_requests_total{status="2xx"}`: the requests answered, by the class of their status.
/// The five series are looked up once, so counting costs one atomic add per request.
pub struct Requests([CounterChild; 5]);

impl Requests {
    /// Registers the metric for the service being made.
    pub fn register() -> Self {
        let family = metrics::counter(
            "web_requests_total",
            "Requests answered, by the class of their status",
            &["status"],
        );
        Self(["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| family.with(&[class])))
    }

    fn count(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.0[class].inc();
    }
}

impl Handler {
    /// Answers `request` from `peer`; the access-log line follows the response's body.
    pub async fn respond<B>(
        self: Arc<Self>,
        request: Request<B>,
        peer: PeerAddr,
    ) -> Result<Response<Body>, Infallible> {
        let mut line = PendingLine::new(&self.access_log, &request, &peer);
        let mut response = self.answer(&request).await;
        if request.method() == Method::HEAD {
            // The headers (Content-Length included) of a GET, without its body.
            response = response.map(|_| Body::empty());
        }
        self.decorate(request.headers(), response.headers_mut());
        line.set_status(response.status().as_u16());
        self.requests.count(response.status());
        let chunk = match request.version() {
            Version::HTTP_2 => body::STREAM_CHUNK,
            _ => body::CHUNK,
        };
        Ok(response.map(|body| body.with_log(line).in_chunks_of(chunk)))
    }

    async fn answer<B>(self: &Arc<Self>, request: &Request<B>) -> Response<Body> {
        if let Some(refusal) = refuse(request) {
            return refusal;
        }
        match *request.method() {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS => return self.options(request.headers()),
            _ => {
                return plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Response::builder().header(ALLOW, ALLOWED),
                )
            }
        }
        let path = match RequestPath::parse(request.uri().path()) {
            Ok(path) => path,
            Err(_) => return plain(StatusCode::BAD_REQUEST, Response::builder()),
        };
        if path.is_hidden() && !self.site.show_dotfiles {
            return plain(StatusCode::NOT_FOUND, Response::builder());
        }
        let codings =
            encoding::accepted(request.headers().get(ACCEPT_ENCODING).map(|v| v.as_bytes()));
        let with_content = request.method() == Method::GET;
        match self.site.lookup(&path, &codings, with_content) {
            Lookup::File(hit) => file_response::respond(request.method(), request.headers(), hit),
            Lookup::AddSlash => {
                let mut location = path.encoded();
                location.push('/');
                if let Some(query) = request.uri().query() {
                    location.push('?');
                    location.push_str(query);
                }
                plain(
                    StatusCode::MOVED_PERMANENTLY,
                    Response::builder().header(LOCATION, location),
                )
            }
            Lookup::Listing(relative) => {
                let handler = self.clone();
                let listed = spawn_blocking(move || handler.site.listing(&path, &relative)).await;
                match listed.map_err(std::io::Error::other).and_then(|page| page) {
                    Ok(page) => finish(
                        Response::builder()
                            .header(CONTENT_TYPE, "text/html; charset=utf-8")
                            .header(CONTENT_SECURITY_POLICY, LISTING_POLICY),
                        Body::bytes(page),
                    ),
                    Err(e) => {
                        warn!("cannot list {}: {e}", request.uri().path());
                        plain(StatusCode::INTERNAL_SERVER_ERROR, Response::builder())
                    }
                }
            }
            Lookup::NoIndex | Lookup::Forbidden => {
                plain(StatusCode::FORBIDDEN, Response::builder())
            }
            Lookup::NotFound => plain(StatusCode::NOT_FOUND, Response::builder()),
            Lookup::Failed(e) => {
                warn!("cannot serve {}: {e}", path.encoded());
                plain(StatusCode::INTERNAL_SERVER_ERROR, Response::builder())
            }
        }
    }

    /// `OPTIONS`: what may be done here, and a CORS preflight's answer when `--cors` is on.
    fn options(&self, headers: &HeaderMap) -> Response<Body> {
        let mut builder = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(ALLOW, ALLOWED);
        let preflight =
            headers.contains_key(ORIGIN) && headers.contains_key("access-control-request-method");
        if self.cors.is_some() && preflight {
            builder = builder
                .header("access-control-allow-methods", ALLOWED)
                .header("access-control-max-age", "86400");
            if let Some(asked) = headers.get("access-control-request-headers") {
                builder = builder.header("access-control-allow-headers", asked);
            }
        }
        builder
            .body(Body::empty())
            .unwrap_or_else(|_| file_response::internal_error())
    }

    /// The headers every response carries: `--add-header`s, CORS, and `nosniff` (a browser
    /// must not run a `.txt` that looks like HTML).
    fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        response.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(origin) = &self.cors {
            response.insert("access-control-allow-origin", origin.clone());
            response.insert(
                "access-control-expose-headers",
                HeaderValue::from_static("Content-Range, Content-Encoding, ETag, Accept-Ranges"),
            );
            if origin != "*" && request.contains_key(ORIGIN) {
                response.append(VARY, HeaderValue::from_static("Origin"));
            }
        }
        for (name, value) in &self.extra_headers {
            response.append(name.clone(), value.clone());
        }
    }
}

/// What RFC 9112 requires refusing before anything else: an HTTP/1.1 request without exactly
/// one valid Host (`400`), and a target longer than we accept (`414`).
fn refuse<B>(request: &Request<B>) -> Option<Response<Body>> {
    if request.version() == Version::HTTP_11 {
        let mut hosts = request.headers().get_all(HOST).iter();
        let valid = match (hosts.next(), hosts.next()) {
            // Empty is valid: the target had no authority (RFC 9112 §3.2).
            (Some(host), None) => host.to_str().is_ok_and(|h| {
                h.is_empty() || (!h.contains('@') && h.parse::<Authority>().is_ok())
            }),
            _ => false,
        };
        if !valid {
            return Some(plain(StatusCode::BAD_REQUEST, Response::builder()));
        }
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    (target > MAX_TARGET).then(|| plain(StatusCode::URI_TOO_LONG, Response::builder()))
}

/// A response whose body is its status line in words: `404 Not Found`.
pub fn plain(status: StatusCode, builder: Builder) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    finish(
        builder
            .status(status)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8"),
        Body::bytes(text),
    )
}
