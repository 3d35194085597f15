//! The ftp plugin with real clients: Python's ftplib and curl, against a real `host` serving a
//! temporary directory on 127.0.0.1.

use host_e2e::scrape::{sample, wait_for_sample};
use host_e2e::{curl, free_port, run, self_signed, Running, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A served tree: `a.txt`, `sub/b.txt`, a 50 MB file, symlinks that lead outside, a user home.
struct Site {
    dir: TempDir,
}

impl Site {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("home/alice")).unwrap();
        std::fs::write(root.join("a.txt"), "hello\nworld\n").unwrap();
        std::fs::write(root.join("sub/b.txt"), "in sub\n").unwrap();
        let big: Vec<u8> = (0..50_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(root.join("big.bin"), big).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd-link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", root.join("relative-link")).unwrap();
        std::fs::write(dir.join("outside.txt"), "secret outside the root\n").unwrap();
        let hash = bcrypt::hash("wonderland", 4).unwrap();
        std::fs::write(
            dir.join("passwd"),
            format!("# users\nalice:{hash}\nbob:{hash}:home/alice\n"),
        )
        .unwrap();
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `host -n ftp` over this site with `extra` options, on a free port.
    fn serve(&self, extra: &[&str]) -> (Running, u16) {
        self.serve_with(&[], extra)
    }

    /// The same, with `global` options for host.
    fn serve_with(&self, global: &[&str], extra: &[&str]) -> (Running, u16) {
        let root = self.root();
        let passwd = self.dir.join("passwd");
        let mut args = global.to_vec();
        args.extend([
            "--pidfile",
            "",
            "-n",
            "ftp",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--root",
            root.to_str().unwrap(),
            "--password-file",
            passwd.to_str().unwrap(),
            "--passive-ports",
            "40000-44999",
        ]);
        args.extend(extra);
        let host = Running::start(&args);
        let port = host.port();
        (host, port)
    }
}

/// Runs a Python script with ftplib against `port`; it must print "ok" last.
fn python(port: u16, script: &str) -> String {
    host_e2e::python(&format!(
        "import ftplib, io, hashlib, socket, ssl, sys, time, threading\nPORT = {port}\n{script}"
    ))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn anonymous_browses_and_downloads_read_only() {
    let site = Site::new("ftp-anon");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20)
assert f.getwelcome().startswith('220 '), f.getwelcome()
assert f.login().startswith('230')
assert f.pwd() == '/'
names = f.nlst()
assert {'a.txt', 'sub', 'big.bin'} <= set(names), names
lines = []; f.retrlines('LIST', lines.append)
assert any(l.endswith(' a.txt') for l in lines), lines
assert not any('/etc' in l for l in lines), 'a symlink target leaked: %r' % lines
facts = dict(f.mlsd())
assert facts['a.txt']['type'] == 'file' and facts['a.txt']['size'] == '12', facts
assert facts['sub']['type'] == 'dir'
assert f.size('a.txt') == 12
assert f.sendcmd('MDTM a.txt').startswith('213 ')
f.cwd('sub'); assert f.pwd() == '/sub'
assert 'size=7' in f.sendcmd('MLST b.txt'), 'MLST resolves against the current directory'
f.sendcmd('CDUP'); assert f.pwd() == '/'
assert 'size=12' in f.sendcmd('MLST /a.txt')
# TYPE A (retrlines) and TYPE I (retrbinary)
text = []; f.retrlines('RETR a.txt', text.append); assert text == ['hello', 'world'], text
data = io.BytesIO(); f.retrbinary('RETR a.txt', data.write); assert data.getvalue() == b'hello\nworld\n'
# REST: resume from byte 6
part = io.BytesIO(); f.retrbinary('RETR a.txt', part.write, rest=6); assert part.getvalue() == b'world\n'
for command in ['STOR new.txt', 'APPE a.txt']:
    try:
        f.storbinary(command, io.BytesIO(b'x')); raise SystemExit(command + ' was allowed')
    except ftplib.error_perm as e:
        assert str(e).startswith('550'), e
for command in ['DELE a.txt', 'MKD newdir', 'RMD sub']:
    try:
        f.sendcmd(command); raise SystemExit(command + ' was allowed')
    except ftplib.error_perm as e:
        assert str(e).startswith('550'), (command, e)
try:
    f.rename('a.txt', 'b.txt'); raise SystemExit('RNFR+RNTO was allowed')
except ftplib.error_perm as e:
    assert str(e).startswith('550'), e
f.quit()
"#,
    );
    assert!(!site.root().join("new.txt").exists());
    host.wait_for_line("[ftp] anonymous logged in from 127.0.0.1");
    host.wait_for_line("[ftp] anonymous downloaded /a.txt (12 bytes in ");
    host.stop();
}

