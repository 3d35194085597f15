//! The web plugin with real clients: curl and Python's http.client, ssl and socket, against a
//! real `host` serving a temporary directory on 127.0.0.1.

use host_e2e::scrape::{sample, wait_for_sample};
use host_e2e::{curl, free_port, run, self_signed, Running, TempDir, PATIENCE};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What must never be served: it lives beside the root, not in it.
const SECRET: &str = "TOP-SECRET-outside-the-root";

/// A served tree: plain files, an index, a directory to list with awkward names, precompressed
/// siblings, dotfiles, a 3 MB file, and symlinks leading out of the root to a secret file.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let root = dir.join("root");
        for sub in ["sub", "list/inner", "js", ".git", "empty"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let write = |name: &str, content: &[u8]| std::fs::write(root.join(name), content).unwrap();
        write("a.txt", b"hello\nworld\n");
        write("page.html", b"<p>page</p>\n");
        write("data.unknownext", b"\x00\x01binary");
        write("README", b"no extension\n");
        write("sub/index.html", b"<h1>sub index</h1>\n");
        write("sub/other.txt", b"other\n");
        for name in [
            "<b>x&\"'.txt",
            "a#b?c.txt",
            "100%41.txt",
            "café.txt",
            "日本.txt",
            "a b.txt",
        ] {
            write(
                &format!("list/{name}"),
                format!("content of {name}").as_bytes(),
            );
        }
        write("list/.hidden", b"hidden");
        write("js/app.js", b"console.log('plain');\n");
        write("js/app.js.gz", b"GZIP-BYTES");
        write("js/app.js.br", b"BROTLI-BYTES");
        write("js/only-gz.css", b"body{}\n");
        write("js/only-gz.css.gz", b"GZIP-CSS");
        write(".env", b"PASSWORD=hunter2\n");
        write(".git/config", b"[core]\n");
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        write("big.bin", &big);
        std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
        symlink("../secret.txt", root.join("out")).unwrap();
        symlink(dir.join("secret.txt"), root.join("abs")).unwrap();
        symlink("..", root.join("dirout")).unwrap();
        symlink("a.txt", root.join("inner-link")).unwrap();
        symlink(root.join("a.txt"), root.join("absolute-inner-link")).unwrap();
        symlink("../root/sub", root.join("round-trip")).unwrap();
        symlink(".env", root.join("env-link")).unwrap();
        symlink(".git", root.join("git-link")).unwrap();
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `host -n web` over this site with `extra` options, on a free port of 127.0.0.1.
    fn serve(&self, extra: &[&str]) -> (Running, u16) {
        self.serve_with(&[], extra)
    }

    /// The same, with `global` options for host.
    fn serve_with(&self, global: &[&str], extra: &[&str]) -> (Running, u16) {
        let root = self.root();
        let mut args = global.to_vec();
        args.extend([
            "--pidfile",
            "",
            "-n",
            "web",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--path",
            root.to_str().unwrap(),
        ]);
        args.extend(extra);
        let host = Running::start(&args);
        let port = host.port();
        (host, port)
    }
}

/// Helpers every Python client script gets: `get` (http.client, one request per connection)
/// and `raw` (bytes in, every byte the server sends until it closes out).
const PYTHON_HELPERS: &str = r#"
import http.client, socket, ssl, threading, time, os, re, hashlib, sys
def get(path, headers={}, method='GET', port=None):
    c = http.client.HTTPConnection('127.0.0.1', port or PORT, timeout=20)
    c.request(method, path, headers=headers)
    r = c.getresponse(); body = r.read(); c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body
def raw(data, timeout=20):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=timeout)
    s.sendall(data)
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
    s.close()
    return b''.join(chunks)
def status_of(response):
    return int(response.split(b' ', 2)[1]) if response.startswith(b'HTTP/') else None
def prompt_waits_beside(port, count, sent=b''):
    """How long 5 prompt requests wait while `count` connections to `port`, each having sent
    `sent`, are held open and replaced as soon as the server closes one, as an attacker would;
    and how many the server closed."""
    stop = threading.Event(); cut = [0]
    def hold():
        held = []
        while not stop.is_set():
            for old in list(held):
                old.setblocking(False)
                try:
                    if old.recv(1) == b'':
                        held.remove(old); old.close(); cut[0] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    held.remove(old); old.close(); cut[0] += 1
            if len(held) < count:
                s = socket.create_connection(('127.0.0.1', port), timeout=1)
                if sent:
                    s.send(sent)
                held.append(s)
            time.sleep(0.005)
        [s.close() for s in held]
    attacker = threading.Thread(target=hold); attacker.start()
    time.sleep(2)
    waits = []
    for _ in range(5):
        t = time.time(); assert get('/a.txt')[0] == 200; waits.append(time.time() - t)
    stop.set(); attacker.join(40)
    return waits, cut[0]
"#;

/// Runs a Python script against `port`, with [`PYTHON_HELPERS`]; it must print "ok" last.
fn python(port: u16, script: &str) -> String {
    host_e2e::python(&format!("PORT = {port}\n{PYTHON_HELPERS}\n{script}"))
}

/// curl's response headers (lower-case names) and body for `url`.
fn curl_get(args: &[&str], url: &str) -> (String, Vec<u8>) {
    let out = curl(&[args, &["--include", url]].concat());
    assert!(out.status.success(), "{out:?}");
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&out.stdout[..split]).to_lowercase();
    (head, out.stdout[split + 4..].to_vec())
}

