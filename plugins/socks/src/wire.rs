//! The SOCKS messages: what clients send, parsed from a byte slice (so a message split across
//! reads, or followed by data the client sent early, is handled alike), and the replies.
//!
//! SOCKS4 and SOCKS4a: <https://www.openssh.com/txt/socks4.protocol> and `socks4a.protocol`;
//! SOCKS5: RFC 1928; username/password: RFC 1929. Every length is bounded by the format itself
//! (one length byte) or here ([`MAX_FIELD`] for SOCKS4's NUL-terminated fields).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The longest SOCKS4 user id or SOCKS4a host name accepted, as SOCKS5 allows for names.
pub const MAX_FIELD: usize = 255;

/// The largest message a client sends (a SOCKS4a request with both fields at their longest).
pub const MAX_MESSAGE: usize = 8 + 2 * (MAX_FIELD + 1);

/// What parsing the bytes received so far gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole message, and how many bytes it took.
    Done(T, usize),
    /// The message is not complete yet.
    More,
    /// The message is invalid: the reply it gets, and why.
    Bad(Failure, &'static str),
}

/// Why a request is refused, in SOCKS5's terms (RFC 1928 section 6); SOCKS4 has one code for
/// all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    General = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    Refused = 5,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// Where the client wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(SocketAddr),
    /// A name the proxy resolves (SOCKS4a, SOCKS5's domain type): printable ASCII only.
    Name(String, u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Address(address) => address.fmt(f),
            Self::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// A SOCKS4 or SOCKS4a CONNECT request (the version byte, 4, included).
#[derive(Debug, PartialEq, Eq)]
pub struct Socks4 {
    pub target: Target,
}

/// The bytes up to the first NUL in `bytes`, bounded by [`MAX_FIELD`].
fn nul_terminated(bytes: &[u8]) -> Parse<&[u8]> {
    let window = &bytes[..bytes.len().min(MAX_FIELD + 1)];
    match window.iter().position(|&b| b == 0) {
        Some(end) => Parse::Done(&bytes[..end], end + 1),
        None if window.len() > MAX_FIELD => Parse::Bad(Failure::General, "a field is too long"),
        None => Parse::More,
    }
}

/// A host name as a client sent it, if it could be one.
fn host_name(bytes: &[u8]) -> Option<String> {
    let printable = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic());
    printable.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Whether a SOCKS4 request, whole or not, is SOCKS4a's: its address is 0.0.0.x with x not 0,
/// which means "the name follows the user id".
pub fn is_socks4a(request: &[u8]) -> bool {
    matches!(request.get(4..8), Some(&[0, 0, 0, x]) if x != 0)
}

pub fn socks4(bytes: &[u8]) -> Parse<Socks4> {
    let Some(header) = bytes.get(..8) else {
        return Parse::More;
    };
    if header[1] != 1 {
        return Parse::Bad(Failure::CommandNotSupported, "only CONNECT is supported");
    }
    let port = u16::from_be_bytes([header[2], header[3]]);
    let ip = Ipv4Addr::new(header[4], header[5], header[6], header[7]);
    let mut used = 8;
    match nul_terminated(&bytes[used..]) {
        Parse::Done(_user_id, n) => used += n,
        Parse::More => return Parse::More,
        Parse::Bad(failure, why) => return Parse::Bad(failure, why),
    }
    if !is_socks4a(bytes) {
        let target = Target::Address(SocketAddr::V4(SocketAddrV4::new(ip, port)));
        return Parse::Done(Socks4 { target }, used);
    }
    match nul_terminated(&bytes[used..]) {
        Parse::Done(name, n) => match host_name(name) {
            Some(name) => Parse::Done(
                Socks4 {
                    target: Target::Name(name, port),
                },
                used + n,
            ),
            None => Parse::Bad(Failure::HostUnreachable, "the host name is not a name"),
        },
        Parse::More => Parse::More,
        Parse::Bad(failure, why) => Parse::Bad(failure, why),
    }
}

/// SOCKS5's method numbers.
pub const NO_AUTHENTICATION: u8 = 0;
pub const USERNAME_PASSWORD: u8 = 2;
pub const NO_ACCEPTABLE_METHOD: u8 = 0xFF;

/// The methods a SOCKS5 client offers (the version byte, 5, included).
pub fn greeting(bytes: &[u8]) -> Parse<Vec<u8>> {
    let Some(&count) = bytes.get(1) else {
        return Parse::More;
    };
    let count = usize::from(count);
    if count == 0 {
        return Parse::Bad(Failure::General, "the client offers no method");
    }
    match bytes.get(2..2 + count) {
        Some(methods) => Parse::Done(methods.to_vec(), 2 + count),
        None => Parse::More,
    }
}

/// RFC 1929's username and password, as bytes: the RFC does not say they are text.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

pub fn credentials(bytes: &[u8]) -> Parse<Credentials> {
    let Some(&version) = bytes.first() else {
        return Parse::More;
    };
    if version != 1 {
        return Parse::Bad(Failure::General, "not username/password version 1");
    }
    let Some(&user_len) = bytes.get(1) else {
        return Parse::More;
    };
    let user_end = 2 + usize::from(user_len);
    let Some(&password_len) = bytes.get(user_end) else {
        return Parse::More;
    };
    let end = user_end + 1 + usize::from(password_len);
    if user_len == 0 || password_len == 0 {
        return Parse::Bad(Failure::General, "an empty username or password");
    }
    match bytes.get(..end) {
        Some(message) => Parse::Done(
            Credentials {
                user: message[2..user_end].to_vec(),
                password: message[user_end + 1..].to_vec(),
            },
            end,
        ),
        None => Parse::More,
    }
}

/// A SOCKS5 CONNECT request.
pub fn request(bytes: &[u8]) -> Parse<Target> {
    let Some(header) = bytes.get(..4) else {
        return Parse::More;
    };
    if header[0] != 5 {
        return Parse::Bad(Failure::General, "not a SOCKS5 request");
    }
    if header[1] != 1 {
        return Parse::Bad(Failure::CommandNotSupported, "only CONNECT is supported");
    }
    let (address_len, start) = match header[3] {
        1 => (4, 4),
        4 => (16, 4),
        3 => match bytes.get(4) {
            None => return Parse::More,
            Some(0) => return Parse::Bad(Failure::General, "an empty host name"),
            Some(&n) => (usize::from(n), 5),
        },
        _ => return Parse::Bad(Failure::AddressTypeNotSupported, "unknown address type"),
    };
    let end = start + address_len + 2;
    let Some(message) = bytes.get(..end) else {
        return Parse::More;
    };
    let address = &message[start..start + address_len];
    let port = u16::from_be_bytes([message[end - 2], message[end - 1]]);
    let target = match header[3] {
        1 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(address).expect("4 bytes"));
            Target::Address(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        4 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(address).expect("16 bytes"));
            Target::Address(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
        }
        _ => match host_name(address) {
            Some(name) => Target::Name(name, port),
            None => return Parse::Bad(Failure::HostUnreachable, "the host name is not a name"),
        },
    };
    Parse::Done(target, end)
}