#[test]
fn listings_work_in_pasv_and_epsv() {
    let site = Site::new("ftp-epsv");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
for extended in (False, True):
    f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
    if extended:
        f.af = socket.AF_INET6  # makes ftplib use EPSV; it still connects to 127.0.0.1
    assert 'a.txt' in f.nlst()
    lines = []; f.retrlines('LIST', lines.append); assert len(lines) >= 5, lines
    assert 'a.txt' in dict(f.mlsd())
    data = io.BytesIO(); f.retrbinary('RETR sub/b.txt', data.write); assert data.getvalue() == b'in sub\n'
    f.quit()
"#,
    );
    let listing = curl(&[&format!("ftp://127.0.0.1:{port}/")]);
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains(" a.txt"),
        "{listing:?}"
    );
    host.stop();
}

#[test]
fn a_50_mb_download_is_byte_for_byte_the_file_and_resumes() {
    let site = Site::new("ftp-big");
    let (mut host, port) = site.serve(&[]);
    let out_dir = TempDir::new("ftp-big-out");
    let copy = out_dir.join("big.bin");
    let got = curl(&[
        "-o",
        copy.to_str().unwrap(),
        &format!("ftp://127.0.0.1:{port}/big.bin"),
    ]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(sha256(&copy), sha256(&site.root().join("big.bin")));
    // Resume a download cut at 20 MB.
    let file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    file.set_len(20_000_000).unwrap();
    let resumed = curl(&[
        "-C",
        "-",
        "-o",
        copy.to_str().unwrap(),
        &format!("ftp://127.0.0.1:{port}/big.bin"),
    ]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert_eq!(sha256(&copy), sha256(&site.root().join("big.bin")));
    let digest = python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
digest = hashlib.sha256(); f.retrbinary('RETR big.bin', digest.update, blocksize=1 << 20)
print(digest.hexdigest())
f.quit()
"#,
    );
    assert!(
        digest.contains(&sha256(&site.root().join("big.bin"))),
        "ftplib's digest: {digest}"
    );
    host.stop();
}

#[test]
fn a_user_from_the_password_file_reads_and_writes_inside_the_root() {
    let site = Site::new("ftp-user");
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let (mut host, port) = site.serve_with(&["--admin", &admin_endpoint], &[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20)
assert f.login('alice', 'wonderland').startswith('230')
f.storbinary('STOR up.txt', io.BytesIO(b'uploaded\n'))
f.storbinary('APPE up.txt', io.BytesIO(b'appended\n'))
data = io.BytesIO(); f.retrbinary('RETR up.txt', data.write); assert data.getvalue() == b'uploaded\nappended\n', data.getvalue()
assert f.size('up.txt') == 18
f.mkd('made'); f.cwd('made'); f.storbinary('STOR inner.txt', io.BytesIO(b'x')); f.cwd('/')
f.rename('up.txt', 'made/renamed.txt')
assert 'renamed.txt' in f.nlst('made')
f.delete('made/renamed.txt'); f.delete('made/inner.txt'); f.rmd('made')
assert 'made' not in f.nlst()
f.quit()
# bob's home is home/alice: he sees only that directory, as his root.
g = ftplib.FTP(); g.connect('127.0.0.1', PORT, timeout=20); g.login('bob', 'wonderland')
assert g.nlst() == [], g.nlst()
g.storbinary('STOR mine.txt', io.BytesIO(b'bob'))
try:
    g.retrbinary('RETR ../../a.txt', io.BytesIO().write); raise SystemExit('bob left his home')
except ftplib.error_perm as e:
    assert str(e).startswith('550'), e
g.quit()
"#,
    );
    assert_eq!(
        std::fs::read_to_string(site.root().join("home/alice/mine.txt")).unwrap(),
        "bob"
    );
    host.wait_for_line("[ftp] alice uploaded /up.txt (9 bytes in ");
    host.wait_for_line("[ftp] alice logged out from 127.0.0.1");
    // The plugin's own metrics: two logins; STOR, APPE, STOR and bob's STOR up (9 + 9 + 1 + 3
    // bytes), one RETR down (18 bytes).
    let samples = wait_for_sample(
        admin,
        "ftp_logins_total{outcome=\"accepted\",service=\"ftp\"}",
        2.0,
    );
    for (prefix, value) in [
        (
            "ftp_transfers_total{direction=\"upload\",outcome=\"completed\",service=\"ftp\"}",
            4.0,
        ),
        (
            "ftp_transfers_total{direction=\"download\",outcome=\"completed\",service=\"ftp\"}",
            1.0,
        ),
        (
            "ftp_transferred_bytes_total{direction=\"upload\",service=\"ftp\"}",
            22.0,
        ),
        (
            "ftp_transferred_bytes_total{direction=\"download\",service=\"ftp\"}",
            18.0,
        ),
    ] {
        assert_eq!(sample(&samples, prefix), value, "{prefix}");
    }
    host.stop();
}

#[test]
fn wrong_passwords_get_530_after_a_delay_and_a_guesser_is_banned() {
    let site = Site::new("ftp-guess");
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let (mut host, port) = site.serve_with(&["--admin", &admin_endpoint], &[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20)
started = time.time()
try:
    f.login('alice', 'wrong'); raise SystemExit('a wrong password was accepted')
except ftplib.error_perm as e:
    assert str(e).startswith('530'), e
assert time.time() - started >= 0.9, 'no delay after a wrong password'
try:
    f.login('nosuchuser', 'x'); raise SystemExit('an unknown user was accepted')
except ftplib.error_perm as e:
    assert str(e).startswith('530'), e
f.close()
# Eight more failures, in parallel: ten in all from this address within a minute.
def fail():
    g = ftplib.FTP(); g.connect('127.0.0.1', PORT, timeout=20)
    try: g.login('alice', 'wrong')
    except ftplib.error_perm: pass
    g.close()
threads = [threading.Thread(target=fail) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
h = ftplib.FTP()
try:
    h.connect('127.0.0.1', PORT, timeout=20); h.login('alice', 'wonderland'); raise SystemExit('a banned address logged in')
except ftplib.error_temp as e:
    assert str(e).startswith('421 Too many failed logins'), e
"#,
    );
    host.wait_for_line("failed logins from 127.0.0.1 within 60s; refusing it for 300s");
    wait_for_sample(
        admin,
        "ftp_logins_total{outcome=\"failed\",service=\"ftp\"}",
        10.0,
    );
    host.stop();
}

#[test]
fn no_path_or_symlink_leads_outside_the_root() {
    let site = Site::new("ftp-escape");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login('alice', 'wonderland')
for path in ['../outside.txt', '/../outside.txt', '../../../../etc/passwd', 'passwd-link', 'relative-link', 'etc-link/passwd', '/%2e%2e/outside.txt', 'sub/../../outside.txt']:
    try:
        data = io.BytesIO(); f.retrbinary('RETR ' + path, data.write)
        raise SystemExit('read outside the root through %r: %r' % (path, data.getvalue()[:40]))
    except ftplib.error_perm as e:
        assert str(e).startswith('550'), (path, e)
for path in ['..', 'etc-link', '/..']:
    try:
        f.cwd(path)
        assert f.pwd() == '/' or not f.pwd().startswith('/etc'), f.pwd()
        assert 'passwd' not in f.nlst(), 'listed /etc through %r' % path
        f.cwd('/')
    except ftplib.error_perm as e:
        assert str(e).startswith('550'), (path, e)
try:
    f.storbinary('STOR ../escaped.txt', io.BytesIO(b'x')); raise SystemExit('wrote outside the root')
except ftplib.error_perm as e:
    assert str(e).startswith('550'), e
f.quit()
"#,
    );
    assert!(!site.dir.join("escaped.txt").exists());
    host.stop();
}

#[test]
fn active_mode_is_refused_so_the_server_cannot_be_bounced() {
    let site = Site::new("ftp-bounce");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
for command, code in [('PORT 192,0,2,1,0,25', '502'), ('PORT 127,0,0,1,0,22', '502'), ('EPRT |1|192.0.2.1|25|', '500')]:
    try:
        f.sendcmd(command); raise SystemExit(command + ' was accepted')
    except ftplib.error_perm as e:
        assert str(e).startswith(code), (command, e)
f.set_pasv(False)
try:
    f.retrbinary('RETR a.txt', io.BytesIO().write); raise SystemExit('an active-mode transfer happened')
except ftplib.error_perm:
    pass
f.close()
"#,
    );
    host.stop();
}