/// The peak resident memory of a process, in kB.
fn peak_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn files_carry_their_type_length_and_validators() {
    let site = Site::new("web-files");
    let (mut host, port) = site.serve(&[]);
    let (head, body) = curl_get(&[], &format!("http://127.0.0.1:{port}/a.txt"));
    assert_eq!(body, b"hello\nworld\n");
    for expected in [
        "http/1.1 200 ok",
        "content-type: text/plain; charset=utf-8",
        "content-length: 12",
        "accept-ranges: bytes",
        "x-content-type-options: nosniff",
        "last-modified: ",
        "etag: \"",
        "date: ",
    ] {
        assert!(head.contains(expected), "{expected} in\n{head}");
    }
    python(
        port,
        r#"
for path, type_ in [('/page.html', 'text/html; charset=utf-8'), ('/data.unknownext', 'application/octet-stream'),
                    ('/README', 'application/octet-stream'), ('/js/app.js', 'text/javascript; charset=utf-8'),
                    ('/big.bin', 'application/octet-stream')]:
    status, headers, body = get(path)
    assert status == 200 and headers['content-type'] == type_, (path, status, headers)
    assert int(headers['content-length']) == len(body), (path, headers)
# HEAD: the same headers, no body.
status, got, body = get('/big.bin')
status, head, nothing = get('/big.bin', method='HEAD')
assert status == 200 and nothing == b'' and head['content-length'] == '3000000', head
assert head['etag'] == got['etag'] and head['last-modified'] == got['last-modified']
# Keep-alive: several requests on one connection.
c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20)
for _ in range(5):
    c.request('GET', '/a.txt'); r = c.getresponse(); assert r.read() == b'hello\nworld\n'
c.close()
# A symlink inside the root is served.
assert get('/inner-link')[2] == b'hello\nworld\n'
"#,
    );
    host.stop();
    let (mut other, port) = site.serve(&[
        "-m",
        "text/x-unknown",
        "--add-header",
        "X-Served-By: host web",
    ]);
    python(
        port,
        r#"
status, headers, _ = get('/data.unknownext')
assert headers['content-type'] == 'text/x-unknown', headers
assert headers['x-served-by'] == 'host web', headers
assert get('/nope')[1]['x-served-by'] == 'host web', 'on errors too'
"#,
    );
    other.stop();
}