/// SOCKS4's reply: granted (90) or rejected (91), with the address the proxy connected from
/// when it is IPv4 (clients ignore it for CONNECT).
pub fn socks4_reply(outcome: Result<SocketAddr, Failure>) -> [u8; 8] {
    let (code, bound) = match outcome {
        Ok(SocketAddr::V4(bound)) => (90, bound),
        Ok(SocketAddr::V6(_)) => (90, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        Err(_) => (91, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
    };
    let [p1, p2] = bound.port().to_be_bytes();
    let [a, b, c, d] = bound.ip().octets();
    [0, code, p1, p2, a, b, c, d]
}

/// SOCKS5's reply: succeeded with the address the proxy connected from, or a failure code.
pub fn socks5_reply(outcome: Result<SocketAddr, Failure>) -> Vec<u8> {
    let (code, bound) = match outcome {
        Ok(bound) => (0, bound),
        Err(failure) => (failure as u8, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
    };
    let mut reply = vec![5, code, 0];
    match bound {
        SocketAddr::V4(v4) => {
            reply.push(1);
            reply.extend(v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            reply.push(4);
            reply.extend(v6.ip().octets());
        }
    }
    reply.extend(bound.port().to_be_bytes());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Target {
        Target::Address(SocketAddr::from((ip, port)))
    }

    #[test]
    fn socks4_and_4a_requests() {
        let plain = [4, 1, 0, 80, 127, 0, 0, 1, b'm', b'e', 0, b'X'];
        assert_eq!(
            socks4(&plain),
            Parse::Done(
                Socks4 {
                    target: v4([127, 0, 0, 1], 80)
                },
                11
            )
        );
        let named = b"\x04\x01\x01\xbb\x00\x00\x00\x07\x00example.org\x00";
        assert_eq!(
            socks4(named),
            Parse::Done(
                Socks4 {
                    target: Target::Name("example.org".into(), 443)
                },
                named.len()
            )
        );
        for cut in 0..named.len() {
            assert_eq!(socks4(&named[..cut]), Parse::More, "{cut}");
        }
        assert_eq!(
            socks4(&[4, 2, 0, 80, 1, 2, 3, 4, 0]),
            Parse::Bad(Failure::CommandNotSupported, "only CONNECT is supported")
        );
        let mut long = vec![4, 1, 0, 80, 1, 2, 3, 4];
        long.extend([b'a'; MAX_FIELD + 1]);
        assert!(matches!(socks4(&long), Parse::Bad(Failure::General, _)));
        let unprintable = b"\x04\x01\x00\x50\x00\x00\x00\x01\x00a b\x00";
        assert!(matches!(
            socks4(unprintable),
            Parse::Bad(Failure::HostUnreachable, _)
        ));
        assert!(is_socks4a(unprintable) && is_socks4a(&named[..8]));
        assert!(!is_socks4a(&plain) && !is_socks4a(&named[..7]));
        assert!(!is_socks4a(&[4, 1, 0, 80, 0, 0, 0, 0]));
    }

    #[test]
    fn socks5_greeting_credentials_and_requests() {
        assert_eq!(greeting(&[5, 2, 0, 2, 9]), Parse::Done(vec![0, 2], 4));
        assert_eq!(greeting(&[5, 2, 0]), Parse::More);
        assert!(matches!(greeting(&[5, 0]), Parse::Bad(..)));
        assert_eq!(
            credentials(b"\x01\x05alice\x02pw"),
            Parse::Done(
                Credentials {
                    user: b"alice".to_vec(),
                    password: b"pw".to_vec()
                },
                10
            )
        );
        assert_eq!(credentials(b"\x01\x05alice\x02p"), Parse::More);
        assert!(matches!(credentials(b"\x05\x01a\x01b"), Parse::Bad(..)));
        assert!(matches!(credentials(b"\x01\x00\x01b"), Parse::Bad(..)));
        assert_eq!(
            request(&[5, 1, 0, 1, 10, 0, 0, 1, 0, 80]),
            Parse::Done(v4([10, 0, 0, 1], 80), 10)
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend([1, 0]);
        assert_eq!(
            request(&v6),
            Parse::Done(Target::Address("[::1]:256".parse().unwrap()), 22)
        );
        let named = b"\x05\x01\x00\x03\x09localhost\x00\x50";
        assert_eq!(
            request(named),
            Parse::Done(Target::Name("localhost".into(), 80), named.len())
        );
        for cut in 0..named.len() {
            assert_eq!(request(&named[..cut]), Parse::More, "{cut}");
        }
        assert!(matches!(
            request(&[5, 2, 0, 1]),
            Parse::Bad(Failure::CommandNotSupported, _)
        ));
        assert!(matches!(
            request(&[5, 3, 0, 1]),
            Parse::Bad(Failure::CommandNotSupported, _)
        ));
        assert!(matches!(
            request(&[5, 1, 0, 9]),
            Parse::Bad(Failure::AddressTypeNotSupported, _)
        ));
        assert!(matches!(
            request(&[5, 1, 0, 3, 0]),
            Parse::Bad(Failure::General, _)
        ));
        assert!(matches!(
            request(&[4, 1, 0, 1]),
            Parse::Bad(Failure::General, _)
        ));
    }

    #[test]
    fn replies() {
        let bound: SocketAddr = "192.0.2.1:4660".parse().unwrap();
        assert_eq!(socks4_reply(Ok(bound)), [0, 90, 0x12, 0x34, 192, 0, 2, 1]);
        assert_eq!(
            socks4_reply(Err(Failure::Refused)),
            [0, 91, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            socks5_reply(Ok(bound)),
            [5, 0, 0, 1, 192, 0, 2, 1, 0x12, 0x34]
        );
        assert_eq!(
            socks5_reply(Err(Failure::NotAllowed)),
            [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(socks5_reply(Ok("[::1]:1".parse().unwrap())).len(), 22);
    }

    proptest::proptest! {
        /// No input, however malformed, panics a parser, and none asks for more bytes than
        /// the largest message holds.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            let wants_more = [
                matches!(socks4(&bytes), Parse::More),
                matches!(greeting(&bytes), Parse::More),
                matches!(credentials(&bytes), Parse::More),
                matches!(request(&bytes), Parse::More),
            ];
            proptest::prop_assert!(bytes.len() < MAX_MESSAGE || !wants_more.contains(&true));
        }
    }
}