#[test]
fn garbage_and_huge_commands_hurt_nobody_else() {
    let site = Site::new("ftp-garbage");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
survivor = ftplib.FTP(); survivor.connect('127.0.0.1', PORT, timeout=20); survivor.login()
def raw(payload):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=20)
    s.recv(1024)
    s.sendall(payload)
    s.settimeout(5)
    try:
        reply = s.recv(1024)
    except socket.timeout:
        reply = b''
    s.close()
    return reply
assert raw(b'BOGUS command\r\n')[:3] in (b'500', b'530'), 'an unknown command gets a reply'
assert raw(b'\xff\xfe\xfd\r\n').startswith(b'500')
assert raw(b'CWD ' + b'x' * 100_000 + b'\r\n')[:3] in (b'530', b'550', b'500'), 'a 100 KB line gets a reply'
assert raw(b'\x00\x01\x02\r\n\r\n')
raw(b'USER anonymous\r\nPASS x\r\nLIST\r\nRETR\r\n' * 50)
assert 'a.txt' in survivor.nlst(), 'the other session still works'
survivor.quit()
"#,
    );
    host.stop();
}

#[test]
fn fifty_clients_at_once() {
    let site = Site::new("ftp-fifty");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
errors = []
def client(n):
    try:
        f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=30)
        f.login('alice', 'wonderland') if n % 2 else f.login()
        assert 'a.txt' in f.nlst()
        data = io.BytesIO(); f.retrbinary('RETR a.txt', data.write); assert data.getvalue() == b'hello\nworld\n'
        f.quit()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