#[test]
fn conditional_requests_get_304_and_412() {
    let site = Site::new("web-conditional");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
status, headers, _ = get('/a.txt')
etag, modified = headers['etag'], headers['last-modified']
old, future = 'Sat, 01 Jan 2000 00:00:00 GMT', 'Fri, 01 Jan 2100 00:00:00 GMT'
def check(headers, expected, method='GET'):
    status, got, body = get('/a.txt', headers, method)
    assert status == expected, (headers, status, got)
    if status == 304:
        assert body == b'' and got['etag'] == etag and 'content-length' not in got, got
    return got
check({'If-None-Match': etag}, 304)
check({'If-None-Match': etag}, 304, 'HEAD')
check({'If-None-Match': 'W/' + etag}, 304)
check({'If-None-Match': '"other", ' + etag}, 304)
check({'If-None-Match': '*'}, 304)
check({'If-None-Match': '"other"'}, 200)
check({'If-Modified-Since': modified}, 304)
check({'If-Modified-Since': future}, 304)
check({'If-Modified-Since': old}, 200)
check({'If-Modified-Since': 'not a date'}, 200)
# If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3), both ways.
check({'If-None-Match': '"other"', 'If-Modified-Since': future}, 200)
check({'If-None-Match': etag, 'If-Modified-Since': old}, 304)
check({'If-Match': etag}, 200)
check({'If-Match': '"other"'}, 412)
check({'If-Match': 'W/' + etag}, 412)
check({'If-Unmodified-Since': old}, 412)
check({'If-Unmodified-Since': modified}, 200)
"#,
    );
    // A rewrite within the same second changes the ETag: it holds nanoseconds and the length.
    let first = curl_get(&[], &format!("http://127.0.0.1:{port}/a.txt")).0;
    std::fs::write(site.root().join("a.txt"), b"hello\nWORLD\n").unwrap();
    let second = curl_get(&[], &format!("http://127.0.0.1:{port}/a.txt")).0;
    let etag = |head: &str| {
        head.lines()
            .find(|l| l.starts_with("etag:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(etag(&first), etag(&second));
    host.stop();
}

#[test]
fn ranges_give_206_multipart_and_416() {
    let site = Site::new("web-ranges");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
full = get('/big.bin')[2]
assert len(full) == 3000000
status, headers, etag_body = get('/a.txt'); etag, modified = headers['etag'], headers['last-modified']
def ranged(path, value, extra={}, method='GET'):
    return get(path, dict({'Range': value}, **extra), method)
status, headers, body = ranged('/a.txt', 'bytes=0-4')
assert (status, body, headers['content-range'], headers['content-length']) == (206, b'hello', 'bytes 0-4/12', '5'), (status, headers, body)
assert ranged('/a.txt', 'bytes=6-')[2] == b'world\n'
assert ranged('/a.txt', 'bytes=-6')[2] == b'world\n'
assert ranged('/a.txt', 'bytes=6-1000')[1]['content-range'] == 'bytes 6-11/12'
# A large file, streamed from the middle: the bytes match.
status, headers, body = ranged('/big.bin', 'bytes=1000000-2499999')
assert status == 206 and body == full[1000000:2500000], (status, len(body))
assert ranged('/big.bin', 'bytes=-10')[2] == full[-10:]
# Unsatisfiable: 416 with the length.
for value in ['bytes=12-', 'bytes=100-200', 'bytes=-0']:
    status, headers, body = ranged('/a.txt', value)
    assert status == 416 and headers['content-range'] == 'bytes */12', (value, status, headers)
# Not a valid range: ignored, 200.
for value in ['bytes=5-1', 'lines=1-2', 'bytes=x-y', 'bytes']:
    status, headers, body = ranged('/a.txt', value)
    assert status == 200 and body == b'hello\nworld\n', (value, status)
# Several ranges: multipart/byteranges, each part with its Content-Range.
status, headers, body = ranged('/big.bin', 'bytes=0-9,2999990-2999999')
assert status == 206 and headers['content-type'].startswith('multipart/byteranges; boundary='), headers
boundary = headers['content-type'].split('boundary=')[1].encode()
assert int(headers['content-length']) == len(body)
parts = [p for p in body.split(b'--' + boundary) if p.strip(b'\r\n-')]
assert len(parts) == 2, body[:300]
for part, (first, last) in zip(parts, [(0, 9), (2999990, 2999999)]):
    head, data = part.split(b'\r\n\r\n', 1)
    assert ('Content-Range: bytes %d-%d/3000000' % (first, last)).encode() in head, head
    assert data[:-2] == full[first:last + 1] and data[-2:] == b'\r\n', (first, last, len(data))
# Overlapping ranges merge into one.
status, headers, body = ranged('/a.txt', 'bytes=0-3,2-5')
assert status == 206 and body == b'hello\n' and headers['content-range'] == 'bytes 0-5/12', (headers, body)
# If-Range: a current validator keeps the range, a stale one gets the whole file.
assert ranged('/a.txt', 'bytes=0-4', {'If-Range': etag})[0] == 206
assert ranged('/a.txt', 'bytes=0-4', {'If-Range': modified})[0] == 206
status, headers, body = ranged('/a.txt', 'bytes=0-4', {'If-Range': '"stale"'})
assert status == 200 and body == b'hello\nworld\n', (status, body)
assert ranged('/a.txt', 'bytes=0-4', {'If-Range': 'Sat, 01 Jan 2000 00:00:00 GMT'})[0] == 200
assert ranged('/a.txt', 'bytes=0-4', {'If-Range': 'W/' + etag})[0] == 200
# HEAD: the headers of the GET, 206 and all, without the body.
status, headers, body = ranged('/a.txt', 'bytes=0-4', method='HEAD')
assert status == 206 and headers['content-length'] == '5' and headers['content-range'] == 'bytes 0-4/12' and body == b'', headers
"#,
    );
    let resumed = TempDir::new("web-ranges-out");
    let copy = resumed.join("big.bin");
    std::fs::write(
        &copy,
        &std::fs::read(site.root().join("big.bin")).unwrap()[..1_234_567],
    )
    .unwrap();
    let out = curl(&[
        "-C",
        "-",
        "-o",
        copy.to_str().unwrap(),
        &format!("http://127.0.0.1:{port}/big.bin"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(site.root().join("big.bin")).unwrap()
    );
    host.stop();
}

#[test]
fn precompressed_siblings_are_served_when_accepted() {
    let site = Site::new("web-precompressed");
    let same = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (name, content) in [("same.txt", "plain!"), ("same.txt.gz", "zipped")] {
        let path = site.root().join(name);
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(same).unwrap();
    }
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
def fetch(path, accept=None):
    status, headers, body = get(path, {'Accept-Encoding': accept} if accept else {})
    assert status == 200, (path, accept, status)
    assert headers.get('vary') == 'Accept-Encoding', headers
    return headers.get('content-encoding'), headers['content-type'], body
js = 'text/javascript; charset=utf-8'
assert fetch('/js/app.js') == (None, js, b"console.log('plain');\n")
assert fetch('/js/app.js', 'gzip') == ('gzip', js, b'GZIP-BYTES')
assert fetch('/js/app.js', 'gzip, deflate, br') == ('br', js, b'BROTLI-BYTES')
assert fetch('/js/app.js', 'br;q=0, gzip') == ('gzip', js, b'GZIP-BYTES')
assert fetch('/js/app.js', 'identity') == (None, js, b"console.log('plain');\n")
assert fetch('/js/only-gz.css', 'br, gzip') == ('gzip', 'text/css; charset=utf-8', b'GZIP-CSS')
assert fetch('/js/only-gz.css', 'br') == (None, 'text/css; charset=utf-8', b'body{}\n')
# The client's q-values decide, and identity preferred means the file as it is.
assert fetch('/js/app.js', 'gzip;q=1, br;q=0.5') == ('gzip', js, b'GZIP-BYTES')
assert fetch('/js/app.js', 'identity;q=1, gzip;q=0.5') == (None, js, b"console.log('plain');\n")
# The compressed variant has validators of its own, even with the same size and time.
_, plain_headers, _ = get('/same.txt'); _, gz_headers, body = get('/same.txt', {'Accept-Encoding': 'gzip'})
assert body == b'zipped' and plain_headers['etag'] != gz_headers['etag'], (plain_headers, gz_headers)
assert gz_headers['etag'].endswith('-gzip"'), gz_headers['etag']
"#,
    );
    host.stop();
}

#[test]
fn directories_redirect_serve_their_index_or_list_their_files() {
    let site = Site::new("web-dirs");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
import html.parser, urllib.parse
status, headers, _ = get('/sub')
assert status == 301 and headers['location'] == '/sub/', (status, headers)
status, headers, _ = get('/sub?x=1&y=%20')
assert status == 301 and headers['location'] == '/sub/?x=1&y=%20', headers
# No open redirect: //host is never written back.
status, headers, _ = get('//sub')
assert status == 301 and headers['location'] == '/sub/', headers
status, headers, body = get('/sub/')
assert status == 200 and body == b'<h1>sub index</h1>\n' and headers['content-type'] == 'text/html; charset=utf-8'
assert get('/a.txt/')[0] == 404, 'a file asked for as a directory'
# The listing: every name round-trips through its link.
status, headers, page = get('/list/')
assert status == 200 and headers['content-type'] == 'text/html; charset=utf-8', headers
assert "default-src 'none'" in headers['content-security-policy']
class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.links = []; self.texts = []
    def handle_starttag(self, tag, attrs):
        if tag == 'a': self.links.append(dict(attrs)['href'])
    def handle_data(self, data):
        self.texts.append(data)
parser = Links(); parser.feed(page.decode('utf-8'))
names = ['<b>x&"\'.txt', 'a#b?c.txt', '100%41.txt', 'café.txt', '日本.txt', 'a b.txt']
assert '<b>x' not in page.decode(), 'a name was not escaped'
for name in names:
    assert name in parser.texts, (name, parser.texts)
    link = [l for l in parser.links if urllib.parse.unquote(l) == name]
    assert len(link) == 1, (name, parser.links)
    assert all(c not in link[0] for c in '#?"<> '), link
    status, _, body = get('/list/' + link[0])
    assert status == 200 and body == ('content of ' + name).encode(), (name, status, body)
assert 'inner/' in parser.links and '../' in parser.links
assert '.hidden' not in page.decode(), 'dotfiles are not listed'
# Sorted: directories first, then names in order.
files = [l for l in parser.links if l not in ('../', 'inner/')]
assert parser.links.index('inner/') < parser.links.index(files[0])
assert [urllib.parse.unquote(l).encode() for l in files] == sorted(n.encode() for n in names), files
# Sizes and dates are shown.
assert re.search(rb'<td class="size">%d</td><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>' % len('content of a b.txt'), page), page
# Escaping links are not listed.
root = get('/')[2].decode()
assert 'href="out"' not in root and 'href="abs"' not in root and 'href="dirout/"' not in root, root
assert 'href="inner-link"' in root
"#,
    );
    host.stop();
    let (mut no_listing, port) = site.serve(&["--no-listing", "-i", "other.txt"]);
    python(
        port,
        r#"
assert get('/list/')[0] == 403
status, _, body = get('/sub/')
assert status == 200 and body == b'other\n', 'the index named with -i'
"#,
    );
    no_listing.stop();
}

#[test]
fn no_path_or_symlink_leads_outside_the_root() {
    let site = Site::new("web-escape");
    let (mut host, port) = site.serve(&[]);
    let out = python(
        port,
        &format!(
            r#"
SECRET = {SECRET:?}.encode()
targets = [
    '/../secret.txt', '/../../../../../../etc/passwd', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt',
    '/.%2e/secret.txt', '/%2e./secret.txt', '/%2e%2e%2fsecret.txt', '/..%2fsecret.txt', '/..%2Fsecret.txt',
    '/sub/../../secret.txt', '/sub/%2e%2e/%2e%2e/secret.txt', '/sub/./../../secret.txt', '//../secret.txt',
    '/./../secret.txt', '/..\\secret.txt', '/..%5csecret.txt', '/%5c..%5csecret.txt', '/sub\\..\\..\\secret.txt',
    '/out', '/abs', '/dirout/secret.txt', '/dirout/', '/sub/..%2f..%2fsecret.txt',
    '/a.txt%00.html', '/%00../secret.txt', '/%c0%ae%c0%ae/secret.txt', '/..%c0%afsecret.txt',
    '/%252e%252e/secret.txt', '/%252e%252e%252fsecret.txt', '/%u002e%u002e/secret.txt', '/sub/..;/../secret.txt',
    '/.../secret.txt', '/etc/passwd', 'http://127.0.0.1/../secret.txt', '/%2e%2e%5csecret.txt',
    '/%25%32%65%25%32%65/secret.txt', '/.%00./secret.txt', '/inner-link/../../secret.txt',
]
for target in targets:
    response = raw(b'GET ' + target.encode() + b' HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    status = status_of(response)
    assert SECRET not in response and b'root:' not in response, (target, response[:300])
    assert status in (400, 403, 404), (target, response[:200])
print(len(targets), 'targets')
"#
        ),
    );
    let count: usize = out
        .split(" targets")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count >= 20, "{out}");
    // curl, told not to normalize the path either.
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/out",
        "/dirout/secret.txt",
    ] {
        let got = curl(&[
            "--path-as-is",
            "-i",
            &format!("http://127.0.0.1:{port}{target}"),
        ]);
        let text = String::from_utf8_lossy(&got.stdout);
        assert!(!text.contains(SECRET), "{target}: {text}");
    }
    python(
        port,
        r#"
for path in ['/.env', '/.git/config', '/.git/', '/list/.hidden', '/%2eenv', '/env-link', '/git-link/config']:
    status, _, body = get(path)
    assert status == 404 and b'hunter2' not in body and b'[core]' not in body, (path, status)
# Links whose targets are inside the root work, however they are written.
assert get('/inner-link')[0] == 200 and get('/absolute-inner-link')[0] == 200
assert get('/round-trip/')[0] == 200 and get('/dirout/root/a.txt')[0] == 200
listing = get('/')[2].decode()
assert 'absolute-inner-link' in listing and 'env-link' not in listing and 'git-link' not in listing, listing
"#,
    );
    host.stop();
    let (mut open, port) = site.serve(&["--follow-symlinks", "--show-dotfiles"]);
    python(
        port,
        &format!(
            r#"
assert get('/out')[2] == {SECRET:?}.encode(), '--follow-symlinks follows a link out'
assert get('/.env')[2] == b'PASSWORD=hunter2\n', '--show-dotfiles serves dotfiles'
assert '.hidden' in get('/list/')[2].decode()
assert get('/../secret.txt')[0] in (400, 404), 'but .. still never climbs'
"#
        ),
    );
    open.stop();
}