[t.start() for t in threads]; [t.join() for t in threads]
assert not errors, errors
"#,
    );
    host.stop();
}

#[test]
fn max_connections_turns_away_the_next_client_with_421() {
    let site = Site::new("ftp-max");
    let (mut host, port) = site.serve(&["--max-connections", "2"]);
    python(
        port,
        r#"
a = ftplib.FTP(); a.connect('127.0.0.1', PORT, timeout=20)
b = ftplib.FTP(); b.connect('127.0.0.1', PORT, timeout=20)
c = ftplib.FTP()
try:
    c.connect('127.0.0.1', PORT, timeout=20); raise SystemExit('a third session was served')
except ftplib.error_temp as e:
    assert str(e).startswith('421 Too many connections'), e
a.quit()
time.sleep(0.3)
d = ftplib.FTP(); d.connect('127.0.0.1', PORT, timeout=20); d.login(); d.quit(); b.quit()
"#,
    );
    host.stop();
}

#[test]
fn large_uploads_and_downloads_stream_without_growing_memory() {
    let site = Site::new("ftp-stream");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=60); f.login('alice', 'wonderland')
class Zeros(io.RawIOBase):
    def __init__(self, size): self.left = size
    def readable(self): return True
    def readinto(self, buffer):
        n = min(len(buffer), self.left); buffer[:n] = bytes(n); self.left -= n; return n
f.storbinary('STOR huge.bin', io.BufferedReader(Zeros(300_000_000), 1 << 20), blocksize=1 << 20)
count = [0]
def sink(block): count[0] += len(block)
f.retrbinary('RETR huge.bin', sink, blocksize=1 << 20)
assert count[0] == 300_000_000, count
f.quit()
"#,
    );
    assert_eq!(
        std::fs::metadata(site.root().join("home/../huge.bin"))
            .unwrap()
            .len(),
        300_000_000
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        peak_kb < 100_000,
        "300 MB each way should not need {peak_kb} kB of memory"
    );
    host.stop();
}

#[test]
fn ftps_with_a_self_signed_certificate() {
    let site = Site::new("ftp-tls");
    let (cert, key) = self_signed(site.dir.path());
    let (mut host, port) = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--require-tls",
    ]);
    python(
        port,
        &format!(
            r#"
context = ssl.create_default_context(cafile={cert:?})
context.check_hostname = False
f = ftplib.FTP_TLS(context=context); f.connect('127.0.0.1', PORT, timeout=20)
f.auth(); f.login('alice', 'wonderland')
try:
    f.sendcmd('PROT P'); raise SystemExit('PROT accepted without PBSZ')
except ftplib.error_perm as e:
    assert str(e).startswith('503'), e
f.prot_p()
data = io.BytesIO(); f.retrbinary('RETR a.txt', data.write); assert data.getvalue() == b'hello\nworld\n'
assert 'a.txt' in f.nlst()
f.quit()
plain = ftplib.FTP(); plain.connect('127.0.0.1', PORT, timeout=20)
try:
    plain.login('alice', 'wonderland'); raise SystemExit('a plain-text login was accepted with --require-tls')
except ftplib.error_perm as e:
    assert str(e)[:3] in ('521', '530', '534'), e
"#,
            cert = cert.to_str().unwrap()
        ),
    );
    // Uploads with curl, which ends a TLS data connection with a reset rather than its
    // close_notify (ftplib's uploads over TLS are in require_tls_covers_every_order_…).
    let upload = site.dir.join("upload.txt");
    std::fs::write(&upload, "over tls").unwrap();
    let stored = curl(&[
        "--ssl-reqd",
        "--cacert",
        cert.to_str().unwrap(),
        "--user",
        "alice:wonderland",
        "-T",
        upload.to_str().unwrap(),
        &format!("ftp://localhost:{port}/secure.txt"),
    ]);
    assert!(stored.status.success(), "{stored:?}");
    assert_eq!(
        std::fs::read_to_string(site.root().join("secure.txt")).unwrap(),
        "over tls"
    );
    let refused = curl(&[
        "--user",
        "alice:wonderland",
        &format!("ftp://127.0.0.1:{port}/a.txt"),
    ]);
    assert!(
        !refused.status.success(),
        "a plain-text download with --require-tls: {refused:?}"
    );
    host.stop();
}