#[test]
fn a_symlink_swapped_during_requests_never_leads_outside() {
    let site = Site::new("web-race");
    std::fs::create_dir(site.root().join("d")).unwrap();
    std::fs::write(site.root().join("d/secret.txt"), "inside\n").unwrap();
    let outside = site.dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    symlink("d", site.root().join("race")).unwrap();
    let (mut host, port) = site.serve(&[]);
    // A link that flips between a directory inside the root and one outside it, as fast as it
    // can, while requests go through it: a check-then-open server would lose this race.
    let out = python(
        port,
        &format!(
            r#"
root, outside = {root:?}, {outside:?}
done = threading.Event()
def flip():
    n = 0
    while not done.is_set():
        target = 'd' if n % 2 else outside
        os.symlink(target, root + '/race.new'); os.replace(root + '/race.new', root + '/race'); n += 1
flipper = threading.Thread(target=flip); flipper.start()
seen = {{}}
try:
    c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20)
    started = time.time()
    for _ in range(3000):
        c.request('GET', '/race/secret.txt'); r = c.getresponse(); body = r.read()
        assert {SECRET:?}.encode() not in body, 'served the file outside the root'
        seen[r.status] = seen.get(r.status, 0) + 1
        if time.time() - started > 15:
            break
finally:
    done.set(); flipper.join()
assert set(seen) <= {{200, 404}} and seen.get(200) and seen.get(404), seen
print(seen)
"#,
            root = site.root().to_str().unwrap(),
            outside = outside.to_str().unwrap(),
        ),
    );
    assert!(out.contains("200"), "{out}");
    host.stop();
}

#[test]
fn methods_and_what_rfc_9112_requires() {
    let site = Site::new("web-http");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
for method in ['POST', 'PUT', 'DELETE', 'PATCH', 'TRACE', 'PROPFIND']:
    status, headers, _ = get('/a.txt', method=method)
    assert status == 405 and headers['allow'] == 'GET, HEAD, OPTIONS', (method, status, headers)
status, headers, body = get('/a.txt', method='OPTIONS')
assert status in (200, 204) and headers['allow'] == 'GET, HEAD, OPTIONS' and body == b''
assert status_of(raw(b'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')) in (200, 204)
# HTTP/1.1 without Host, or with two: 400. HTTP/1.0 needs none.
assert status_of(raw(b'GET /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n')) == 400
assert status_of(raw(b'GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n')) == 400
assert status_of(raw(b'GET /a.txt HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n')) == 400
assert status_of(raw(b'GET /a.txt HTTP/1.0\r\n\r\n')) == 200
# Absolute-form targets.
response = raw(b'GET http://localhost/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
assert status_of(response) == 200 and response.endswith(b'hello\nworld\n'), response
# Oversized: never a silent close.
assert status_of(raw(b'GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 40000 + b'\r\n\r\n')) == 431
assert status_of(raw(b'GET /a.txt HTTP/1.1\r\nHost: x\r\n' + b''.join(b'X-%d: y\r\n' % i for i in range(200)) + b'\r\n')) == 431
assert status_of(raw(b'GET /' + b'a' * 10000 + b' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')) == 414
assert status_of(raw(b'GET /' + b'a' * 100000 + b' HTTP/1.1\r\nHost: x\r\n\r\n')) in (414, 431)
# Garbage gets 400, not a hang.
for junk in [b'\x00\x01\x02\r\n\r\n', b'GET\r\n\r\n', b'GET / HTTP/9.9\r\n\r\n', b'GE T / HTTP/1.1\r\n\r\n', b'GET /a%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']:
    assert status_of(raw(junk, timeout=15)) == 400, junk
# Request bodies are never read: one announcing a gigabyte gets its answer, then the close.
for method, expected in [(b'GET', 200), (b'POST', 405)]:
    s = socket.create_connection(('127.0.0.1', PORT), timeout=20)
    s.sendall(method + b' /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n' + b'x' * 65536)
    reply = b''
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        reply += b
    assert status_of(reply) == expected, (method, reply[:100])
# Pipelining: three requests in one write, three responses in order.
response = raw(b'GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /page.html HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
statuses = re.findall(rb'HTTP/1.1 (\d+)', response)
assert statuses == [b'200', b'200', b'404'], response
assert response.count(b'hello\nworld\n') == 1 and b'<p>page</p>' not in response
"#,
    );
    host.stop();
}

#[test]
fn cors_and_single_file_paths() {
    let site = Site::new("web-cors");
    let (mut host, port) = site.serve(&["--cors", "https://app.example"]);
    python(
        port,
        r#"
status, headers, _ = get('/a.txt', {'Origin': 'https://app.example'})
assert headers['access-control-allow-origin'] == 'https://app.example' and 'Origin' in headers['vary'], headers
status, headers, _ = get('/a.txt', {'Origin': 'https://app.example', 'Access-Control-Request-Method': 'GET',
                                   'Access-Control-Request-Headers': 'range'}, method='OPTIONS')
assert status == 204 and headers['access-control-allow-methods'] == 'GET, HEAD, OPTIONS', headers
assert headers['access-control-allow-headers'] == 'range', headers
"#,
    );
    host.stop();
    let file = site.root().join("page.html");
    let host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--path",
        file.to_str().unwrap(),
    ]);
    python(
        host.port(),
        r#"
assert get('/')[2] == b'<p>page</p>\n'
assert get('/page.html')[2] == b'<p>page</p>\n'
assert get('/a.txt')[0] == 404 and get('/page.html/x')[0] == 404
"#,
    );
}

#[test]
fn http2_over_tls_with_a_certificate_made_here() {
    let site = Site::new("web-h2");
    let (cert, key) = self_signed(site.dir.path());
    let listen = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        key.display(),
        cert.display()
    );
    let host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        &listen,
        "--path",
        site.root().to_str().unwrap(),
        "--header-timeout",
        "2s",
    ]);
    let line = host.wait_for_line("web starting on ssl:");
    let port: u16 = line
        .split("ssl:")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let cacert = cert.to_str().unwrap();
    let version = curl(&[
        "--http2",
        "--cacert",
        cacert,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url("/a.txt"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        "2 200",
        "{version:?}"
    );
    let (head, body) = curl_get(&["--http2", "--cacert", cacert], &url("/big.bin"));
    assert!(head.starts_with("http/2 200"), "{head}");
    assert_eq!(body, std::fs::read(site.root().join("big.bin")).unwrap());
    let (head, body) = curl_get(
        &["--http2", "--cacert", cacert, "-r", "0-4"],
        &url("/a.txt"),
    );
    assert!(
        head.starts_with("http/2 206") && head.contains("content-range: bytes 0-4/12"),
        "{head}"
    );
    assert_eq!(body, b"hello");
    let (head, body) = curl_get(&["--http2", "--cacert", cacert, "--head"], &url("/big.bin"));
    assert!(
        head.contains("content-length: 3000000") && body.is_empty(),
        "{head}"
    );
    let (head, _) = curl_get(&["--http1.1", "--cacert", cacert], &url("/a.txt"));
    assert!(
        head.starts_with("http/1.1 200"),
        "ALPN http/1.1 too: {head}"
    );
    // Python's ssl negotiates h2 by ALPN too.
    python(
        port,
        &format!(
            r#"
context = ssl.create_default_context(cafile={cacert:?})
context.set_alpn_protocols(['h2', 'http/1.1'])
with socket.create_connection(('127.0.0.1', PORT), timeout=20) as s:
    with context.wrap_socket(s, server_hostname='localhost') as t:
        assert t.selected_alpn_protocol() == 'h2', t.selected_alpn_protocol()
context = ssl.create_default_context(cafile={cacert:?})
c = http.client.HTTPSConnection('localhost', PORT, context=context, timeout=20)
c.request('GET', '/list/'); r = c.getresponse(); assert r.status == 200 and b'Index of /list/' in r.read()
# An HTTP/2 connection that asks for nothing gets GOAWAY and is closed (--header-timeout 2s).
context = ssl.create_default_context(cafile={cacert:?})
context.set_alpn_protocols(['h2'])
with socket.create_connection(('127.0.0.1', PORT), timeout=20) as s:
    with context.wrap_socket(s, server_hostname='localhost') as t:
        # A live client: it acknowledges settings and answers every ping, but asks for nothing.
        t.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + b'\x00\x00\x00\x04\x00\x00\x00\x00\x00')
        t.settimeout(1)
        started, pending, kinds = time.time(), b'', []
        while time.time() - started < 12:
            try:
                b = t.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                break
            if not b:
                break
            pending += b
            while len(pending) >= 9 and len(pending) >= 9 + int.from_bytes(pending[:3], 'big'):
                length, kind, flags = int.from_bytes(pending[:3], 'big'), pending[3], pending[4]
                payload, pending = pending[9:9 + length], pending[9 + length:]
                kinds.append(kind)
                if kind == 4 and not flags & 1:
                    t.sendall(b'\x00\x00\x00\x04\x01\x00\x00\x00\x00')
                if kind == 6 and not flags & 1:
                    t.sendall(b'\x00\x00\x08\x06\x01\x00\x00\x00\x00' + payload)
        assert time.time() - started < 8, 'an idle HTTP/2 connection stayed open: %r' % kinds
        assert 7 in kinds, 'no GOAWAY: %r' % kinds
"#
        ),
    );
    host.wait_for_line("\"GET /a.txt HTTP/2.0\" 200 12 ");
}