#[test]
fn bad_configuration_is_one_line_and_exit_1() {
    let site = Site::new("ftp-config");
    let plain = site.dir.join("plain");
    std::fs::write(&plain, "carol:letmein\n").unwrap();
    let root = site.root();
    for (args, expected) in [
        (vec!["--root", "/nonexistent"], "host: ftp: cannot serve /nonexistent: No such file or directory (os error 2)".to_string()),
        (
            vec!["--root", root.to_str().unwrap(), "--password-file", plain.to_str().unwrap()],
            format!("host: ftp: {} line 1: the password of 'carol' is not a bcrypt or argon2 hash (plain-text passwords need --allow-plaintext-passwords)", plain.display()),
        ),
        (vec!["--root", root.to_str().unwrap(), "--require-tls"], "host: ftp: --require-tls needs --tls-cert and --tls-key".to_string()),
        (vec!["--root", root.to_str().unwrap(), "--passive-ports", "9-1"], "host: ftp: --passive-ports '9-1' is not LOW-HIGH with 1024 <= LOW <= HIGH <= 65535".to_string()),
        // A deadline that far ahead cannot be computed: it used to panic in every session.
        (vec!["--root", root.to_str().unwrap(), "--idle-timeout", "9223372036854775807"], "host: ftp: --idle-timeout must be at most 3153600000 seconds".to_string()),
    ] {
        let mut all = vec!["--pidfile", "", "-n", "ftp", "--listen", "tcp:0:interface=127.0.0.1"];
        all.extend(args);
        let out = run(host_e2e::host_command(&all));
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert_eq!(out.stderr.trim_end(), expected);
    }
    let mut allowed = host_e2e::host_command(&[
        "--pidfile",
        "",
        "-n",
        "ftp",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--root",
        root.to_str().unwrap(),
        "--password-file",
        plain.to_str().unwrap(),
        "--allow-plaintext-passwords",
    ]);
    let host = Running::spawn(&mut allowed);
    host.wait_for_line(&format!(
        "serving {} (anonymous 'anonymous': read-only; 1 password-file user(s); FTPS: off)",
        root.display()
    ));
}

/// The peak resident memory of a process, in kB.
fn peak_rss_kb(pid: i32) -> u64 {
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
fn over_long_lines_are_refused_before_and_after_login_and_inside_tls() {
    let site = Site::new("ftp-lines");
    let (cert, key) = self_signed(site.dir.path());
    let (mut host, port) = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    python(
        port,
        r#"
def expect_cut_off(s, prefix=b''):
    # Exactly the cap: the server reads all of it, answers and closes cleanly.
    s.sendall(prefix + b'A' * (4096 - len(prefix)))
    reply = s.recv(1024)
    assert reply == b'500 Command line too long.\r\n', reply
    assert s.recv(1024) == b'', 'the session goes on after an over-long line'
def connect():
    s = socket.create_connection(('127.0.0.1', PORT), timeout=20)
    assert s.recv(1024).startswith(b'220 ')
    return s
expect_cut_off(connect())
s = connect(); s.sendall(b'USER anonymous\r\n'); s.recv(1024); s.sendall(b'PASS x\r\n')
assert s.recv(1024).startswith(b'230'); expect_cut_off(s, b'RETR ')
s = connect(); s.sendall(b'AUTH TLS\r\n'); assert s.recv(1024).startswith(b'234')
context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
t = context.wrap_socket(s); expect_cut_off(t, b'USER ')
# A line split anywhere, and a USER that is not UTF-8, still get their replies.
s = connect()
for byte in b'NOOP\r\n': s.sendall(bytes([byte])); time.sleep(0.01)
assert s.recv(1024) == b'200 NOOP ok.\r\n'
s.sendall(b'USER \xff\xfe\xc3\x28\r\n'); assert s.recv(1024).startswith(b'331')
s.sendall(b'PASS x\r\n'); assert s.recv(1024).startswith(b'530')
"#,
    );
    host.stop();
}

#[test]
fn two_hundred_unterminated_ten_megabyte_lines_leave_memory_bounded() {
    let site = Site::new("ftp-flood");
    let (cert, key) = self_signed(site.dir.path());
    let (mut host, port) = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--max-connections",
        "0",
    ]);
    python(
        port,
        r#"
context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
line = b'X' * (10 << 20)
cut = []
def flood(n):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=30)
    s.recv(1024)
    if n % 3 == 1:
        s.sendall(b'USER anonymous\r\nPASS x\r\n'); time.sleep(0.2); s.recv(1024)
    if n % 3 == 2:
        s.sendall(b'AUTH TLS\r\n'); s.recv(1024); s = context.wrap_socket(s)
    try:
        s.sendall(line)
    except OSError:
        cut.append(n)  # the server closed the session long before 10 MB
    s.close()
threads = [threading.Thread(target=flood, args=(n,)) for n in range(200)]
[t.start() for t in threads]; [t.join() for t in threads]
assert len(cut) >= 190, 'sessions that could send a whole 10 MB line: %d' % (200 - len(cut))
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login(); assert 'a.txt' in f.nlst(); f.quit()
"#,
    );
    let peak_kb = peak_rss_kb(host.pid());
    assert!(
        peak_kb < 100_000,
        "200 unterminated 10 MB lines took the server to {peak_kb} kB"
    );
    host.stop();
}

#[test]
fn require_tls_covers_every_order_of_pasv_epsv_pbsz_and_prot() {
    let site = Site::new("ftp-require");
    let (cert, key) = self_signed(site.dir.path());
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let script = r#"
context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
def session():
    f = ftplib.FTP_TLS(context=context); f.connect('127.0.0.1', PORT, timeout=20)
    f.auth(); f.login('alice', 'wonderland')
    return f
def data_port(f, mode):
    if mode == 'EPSV':
        return int(f.sendcmd('EPSV').split('|')[3])
    numbers = f.sendcmd('PASV').split('(')[1].split(')')[0].split(',')
    return int(numbers[4]) * 256 + int(numbers[5])
def clear_transfer(f, mode, command):
    # A client that kept PROT C (or sent none): the data connection must carry nothing.
    port = data_port(f, mode)
    d = socket.create_connection(('127.0.0.1', port), timeout=20)
    try:
        reply = f.sendcmd(command)
    except ftplib.Error as e:
        reply = str(e)
    d.settimeout(3)
    try:
        got = d.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = b''
    d.close()
    return reply, got
for mode in ('PASV', 'EPSV'):
    for command in ('RETR a.txt', 'LIST', 'NLST', 'MLSD', 'STOR clear.txt'):
        f = session()
        reply, got = clear_transfer(f, mode, command)
        if REQUIRED:
            assert reply.startswith('521'), (mode, command, reply)
            assert got == b'', (mode, command, got)
        else:
            assert reply.startswith('150'), (mode, command, reply)
        f.close()
    f = session()
    if REQUIRED:
        try:
            f.sendcmd('PBSZ 0'); f.sendcmd('PROT C'); raise SystemExit('PROT C accepted')
        except ftplib.error_perm as e:
            assert str(e).startswith('534'), e
    # PROT P before or after the port is opened: either way the data goes over TLS.
    for early in (True, False):
        f = session()
        if early:
            f.prot_p()
        f.af = socket.AF_INET6 if mode == 'EPSV' else socket.AF_INET  # ftplib: EPSV for IPv6
        port = data_port(f, mode)
        if not early:
            f.prot_p()
        d = socket.create_connection(('127.0.0.1', port), timeout=20)
        assert f.sendcmd('RETR a.txt').startswith('150')
        d = f.context.wrap_socket(d, server_hostname='localhost')
        data = b''
        while True:
            chunk = d.recv(1024)
            if not chunk: break
            data += chunk
        d.unwrap(); d.close()
        assert data == b'hello\nworld\n', data
        assert f.voidresp().startswith('226')
        f.storbinary('STOR up-%s-%s.txt' % (mode, early), io.BytesIO(b'up over tls'))
        lines = []; f.retrlines('LIST', lines.append); assert any('up-' in l for l in lines), lines
        f.quit()
plain = ftplib.FTP(); plain.connect('127.0.0.1', PORT, timeout=20)
if REQUIRED:
    for command in ('USER alice', 'PASS wonderland', 'USER anonymous'):
        try:
            plain.sendcmd(command); raise SystemExit(command + ' accepted without TLS')
        except ftplib.error_perm as e:
            assert str(e).startswith('530'), e
    for command in ('PBSZ 0', 'PROT P'):
        try:
            plain.sendcmd(command); raise SystemExit(command + ' accepted without TLS')
        except ftplib.error_perm as e:
            assert str(e).startswith('503'), e
else:
    plain.login(); assert 'a.txt' in plain.nlst()
"#;
    for required in [true, false] {
        let mut args = tls.to_vec();
        if required {
            args.push("--require-tls");
        }
        let (mut host, port) = site.serve(&args);
        let flag = if required { "True" } else { "False" };
        python(port, &format!("REQUIRED = {flag}\n{script}"));
        host.stop();
    }
}

#[test]
fn a_data_connection_from_another_address_is_refused_and_the_owner_is_not_disturbed() {
    let site = Site::new("ftp-steal");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
for attempt in range(2):
    port = int(f.sendcmd('EPSV').split('|')[3])
    started = time.time()
    try:
        # The reset can come before connect() returns.
        thief = socket.create_connection(('127.0.0.1', port), timeout=5, source_address=('127.0.0.2', 0))
        assert thief.recv(100) == b'', 'the thief got data'
    except ConnectionResetError:
        pass
    assert time.time() - started < 5, 'the thief was not refused at once'
    owner = socket.create_connection(('127.0.0.1', port), timeout=20)
    assert f.sendcmd('RETR a.txt').startswith('150')
    data = b''
    while True:
        chunk = owner.recv(1024)
        if not chunk: break
        data += chunk
    assert data == b'hello\nworld\n', data
    assert f.voidresp().startswith('226')
# An owner that never connects gets 425 within seconds, not a hang.
f.sendcmd('EPSV')
started = time.time()
assert f.sendcmd('RETR a.txt').startswith('150')
try:
    f.voidresp(); raise SystemExit('a transfer without a data connection succeeded')
except ftplib.error_temp as e:
    assert str(e).startswith('425'), e
assert time.time() - started < 15
f.quit()
"#,
    );
    host.wait_for_line("refused a data connection to passive port");
    host.stop();
}