#[test]
fn an_http2_client_that_stops_its_streams_is_dropped() {
    let site = Site::new("web-h2-stall");
    std::fs::File::create(site.root().join("sparse.bin"))
        .unwrap()
        .set_len(100_000_000)
        .unwrap();
    let (cert, key) = self_signed(site.dir.path());
    let listen = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        key.display(),
        cert.display()
    );
    let root = site.root();
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        &listen,
        "--path",
        root.to_str().unwrap(),
        "--header-timeout",
        "30s",
        "--send-timeout",
        "2s",
    ]);
    let line = host.wait_for_line("web starting on ssl:");
    let port: u16 = line
        .split("ssl:")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // HTTP/2 by hand: a GET for 100 MB, then never a WINDOW_UPDATE (so the server may send only
    // the first 64 KiB), while answering every ping, as a live client would.
    python(
        port,
        &format!(
            r#"
context = ssl.create_default_context(cafile={cacert:?})
context.set_alpn_protocols(['h2'])
def frame(kind, flags, stream, payload):
    return len(payload).to_bytes(3, 'big') + bytes([kind, flags]) + stream.to_bytes(4, 'big') + payload
def literal(index, value):
    return bytes([index, len(value)]) + value
headers = b'\x82\x87' + literal(4, b'/sparse.bin') + literal(1, b'localhost')
with socket.create_connection(('127.0.0.1', PORT), timeout=20) as s:
    with context.wrap_socket(s, server_hostname='localhost') as t:
        t.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + frame(4, 0, 0, b'') + frame(1, 5, 1, headers))
        t.settimeout(1)
        started, pending, data = time.time(), b'', 0
        while time.time() - started < 15:
            try:
                b = t.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                break
            if not b:
                break
            pending += b
            while len(pending) >= 9 and len(pending) >= 9 + int.from_bytes(pending[:3], 'big'):
                length, kind, flags = int.from_bytes(pending[:3], 'big'), pending[3], pending[4]
                payload, pending = pending[9:9 + length], pending[9 + length:]
                if kind == 0:
                    data += length
                if kind == 4 and not flags & 1:
                    t.sendall(frame(4, 1, 0, b''))
                if kind == 6 and not flags & 1:
                    t.sendall(frame(6, 1, 0, payload))
        assert 0 < data <= 65535, data
        assert time.time() - started < 8, 'a stalled HTTP/2 stream held its connection'
"#,
            cacert = cert.to_str().unwrap()
        ),
    );
    host.stop();
}

#[test]
fn every_request_gets_one_combined_log_format_line() {
    let site = Site::new("web-log");
    let log = site.dir.join("access.log");
    std::fs::File::create(site.root().join("sparse.bin"))
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let (mut host, port) = site.serve_with(
        &["--admin", &admin_endpoint],
        &["--access-log", log.to_str().unwrap()],
    );
    python(
        port,
        r#"
get('/a.txt', {'Referer': 'http://ref.example/', 'User-Agent': 'tester/1.0'})
get('/nope', {'User-Agent': 'evil" 200 999 "x'})
get('/big.bin', method='HEAD')
get('/a.txt', {'Range': 'bytes=0-4'})
c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20)
c.request('GET', '/sparse.bin'); r = c.getresponse(); r.read(1000); c.close()
"#,
    );
    let patience = Instant::now() + PATIENCE;
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 5 || Instant::now() > patience {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let date = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]";
    let expected = [
        format!(
            r#"127.0.0.1 - - {date} "GET /a.txt HTTP/1.1" 200 12 "http://ref.example/" "tester/1.0""#
        ),
        format!(r#"127.0.0.1 - - {date} "GET /nope HTTP/1.1" 404 14 "-" "evil\\" 200 999 \\"x""#),
        format!(r#"127.0.0.1 - - {date} "HEAD /big.bin HTTP/1.1" 200 - "-" "-""#),
        format!(r#"127.0.0.1 - - {date} "GET /a.txt HTTP/1.1" 206 5 "-" "-""#),
        format!(r#"127.0.0.1 - - {date} "GET /sparse.bin HTTP/1.1" 200 \d+ "-" "-""#),
    ];
    for (line, pattern) in lines.iter().zip(&expected) {
        assert!(
            full_match(pattern, line),
            "{line}\ndoes not match\n{pattern}"
        );
    }
    // The plugin's own metric, by status class: four 2xx (200, 200, 206, 200), one 404.
    let samples = wait_for_sample(
        admin,
        "web_requests_total{service=\"web\",status=\"2xx\"}",
        4.0,
    );
    assert_eq!(
        sample(
            &samples,
            "web_requests_total{service=\"web\",status=\"4xx\"}"
        ),
        1.0
    );
    let partial: u64 = lines[4].split(' ').nth(9).unwrap().parse().unwrap();
    assert!(
        partial < 200_000_000,
        "an abandoned download logs what was sent: {}",
        lines[4]
    );
    // SIGHUP reopens the file, for logrotate.
    let rotated = site.dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line("reopened the access log");
    curl(&[&format!("http://127.0.0.1:{port}/a.txt")]);
    host.stop();
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert_eq!(fresh.lines().count(), 1, "{fresh}");
    assert!(fresh.contains("\"GET /a.txt HTTP/1.1\" 200 12"), "{fresh}");
    // '-' (the default): lines in the host's log.
    let (mut host, port) = site.serve(&[]);
    curl(&[&format!("http://127.0.0.1:{port}/a.txt")]);
    host.wait_for_line("[web] 127.0.0.1 - - [");
    host.stop();
}

/// Whether `text` matches the regular expression `pattern` whole (Python's `re`, so the tests
/// need no regex crate).
fn full_match(pattern: &str, text: &str) -> bool {
    let python = "import re, sys\nsys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)";
    Command::new("python3")
        .args(["-c", python, pattern, text])
        .status()
        .unwrap()
        .success()
}

#[test]
fn two_hundred_clients_at_once() {
    let site = Site::new("web-200");
    let (mut host, port) = site.serve(&[
        "--access-log",
        site.dir.join("access.log").to_str().unwrap(),
    ]);
    python(
        port,
        r#"
expected = get('/big.bin')[2]
errors = []
def client(n):
    try:
        c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=30)
        for path, want in [('/a.txt', b'hello\nworld\n'), ('/big.bin', expected) if n % 10 == 0 else ('/page.html', b'<p>page</p>\n')]:
            c.request('GET', path); r = c.getresponse(); body = r.read()
            assert r.status == 200 and body == want, (path, r.status, len(body))
        c.close()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=client, args=(n,)) for n in range(200)]
[t.start() for t in threads]; [t.join() for t in threads]
assert not errors, errors[:5]
"#,
    );
    host.stop();
}

#[test]
fn slow_clients_are_cut_off_without_starving_others() {
    let site = Site::new("web-slow");
    let (mut host, port) = site.serve(&["--header-timeout", "2s"]);
    python(
        port,
        r#"
# A slowloris client: a header byte a second.
slow = socket.create_connection(('127.0.0.1', PORT), timeout=20)
request = b'GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ' + b'a' * 100
cut_after = [None]
def drip():
    started = time.time()
    try:
        for byte in request:
            slow.send(bytes([byte]))
            time.sleep(1)
            # A closed connection shows as an empty read or a reset.
            slow.setblocking(False)
            try:
                if slow.recv(1) == b'':
                    break
            except BlockingIOError:
                pass
            finally:
                slow.setblocking(True)
    except (BrokenPipeError, ConnectionResetError):
        pass
    cut_after[0] = time.time() - started
dripper = threading.Thread(target=drip); dripper.start()
# Meanwhile, an idle connection that never sends anything.
idle = socket.create_connection(('127.0.0.1', PORT), timeout=20)
# Others are served at once, over and over.
started = time.time()
for _ in range(20):
    t = time.time(); assert get('/a.txt')[0] == 200; assert time.time() - t < 1, 'a request waited behind the slow client'
dripper.join(30)
assert cut_after[0] is not None and cut_after[0] < 8, 'the slow client was not cut off: %r' % cut_after[0]
idle.settimeout(10); t = time.time()
assert idle.recv(1) == b'' and time.time() - t < 5, 'the idle connection was not closed'
"#,
    );
    host.stop();
}

#[test]
fn a_full_service_makes_room_for_a_prompt_client() {
    // Every slot held by a slowloris client that reconnects as soon as it is cut, with the
    // header timeout long: a prompt client still gets in within the crowd's grace, and a
    // keep-alive client with a request in progress is not cut.
    let site = Site::new("web-full");
    std::fs::File::create(site.root().join("sparse.bin"))
        .unwrap()
        .set_len(100_000_000)
        .unwrap();
    let (mut host, port) = site.serve(&["--max-connections", "40", "--header-timeout", "60s"]);
    python(
        port,
        r#"
busy = http.client.HTTPConnection('127.0.0.1', PORT, timeout=30)
busy.request('GET', '/sparse.bin'); response = busy.getresponse()
waits, cut = prompt_waits_beside(PORT, 60, b'GET /a.txt HTTP/1.1\r\nHost: x\r\n')
assert max(waits) < 4, 'a prompt client waited behind the crowd: %r' % waits
assert cut > 0, 'no slow connection was closed'
received = 0
while chunk := response.read(1 << 20):
    received += len(chunk)
assert received == 100_000_000, 'a download in progress was cut at %d bytes' % received
"#,
    );
    host.stop();
}

#[test]
fn room_is_made_across_listeners_and_before_the_tls_handshake() {
    // Two listeners share the limit, and the idle connections sit on the TLS one without ever
    // starting a handshake: they hold slots all the same, and must be closed for a newcomer.
    let site = Site::new("web-full-tls");
    let (cert, key) = self_signed(site.dir.path());
    let (plain, tls) = (free_port(), free_port());
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        &format!("tcp:{plain}:interface=127.0.0.1"),
        "--listen",
        &format!(
            "ssl:{tls}:interface=127.0.0.1:privateKey={}:certKey={}",
            key.display(),
            cert.display()
        ),
        "--path",
        site.root().to_str().unwrap(),
        "--max-connections",
        "20",
        "--header-timeout",
        "60s",
    ]);
    host.wait_for_line("web starting on ssl:");
    python(
        plain,
        &format!(
            r#"
waits, cut = prompt_waits_beside({tls}, 40)
assert max(waits) < 4, 'a prompt client waited behind the idle TLS connections: %r' % waits
assert cut > 0, 'no idle connection was closed'
"#
        ),
    );
    host.stop();
}