#[test]
fn sigterm_lets_a_slow_200_mb_download_finish_and_tells_idle_sessions_421() {
    let site = Site::new("ftp-drain");
    let big: Vec<u8> = (0..200_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(site.root().join("big200.bin"), &big).unwrap();
    drop(big);
    let expected = sha256(&site.root().join("big200.bin"));
    let (mut host, port) = site.serve(&[]);
    let host_pid = host.pid();
    let out = python(
        port,
        &format!(
            r#"
import os, signal
idle = ftplib.FTP(); idle.connect('127.0.0.1', PORT, timeout=20); idle.login()
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
digest = hashlib.sha256(); started = time.time(); signalled = False; total = 0
def slow(block):
    global signalled, total
    digest.update(block); total += len(block)
    time.sleep(0.002)  # about 30 MB/s: the download takes several seconds
    if not signalled and total > 20_000_000:
        os.kill({host_pid}, signal.SIGTERM); signalled = True
        time.sleep(0.5)
        try:
            socket.create_connection(('127.0.0.1', PORT), timeout=2); raise SystemExit('still accepting')
        except ConnectionRefusedError:
            pass
f.retrbinary('RETR big200.bin', slow, blocksize=65536)
print(digest.hexdigest())
try:
    idle.sendcmd('NOOP'); raise SystemExit('the idle session outlived the stop')
except (ftplib.error_temp, EOFError, ConnectionError) as e:
    assert str(e).startswith('421') or not str(e), e
"#
        ),
    );
    assert!(out.contains(&expected), "the download after SIGTERM: {out}");
    let status = host.wait();
    assert_eq!(status.code(), Some(0), "{}", host.stdout());
    host.wait_for_line("anonymous downloaded /big200.bin (200000000 bytes in ");
}

#[test]
fn a_transfer_cut_by_the_shutdown_timeout_is_logged_as_aborted() {
    let site = Site::new("ftp-cut");
    let (mut host, port) = {
        let root = site.root();
        let args = [
            "--pidfile",
            "",
            "--shutdown-timeout",
            "1",
            "-n",
            "ftp",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--root",
            root.to_str().unwrap(),
        ];
        let host = Running::start(&args);
        let port = host.port();
        (host, port)
    };
    let mut client = Command::new("python3")
        .args([
            "-c",
            &format!(
                r#"
import ftplib, time
f = ftplib.FTP(); f.connect('127.0.0.1', {port}, timeout=20); f.login()
conn = f.transfercmd('RETR big.bin')
while conn.recv(1000): time.sleep(0.05)
"#
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    host.wait_for_line("anonymous logged in from 127.0.0.1");
    std::thread::sleep(Duration::from_millis(300));
    host.signal(libc::SIGTERM);
    let status = host.wait();
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(status.code(), Some(0), "{}", host.stdout());
    host.wait_for_line("did not finish within 1s");
    let line = host.wait_for_line("anonymous downloaded /big.bin: aborted after ");
    assert!(line.contains("the server stopped"), "{line}");
}

#[test]
fn the_per_address_cap_and_the_login_deadline() {
    let site = Site::new("ftp-caps");
    let (mut host, port) = site.serve(&["--max-connections-per-ip", "2", "--login-timeout", "1s"]);
    python(
        port,
        r#"
a = ftplib.FTP(); a.connect('127.0.0.1', PORT, timeout=20); a.login()
b = ftplib.FTP(); b.connect('127.0.0.1', PORT, timeout=20); b.login()
c = ftplib.FTP()
try:
    c.connect('127.0.0.1', PORT, timeout=20); raise SystemExit('a third session from one address')
except ftplib.error_temp as e:
    assert str(e).startswith('421 Too many connections'), e
other = socket.create_connection(('127.0.0.1', PORT), timeout=20, source_address=('127.0.0.2', 0))
assert other.recv(1024).startswith(b'220 '), 'another address is not capped'
# The log-in deadline: a session that says nothing is closed; logged-in ones are not.
started = time.time()
assert other.recv(1024) == b'421 Not logged in in time; closing.\r\n'
assert 0.8 < time.time() - started < 5
time.sleep(0.5)
assert a.sendcmd('NOOP').startswith('200') and b.sendcmd('NOOP').startswith('200')
a.quit(); b.quit()
"#,
    );
    host.stop();
}

#[test]
fn a_client_that_pipelines_commands_and_never_reads_is_closed_at_the_login_deadline() {
    let site = Site::new("ftp-noread");
    let (cert, key) = self_signed(site.dir.path());
    let (mut host, port) = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--login-timeout",
        "2s",
        "--idle-timeout",
        "60",
        "--max-connections",
        "1",
    ]);
    python(
        port,
        r#"
context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
for tls in (False, True):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', PORT)); s.settimeout(20)
    started = time.time()
    assert s.recv(1024).startswith(b'220 ')
    if tls:
        s.sendall(b'AUTH TLS\r\n'); assert s.recv(1024).startswith(b'234'); s = context.wrap_socket(s)
    # Replies pile up unread until the server blocks writing one.
    s.settimeout(0.5)
    try:
        while time.time() - started < 10:
            s.sendall(b'HELP\r\n' * 50)
    except OSError:
        pass
    blocked = time.time() - started
    assert blocked < 2, 'the server never blocked writing replies (%.1f s)' % blocked
    # The one slot is free again once the login deadline has closed the session.
    while True:
        other = socket.create_connection(('127.0.0.1', PORT), timeout=20)
        greeting = other.recv(1024); other.close()
        if greeting.startswith(b'220 '):
            break
        assert greeting.startswith(b'421 Too many connections'), greeting
        assert time.time() - started < 8, 'the session outlived its login deadline (tls: %s)' % tls
        time.sleep(0.2)
    assert time.time() - started > 1.5, 'closed before the login deadline'
    s.close()
    time.sleep(0.3)  # the probe's own session ends before the next round takes the slot
"#,
    );
    host.wait_for_line("the client did not log in in time");
    host.stop();
}

#[test]
fn an_over_long_line_during_a_transfer_gets_500_after_it() {
    let site = Site::new("ftp-longxfer");
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
s = socket.create_connection(('127.0.0.1', PORT), timeout=20); replies = s.makefile('rb')
assert replies.readline().startswith(b'220 ')
s.sendall(b'USER anonymous\r\n'); replies.readline()
s.sendall(b'PASS x\r\n'); assert replies.readline().startswith(b'230')
s.sendall(b'EPSV\r\n'); port = int(replies.readline().split(b'|')[3])
d = socket.create_connection(('127.0.0.1', port), timeout=20)
s.sendall(b'RETR big.bin\r\n'); assert replies.readline().startswith(b'150')
# The download waits for this client to read, so the line arrives while it runs; exactly the
# cap, so that the server reads all of it and closes cleanly.
s.sendall(b'A' * 4096); time.sleep(0.5)
received = 0
while True:
    chunk = d.recv(1 << 20)
    if not chunk: break
    received += len(chunk)
assert received == 50_000_000, received
assert replies.readline() == b'226 Transfer complete.\r\n'
assert replies.readline() == b'500 Command line too long.\r\n'
assert replies.read(1) == b'', 'the session goes on after an over-long line'
"#,
    );
    host.wait_for_line("anonymous downloaded /big.bin (50000000 bytes in ");
    host.stop();
}

#[test]
fn names_with_control_characters_never_reach_a_listing_raw() {
    let site = Site::new("ftp-names");
    std::fs::write(site.root().join("evil\r\n226 fake\r\nx"), "x").unwrap();
    std::fs::write(site.root().join("esc\x1b[31mred"), "x").unwrap();
    std::fs::create_dir(site.root().join("csi\u{9b}31mred")).unwrap();
    let latin1 = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"latin\x9b31m");
    std::fs::write(site.root().join(latin1), "x").unwrap();
    let (mut host, port) = site.serve(&[]);
    python(
        port,
        r#"
f = ftplib.FTP(); f.connect('127.0.0.1', PORT, timeout=20); f.login()
def raw(command):
    data = io.BytesIO(); f.retrbinary(command, data.write); return data.getvalue()
listing = raw('LIST')
assert b'evil??226 fake??x' in listing and b'esc?[31mred' in listing, listing
# C1 controls (CSI is U+009B, C2 9B in UTF-8; 9B alone in an 8-bit name) are escaped too.
assert b'csi?31mred' in listing and b'latin?31m' in listing and b'\x9b' not in listing, listing
assert all(line[:1] in b'-dl' for line in listing.split(b'\r\n') if line), listing
assert listing.count(b'\r\n') == listing.count(b'\n'), 'a bare line end in LIST'
for command in ('NLST', 'MLSD'):
    names = raw(command)
    assert b'a.txt' in names and b'evil' not in names and b'\x1b' not in names, (command, names)
    assert b'csi' not in names and b'latin' not in names, (command, names)
status = f.sendcmd('STAT /')
assert 'evil??226 fake??x' in status and '\x1b' not in status, status
assert 'csi?31mred' in status and '\x9b' not in status, status
mlst = f.sendcmd('MLST esc\x1b[31mred')
assert mlst.startswith('250') and 'esc?[31mred' in mlst and '\x1b' not in mlst, mlst
mlst = f.sendcmd('MLST csi\x9b31mred')
assert mlst.startswith('250') and 'csi?31mred' in mlst and '\x9b' not in mlst, mlst
assert f.sendcmd('CWD csi\x9b31mred') == '250 Directory changed to "/csi?31mred"'
assert f.sendcmd('PWD') == '257 "/csi?31mred" is the current directory.'
f.quit()
"#,
    );
    host.stop();
}