#[test]
fn a_service_restarted_by_sighup_leaves_no_access_log_writer_behind() {
    let site = Site::new("web-restarts");
    let (port, log) = (free_port(), site.dir.join("access.log"));
    let app = site.dir.join("app.toml");
    let write_app = |timeout: &str| {
        let entry = format!(
            "[[service]]\nplugin = \"web\"\noptions = {{ listen = \"tcp:{port}:interface=127.0.0.1\", path = {:?}, access-log = {:?}, header-timeout = \"{timeout}\" }}\n",
            site.root().display().to_string(),
            log.display().to_string()
        );
        std::fs::write(&app, entry).unwrap();
    };
    write_app("10s");
    let mut host = Running::start(&["--pidfile", "", "-n", "-y", app.to_str().unwrap()]);
    host.wait_for_line("web starting on tcp:");
    for (round, timeout) in ["11s", "12s", "13s"].into_iter().enumerate() {
        write_app(timeout);
        host.signal(libc::SIGHUP);
        let until = Instant::now() + PATIENCE;
        while host.stdout().matches("restarted web").count() <= round {
            assert!(Instant::now() < until, "no restart:\n{}", host.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let writers = || {
        std::fs::read_dir(format!("/proc/{}/task", host.pid()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "web-access-log")
            .count()
    };
    let until = Instant::now() + PATIENCE;
    while writers() > 1 {
        assert!(
            Instant::now() < until,
            "{} access log writers for one service",
            writers()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(writers(), 1);
    host.stop();
}

#[test]
fn clients_that_stop_reading_are_dropped_and_hold_little_memory() {
    let site = Site::new("web-stalled");
    std::fs::File::create(site.root().join("sparse.bin"))
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    let (mut host, port) = site.serve(&["--send-timeout", "2s"]);
    curl(&[
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/big.bin"),
    ]);
    let before = peak_kb(host.pid());
    python(
        port,
        r#"
stalled = []
for _ in range(50):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=20)
    s.sendall(b'GET /sparse.bin HTTP/1.1\r\nHost: x\r\n\r\n')
    stalled.append(s)
time.sleep(1)
for _ in range(10):
    t = time.time(); assert get('/a.txt')[0] == 200; assert time.time() - t < 1, 'slowed by readers that stopped'
time.sleep(4)
for s in stalled:
    total = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            total += len(b)
    except ConnectionResetError:
        pass
    assert total < 200_000_000, 'a client that stopped reading was not cut off'
"#,
    );
    let after = peak_kb(host.pid());
    assert!(
        after < before + 100_000,
        "50 stalled downloads took the peak from {before} kB to {after} kB"
    );
    host.stop();
}

#[test]
fn max_connections_holds_the_next_client_until_one_ends() {
    let site = Site::new("web-max");
    std::fs::File::create(site.root().join("sparse.bin"))
        .unwrap()
        .set_len(100_000_000)
        .unwrap();
    let (mut host, port) = site.serve(&["--max-connections", "2"]);
    python(
        port,
        r#"
# Two downloads in progress (not read) hold both slots: a third client waits.
a = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20); a.request('GET', '/sparse.bin'); a.getresponse()
b = http.client.HTTPConnection('127.0.0.1', PORT, timeout=20); b.request('GET', '/sparse.bin'); b.getresponse()
third = socket.create_connection(('127.0.0.1', PORT), timeout=20)
third.sendall(b'GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n')
third.settimeout(1.5)
try:
    third.recv(100); raise SystemExit('a third connection was served while two were busy')
except socket.timeout:
    pass
a.close()
third.settimeout(20)
assert third.recv(100).startswith(b'HTTP/1.1 200'), 'served once a slot was free'
# Now `third` idles in keep-alive beside the download: a newcomer gets its slot.
t = time.time(); assert get('/a.txt')[0] == 200
assert time.time() - t < 3, 'an idle keep-alive connection kept its slot from a newcomer'
third.settimeout(5)
while third.recv(65536):
    pass  # the rest of its response, then the close that made room (a timeout fails here)
b.close()
"#,
    );
    host.stop();
}

#[test]
fn a_5_gb_file_streams_in_the_memory_of_a_small_one() {
    let site = Site::new("web-huge");
    let huge = site.root().join("huge.bin");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(5 << 30).unwrap();
    drop(file);
    let (mut host, port) = site.serve(&[
        "--access-log",
        site.dir.join("access.log").to_str().unwrap(),
    ]);
    let small = curl(&[
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/big.bin"),
    ]);
    assert!(small.status.success());
    let before = peak_kb(host.pid());
    let started = Instant::now();
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &format!("http://127.0.0.1:{port}/huge.bin"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (5u64 << 30).to_string()
    );
    let after = peak_kb(host.pid());
    assert!(
        after < before + 16_000,
        "5 GB took the peak from {before} kB to {after} kB ({:?})",
        started.elapsed()
    );
    // Offsets past 4 GiB.
    let (head, body) = curl_get(
        &["-r", "5368709100-"],
        &format!("http://127.0.0.1:{port}/huge.bin"),
    );
    assert!(
        head.contains("content-range: bytes 5368709100-5368709119/5368709120"),
        "{head}"
    );
    assert_eq!(body, vec![0u8; 20]);
    host.stop();
}

#[test]
fn a_stop_lets_a_download_in_progress_finish() {
    let site = Site::new("web-stop");
    let big = site.root().join("stop.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300_000_000)
        .unwrap();
    let (mut host, port) = site.serve(&[]);
    let download = Command::new("curl")
        .args([
            "--silent",
            "--limit-rate",
            "100M",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("http://127.0.0.1:{port}/stop.bin"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    host.stop();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "300000000");
}

#[test]
fn a_file_that_shrinks_while_it_is_sent_ends_its_connection() {
    let site = Site::new("web-shrink");
    let file = site.root().join("shrinking.bin");
    std::fs::write(&file, vec![7u8; 100_000_000]).unwrap();
    let (mut host, port) = site.serve(&[]);
    let download = Command::new("curl")
        .args(["--silent", "--limit-rate", "20M", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/shrinking.bin"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(1_000_000)
        .unwrap();
    let out = download.wait_with_output().unwrap();
    // curl's 18: the transfer ended before the promised Content-Length.
    assert_eq!(out.status.code(), Some(18), "{out:?}");
    host.wait_for_line(
        "failed: error from user's Body stream: the file shrank while it was being sent",
    );
    host.stop();
}

#[test]
fn unix_sockets_serve_too() {
    let site = Site::new("web-unix");
    let socket = site.dir.join("web.sock");
    let listen = format!("unix:{}", socket.display());
    let host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        &listen,
        "--path",
        site.root().to_str().unwrap(),
    ]);
    host.wait_for_line("web starting on unix:");
    let (head, body) = curl_get(
        &["--unix-socket", socket.to_str().unwrap()],
        "http://localhost/a.txt",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"hello\nworld\n");
    host.wait_for_line("[web] - - - [");
}

#[test]
fn bad_options_are_one_line_and_exit_1() {
    let site = Site::new("web-config");
    let root = site.root();
    let root = root.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--path", "/nonexistent"],
            "host: web: cannot serve /nonexistent: No such file or directory (os error 2)"
                .to_string(),
        ),
        (
            vec!["--path", root, "--add-header", "no colon"],
            "host: web: --add-header 'no colon' is not 'Name: value'".to_string(),
        ),
        (
            vec!["--path", root, "--add-header", "Content-Length: 5"],
            "host: web: --add-header: content-length is set by the server itself".to_string(),
        ),
        (
            vec!["--path", root, "--mime-type", "nonsense"],
            "host: web: --mime-type 'nonsense' is not a media type such as text/plain".to_string(),
        ),
        (
            vec!["--path", root, "--index", "../x"],
            "host: web: --index '../x' is not a file name".to_string(),
        ),
        (
            vec!["--path", root, "--cors", "a, b"],
            "host: web: --cors 'a, b' is not one origin (e.g. https://example.org) or '*'"
                .to_string(),
        ),
        (
            vec!["--path", root, "--header-timeout", "0s"],
            "host: web: --header-timeout must be longer than 0s".to_string(),
        ),
        (
            vec!["--path", "/dev/null"],
            "host: web: cannot serve /dev/null: not a directory or a regular file".to_string(),
        ),
    ] {
        let mut all = vec![
            "--pidfile",
            "",
            "-n",
            "web",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ];
        all.extend(args);
        let out = run(host_e2e::host_command(&all));
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert_eq!(out.stderr.trim_end(), expected);
    }
    let log_dir = site.dir.join("no-such-dir/access.log");
    let out = run(host_e2e::host_command(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--path",
        root,
        "--access-log",
        log_dir.to_str().unwrap(),
    ]));
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot open the access log"), "{out:?}");
}

#[test]
fn start_up_names_the_root_and_every_endpoint() {
    let site = Site::new("web-startup");
    let socket = site.dir.join("s.sock");
    let unix = format!("unix:{}", socket.display());
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--path",
        site.root().to_str().unwrap(),
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        &unix,
    ]);
    host.wait_for_line(&format!(
        "[web] serving {} (index: index.html, index.htm; listing: on; dotfiles: hidden; symlinks: kept inside the root; access log: the host's log)",
        site.root().canonicalize().unwrap().display()
    ));
    host.wait_for_line("[web] web starting on tcp:");
    host.wait_for_line(&format!("[web] web starting on {unix}"));
    host.stop();
}
