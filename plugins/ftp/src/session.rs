//! One FTP session: RFC 959's commands with FEAT/OPTS (RFC 2389), EPSV (RFC 2428), SIZE, MDTM,
//! REST STREAM, MLST and MLSD (RFC 3659), and AUTH TLS, PBSZ, PROT (RFC 2228, 4217), over one
//! control connection.
//!
//! The session reads one bounded command line at a time (see `control`), answers it, and for a
//! transfer runs the data connection while still reading the control connection, so that ABOR
//! works and a client that hangs up is noticed. Who may do what is decided here: nothing
//! before login but the commands that lead to it, no writes for read-only users, and with
//! `--require-tls` no login without TLS and no data connection without PROT P, whatever the
//! order of the commands (the check is made when a transfer starts, not when a port opens).

use crate::accounts::{Accounts, User};
use crate::command::Command;
use crate::control::{Control, Incoming};
use crate::listing::{Facts, Format, Style};
use crate::metrics::{Direction, Login, Metrics};
use crate::names;
use crate::passive::Passive;
use crate::transfer::{self, Record};
use crate::tree::{Placement, Tree};
use crate::vpath::VirtualPath;
use logins::LoginGuard;
use plugin_api::tokio::sync::mpsc;
use plugin_api::tokio::time::{timeout_at, Instant};
use plugin_api::tracing::{info, warn};
use plugin_api::{tokio, Shutdown, Stream, TlsConfig};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a transfer command waits for the client's data connection.
const DATA_PATIENCE: Duration = Duration::from_secs(10);

/// The reply to an address banned for its failed logins.
const BANNED: &str = "Too many failed logins from your address; try again later.";
/// Failed logins on one connection before it is closed (the guard also counts per address).
const MAX_FAILED_LOGINS: u32 = 3;

/// What every session shares.
pub struct Settings {
    pub root: PathBuf,
    pub tree: Tree,
    pub accounts: Accounts,
    pub guard: LoginGuard,
    pub passive_ports: RangeInclusive<u16>,
    pub idle_timeout: Duration,
    pub login_timeout: Duration,
    pub tls: Option<TlsConfig>,
    pub require_tls: bool,
    pub metrics: Metrics,
}

/// What the command loop does after a command.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// A logged-in user and the tree they see.
struct LoggedIn {
    user: User,
    tree: Tree,
}

/// What a data connection carries.
enum Work {
    Download {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
    Upload {
        file: std::fs::File,
    },
    Listing {
        path: VirtualPath,
        style: Style,
    },
}

/// How a transfer ended.
enum Ending {
    Done(io::Result<()>),
    Aborted,
    ControlLost,
}

pub struct Session {
    settings: std::sync::Arc<Settings>,
    client: IpAddr,
    /// The address the client reached: passive ports open there.
    local: IpAddr,
    pending_user: Option<Vec<u8>>,
    login: Option<LoggedIn>,
    failed_logins: u32,
    cwd: VirtualPath,
    /// PBSZ was accepted: RFC 4217 wants it before PROT.
    buffer_size_set: bool,
    /// PROT P: data connections are TLS.
    private: bool,
    passive: Option<Passive>,
    rest: u64,
    rename_from: Option<VirtualPath>,
    facts: Facts,
    /// What arrived while a transfer ran, answered after it.
    pending: Option<Incoming>,
}

impl Session {
    pub fn new(settings: std::sync::Arc<Settings>, peer: SocketAddr, local: IpAddr) -> Self {
        Self {
            settings,
            client: peer.ip().to_canonical(),
            local: local.to_canonical(),
            pending_user: None,
            login: None,
            failed_logins: 0,
            cwd: VirtualPath::root(),
            buffer_size_set: false,
            private: false,
            passive: None,
            rest: 0,
            rename_from: None,
            facts: Facts::default(),
            pending: None,
        }
    }

    /// Serves the session until the client quits, times out or misbehaves, or the server stops.
    pub async fn run(mut self, stream: Stream, shutdown: Shutdown) -> io::Result<()> {
        let served = self.serve(stream, &shutdown).await;
        self.log_out();
        served
    }

    async fn serve(&mut self, stream: Stream, shutdown: &Shutdown) -> io::Result<()> {
        let login_deadline = Instant::now() + self.settings.login_timeout;
        let mut control = Control::new(stream, self.settings.idle_timeout, Some(login_deadline));
        control.reply(220, "host ftp ready.").await?;
        loop {
            let incoming = match self.pending.take() {
                Some(incoming) => incoming,
                None => {
                    let (deadline, limit) = control.deadline();
                    let incoming = tokio::select! {
                        biased;
                        _ = shutdown.requested() => {
                            control.reply(421, "The server is shutting down.").await?;
                            break;
                        }
                        incoming = timeout_at(deadline, control.next_line()) => incoming,
                    };
                    match incoming {
                        Err(_) => {
                            control.reply(421, limit.reply()).await?;
                            break;
                        }
                        Ok(incoming) => incoming?,
                    }
                }
            };
            let line = match incoming {
                Incoming::Closed => return Ok(()),
                Incoming::TooLong => {
                    control.reply(500, "Command line too long.").await?;
                    break;
                }
                Incoming::Line(line) => line,
            };
            match self.dispatch(&mut control, Command::parse(&line)).await? {
                Flow::Continue => {}
                Flow::Close => break,
                Flow::StartTls => {
                    let tls = self.settings.tls.clone().expect("AUTH checked TLS");
                    control = control.upgrade(&tls).await?;
                }
            }
            // A transfer that was running when the stop began has now ended.
            if shutdown.is_requested() && self.pending.is_none() {
                control.reply(421, "The server is shutting down.").await?;
                break;
            }
        }
        control.close().await;
        Ok(())
    }

    fn log_out(&mut self) {
        if let Some(login) = self.login.take() {
            info!("{} logged out from {}", login.user.name, self.client);
        }
    }

    async fn dispatch(&mut self, control: &mut Control, command: Command) -> io::Result<Flow> {
        let arg = command.arg.as_slice();
        // Commands that need no login.
        match command.verb.as_str() {
            "USER" => return self.user(control, arg).await,
            "PASS" => return self.pass(control, arg).await,
            "AUTH" => return self.auth(control, &command.word()).await,
            "PBSZ" => return self.pbsz(control).await,
            "PROT" => return self.prot(control, &command.word()).await,
            "FEAT" => return self.feat(control).await,
            "OPTS" => return self.opts(control, &command.word()).await,
            "SYST" => return done(control.reply(215, "UNIX Type: L8").await),
            "NOOP" => return done(control.reply(200, "NOOP ok.").await),
            "HELP" => return done(help(control).await),
            "ACCT" => return done(control.reply(202, "ACCT is not needed here.").await),
            "QUIT" => {
                control.reply(221, "Goodbye.").await?;
                return Ok(Flow::Close);
            }
            "PORT" | "LPRT" => {
                // The server connecting where a client says is the FTP bounce attack.
                return done(
                    control
                        .reply(502, "Active mode is off: use PASV or EPSV.")
                        .await,
                );
            }
            "EPRT" => return done(control.reply(500, "Active mode is off: use EPSV.").await),
            "" => {
                return done(
                    control
                        .reply(500, "Syntax error, command unrecognized.")
                        .await,
                )
            }
            _ => {}
        }
        let Some(login) = &self.login else {
            let reply = match is_known(&command.verb) {
                true => (530, "Log in with USER and PASS first."),
                false => (500, "Unknown command."),
            };
            return done(control.reply(reply.0, reply.1).await);
        };
        let (tree, read_only) = (login.tree.clone(), login.user.read_only);
        let path = match self.cwd.resolve(arg) {
            Some(path) => path,
            None if takes_path(&command.verb) => {
                return done(control.reply(550, "No such file or directory.").await);
            }
            None => self.cwd.clone(),
        };
        let writes = matches!(
            command.verb.as_str(),
            "STOR" | "APPE" | "STOU" | "DELE" | "MKD" | "XMKD" | "RMD" | "XRMD" | "RNFR" | "RNTO"
        );
        if writes && read_only {
            return done(control.reply(550, "Permission denied.").await);
        }
        match command.verb.as_str() {
            "PWD" | "XPWD" => {
                let reply = [
                    quoted(&self.cwd.absolute()),
                    b" is the current directory.".to_vec(),
                ]
                .concat();
                control.reply(257, reply).await?;
            }
            "CWD" | "XCWD" => self.change_dir(control, path).await?,
            "CDUP" | "XCUP" => self.change_dir(control, self.cwd.parent()).await?,
            "TYPE" => match command.word().as_str() {
                "A" | "A N" => control.reply(200, "Type set to A.").await?,
                "I" | "L 8" => control.reply(200, "Type set to I.").await?,
                _ => {
                    control
                        .reply(504, "Only TYPE A and I are supported.")
                        .await?
                }
            },
            "MODE" => match command.word().as_str() {
                "S" => control.reply(200, "Mode set to S.").await?,
                _ => control.reply(504, "Only MODE S is supported.").await?,
            },
            "STRU" => match command.word().as_str() {
                "F" => control.reply(200, "Structure set to F.").await?,
                _ => control.reply(504, "Only STRU F is supported.").await?,
            },
            "ALLO" => control.reply(202, "ALLO is not needed here.").await?,
            "REST" => match command.word().parse::<u64>() {
                Ok(offset) => {
                    self.rest = offset;
                    let text = format!("Restarting at {offset}; send RETR, STOR or APPE.");
                    control.reply(350, text).await?;
                }
                Err(_) => control.reply(501, "REST needs a byte offset.").await?,
            },
            "ABOR" => {
                self.passive = None;
                control.reply(226, "No transfer to abort.").await?;
            }
            "PASV" => self.pasv(control).await?,
            "EPSV" => self.epsv(control, &command.word()).await?,
            "SIZE" => match tree.run(move |t| t.metadata(&path)).await {
                Ok(meta) if meta.is_file() => control.reply(213, meta.len().to_string()).await?,
                Ok(_) => control.reply(550, "Not a regular file.").await?,
                Err(e) => file_error(control, &e).await?,
            },
            "MDTM" => match tree.run(move |t| t.metadata(&path)).await {
                Ok(meta) => match meta.modified() {
                    Ok(time) => {
                        let stamp = crate::listing::timestamp(time.into_std());
                        control.reply(213, stamp).await?;
                    }
                    Err(e) => file_error(control, &e).await?,
                },
                Err(e) => file_error(control, &e).await?,
            },
            "MLST" => self.mlst(control, tree, arg, path, read_only).await?,
            "STAT" if arg.is_empty() => self.status(control).await?,
            "STAT" => self.stat_path(control, tree, path, read_only).await?,
            "DELE" => {
                let target = path.clone();
                match tree.run(move |t| t.remove_file(&target)).await {
                    Ok(()) => {
                        self.log_change("deleted", &path);
                        control.reply(250, "File deleted.").await?;
                    }
                    Err(e) => file_error(control, &e).await?,
                }
            }
            "MKD" | "XMKD" => {
                let target = path.clone();
                match tree.run(move |t| t.make_dir(&target)).await {
                    Ok(()) => {
                        self.log_change("made directory", &path);
                        let reply = [quoted(&path.absolute()), b" created.".to_vec()].concat();
                        control.reply(257, reply).await?;
                    }
                    Err(e) => file_error(control, &e).await?,
                }
            }
            "RMD" | "XRMD" => {
                let target = path.clone();
                match tree.run(move |t| t.remove_dir(&target)).await {
                    Ok(()) => {
                        self.log_change("removed directory", &path);
                        control.reply(250, "Directory removed.").await?;
                    }
                    Err(e) => file_error(control, &e).await?,
                }
            }
            "RNFR" => {
                let target = path.clone();
                match tree.run(move |t| t.describe(&target)).await {
                    Ok(_) => {
                        self.rename_from = Some(path);
                        control.reply(350, "Ready for RNTO.").await?;
                    }
                    Err(e) => file_error(control, &e).await?,
                }
            }
            "RNTO" => match self.rename_from.take() {
                None => control.reply(503, "Send RNFR first.").await?,
                Some(from) => {
                    let to = path.clone();
                    let source = from.clone();
                    match tree.run(move |t| t.rename(&source, &to)).await {
                        Ok(()) => {
                            let what = format!("renamed {} to", names::for_log(&from.absolute()));
                            self.log_change(&what, &path);
                            control.reply(250, "Renamed.").await?;
                        }
                        Err(e) => file_error(control, &e).await?,
                    }
                }
            },
            "RETR" | "STOR" | "APPE" | "STOU" | "LIST" | "NLST" | "MLSD" => {
                return self
                    .transfer(control, &command.verb, tree, arg, read_only)
                    .await;
            }
            "REIN" | "SMNT" | "SITE" | "LPSV" | "CCC" => {
                control.reply(502, "Command not implemented.").await?;
            }
            _ => control.reply(500, "Unknown command.").await?,
        }
        Ok(Flow::Continue)
    }

    async fn user(&mut self, control: &mut Control, name: &[u8]) -> io::Result<Flow> {
        if self.settings.require_tls && !control.is_tls() {
            return done(
                control
                    .reply(530, "TLS is required: send AUTH TLS first.")
                    .await,
            );
        }
        self.log_out();
        self.cwd = VirtualPath::root();
        self.pending_user = Some(name.to_vec());
        done(match self.settings.accounts.is_anonymous(name) {
            true => {
                control
                    .reply(
                        331,
                        "Anonymous login ok; send your e-mail address as password.",
                    )
                    .await
            }
            false => control.reply(331, "Password required.").await,
        })
    }

    async fn pass(&mut self, control: &mut Control, password: &[u8]) -> io::Result<Flow> {
        if self.settings.require_tls && !control.is_tls() {
            return done(
                control
                    .reply(530, "TLS is required: send AUTH TLS first.")
                    .await,
            );
        }
        let Some(name) = self.pending_user.take() else {
            return done(control.reply(503, "Send USER first.").await);
        };
        let settings = self.settings.clone();
        let (deadline, _) = control.deadline();
        let login = settings
            .accounts
            .log_in(&name, password, self.client, &settings.guard, deadline)
            .await;
        let user = match login {
            Ok(user) => user,
            Err(logins::Login::Banned) => {
                settings.metrics.login(Login::Banned);
                control.reply(421, BANNED).await?;
                return Ok(Flow::Close);
            }
            // The deadline passed while the password waited for its turn: the session ends
            // as it would have at the next read.
            Err(logins::Login::Late) => {
                control
                    .reply(421, "Not logged in in time; closing.")
                    .await?;
                return Ok(Flow::Close);
            }
            Err(_) => {
                self.failed_logins += 1;
                settings.metrics.login(Login::Failed);
                if settings.guard.is_banned(self.client) {
                    control.reply(421, BANNED).await?;
                    return Ok(Flow::Close);
                }
                control.reply(530, "Login incorrect.").await?;
                return Ok(match self.failed_logins >= MAX_FAILED_LOGINS {
                    true => Flow::Close,
                    false => Flow::Continue,
                });
            }
        };
        let tree = match &user.home {
            None => settings.tree.clone(),
            Some(home) => {
                let below = home.strip_prefix(&settings.root).map(|p| p.to_path_buf());
                let root = settings.tree.clone();
                match root
                    .run(move |t| t.subtree(&below.map_err(io::Error::other)?))
                    .await
                {
                    Ok(tree) => tree,
                    Err(e) => {
                        warn!("cannot open the home of {}: {e}", user.name);
                        return done(control.reply(530, "Cannot open your home directory.").await);
                    }
                }
            }
        };
        settings.metrics.login(Login::Accepted);
        info!("{} logged in from {}", user.name, self.client);
        self.login = Some(LoggedIn { user, tree });
        control.logged_in();
        done(control.reply(230, "Logged in.").await)
    }

    async fn auth(&mut self, control: &mut Control, mechanism: &str) -> io::Result<Flow> {
        if self.settings.tls.is_none() {
            return done(
                control
                    .reply(502, "TLS is not configured on this server.")
                    .await,
            );
        }
        if control.is_tls() {
            return done(control.reply(503, "Already using TLS.").await);
        }
        match mechanism {
            "TLS" | "TLS-C" | "SSL" => {
                control.reply(234, "AUTH TLS successful.").await?;
                Ok(Flow::StartTls)
            }
            _ => done(
                control
                    .reply(504, "Unknown security mechanism; use AUTH TLS.")
                    .await,
            ),
        }
    }

    async fn pbsz(&mut self, control: &mut Control) -> io::Result<Flow> {
        done(match control.is_tls() {
            true => {
                self.buffer_size_set = true;
                control.reply(200, "PBSZ=0").await
            }
            false => {
                control
                    .reply(
                        503,
                        "PBSZ needs a protected control connection: send AUTH TLS first.",
                    )
                    .await
            }
        })
    }

    async fn prot(&mut self, control: &mut Control, level: &str) -> io::Result<Flow> {
        if !control.is_tls() {
            return done(
                control
                    .reply(
                        503,
                        "PROT needs a protected control connection: send AUTH TLS first.",
                    )
                    .await,
            );
        }
        if !self.buffer_size_set {
            return done(control.reply(503, "Send PBSZ 0 before PROT.").await);
        }
        done(match level {
            "P" => {
                self.private = true;
                control.reply(200, "Protection level set to Private.").await
            }
            "C" if self.settings.require_tls => {
                control.reply(534, "Request denied for policy reasons: data connections must be protected (PROT P).").await
            }
            "C" => {
                self.private = false;
                control.reply(200, "Protection level set to Clear.").await
            }
            "S" | "E" => control.reply(536, "Requested PROT level not supported by mechanism.").await,
            _ => control.reply(504, "Unknown protection level.").await,
        })
    }

    async fn feat(&mut self, control: &mut Control) -> io::Result<Flow> {
        let mut features: Vec<String> = ["EPSV", "MDTM", "REST STREAM", "SIZE", "TVFS", "UTF8"]
            .into_iter()
            .map(String::from)
            .collect();
        features.push(self.facts.feature());
        if self.settings.tls.is_some() {
            features.extend(["AUTH TLS", "PBSZ", "PROT"].map(String::from));
        }
        features.sort();
        let lines: Vec<&[u8]> = features.iter().map(|f| f.as_bytes()).collect();
        done(control.reply_lines(211, "Features:", &lines, "End").await)
    }

    async fn opts(&mut self, control: &mut Control, option: &str) -> io::Result<Flow> {
        done(match option.split_once(' ') {
            _ if option == "UTF8 ON" || option == "UTF8" => {
                control.reply(200, "UTF8 is always on.").await
            }
            Some(("MLST", facts)) => {
                self.facts = Facts::select(facts);
                let text = format!("MLST OPTS {}", self.facts.enabled());
                control.reply(200, text).await
            }
            None if option == "MLST" => {
                self.facts = Facts::select("");
                control.reply(200, "MLST OPTS").await
            }
            _ => control.reply(501, "Option not understood.").await,
        })
    }

    async fn change_dir(&mut self, control: &mut Control, path: VirtualPath) -> io::Result<()> {
        let tree = self.tree();
        let target = path.clone();
        match tree.run(move |t| t.check_dir(&target)).await {
            Ok(()) => {
                let reply = [b"Directory changed to ".to_vec(), quoted(&path.absolute())].concat();
                self.cwd = path;
                control.reply(250, reply).await
            }
            Err(e) => file_error(control, &e).await,
        }
    }

    fn tree(&self) -> Tree {
        self.login.as_ref().expect("logged in").tree.clone()
    }

    async fn pasv(&mut self, control: &mut Control) -> io::Result<()> {
        let IpAddr::V4(ip) = self.local else {
            return control.reply(425, "PASV needs IPv4: use EPSV.").await;
        };
        match self.open_passive() {
            Ok(port) => {
                let [a, b, c, d] = ip.octets();
                let text = format!(
                    "Entering Passive Mode ({a},{b},{c},{d},{},{}).",
                    port >> 8,
                    port & 0xFF
                );
                control.reply(227, text).await
            }
            Err(e) => {
                control
                    .reply(425, format!("Cannot open a passive port: {e}."))
                    .await
            }
        }
    }

    async fn epsv(&mut self, control: &mut Control, argument: &str) -> io::Result<()> {
        match argument {
            "" | "1" | "2" => match self.open_passive() {
                Ok(port) => {
                    let text = format!("Entering Extended Passive Mode (|||{port}|).");
                    control.reply(229, text).await
                }
                Err(e) => {
                    control
                        .reply(425, format!("Cannot open a passive port: {e}."))
                        .await
                }
            },
            "ALL" => control.reply(200, "EPSV ALL ok.").await,
            _ => {
                control
                    .reply(522, "Network protocol not supported, use (1,2).")
                    .await
            }
        }
    }

    /// Opens a passive port for this session's next transfer, closing any earlier one.
    fn open_passive(&mut self) -> io::Result<u16> {
        self.passive = None;
        let passive = Passive::open(self.local, &self.settings.passive_ports, self.client)?;
        let port = passive.port();
        self.passive = Some(passive);
        Ok(port)
    }

    async fn mlst(
        &mut self,
        control: &mut Control,
        tree: Tree,
        arg: &[u8],
        path: VirtualPath,
        read_only: bool,
    ) -> io::Result<()> {
        let shown = names::escaped(&match arg.is_empty() {
            true => self.cwd.absolute(),
            false => arg.to_vec(),
        });
        match tree.run(move |t| t.describe(&path)).await {
            Ok(meta) => {
                let entry = [self.facts.of(&meta, read_only).as_bytes(), b" ", &shown].concat();
                let first = format!("Listing {}", String::from_utf8_lossy(&shown));
                control.reply_lines(250, &first, &[&entry], "End").await
            }
            Err(e) => file_error(control, &e).await,
        }
    }

    /// STAT without an argument: the session's state.
    async fn status(&mut self, control: &mut Control) -> io::Result<()> {
        let user = match &self.login {
            Some(login) => format!("Logged in as {}", login.user.name),
            None => "Not logged in".to_string(),
        };
        let lines = [
            format!("Connected from {}", self.client),
            user,
            format!(
                "Current directory: {}",
                names::for_log(&self.cwd.absolute())
            ),
            format!(
                "Control connection: {}",
                if control.is_tls() { "TLS" } else { "clear" }
            ),
            format!(
                "Data connections: {}",
                if self.private {
                    "private (TLS)"
                } else {
                    "clear"
                }
            ),
        ];
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        control
            .reply_lines(211, "host ftp status:", &lines, "End of status.")
            .await
    }

    /// STAT with a path: its LIST lines over the control connection.
    async fn stat_path(
        &mut self,
        control: &mut Control,
        tree: Tree,
        path: VirtualPath,
        read_only: bool,
    ) -> io::Result<()> {
        let style = Style {
            format: Format::List,
            facts: self.facts,
            read_only,
        };
        let target = path.clone();
        if let Err(e) = tree.run(move |t| t.metadata(&target)).await {
            return file_error(control, &e).await;
        }
        let shown = names::for_log(&path.absolute());
        let first = format!("213-Status of {shown}:\r\n");
        control.send(first.as_bytes()).await?;
        let (chunks, mut received) = mpsc::channel(2);
        let listing = tree.run(move |t| style.write(t, &path, |c| chunks.blocking_send(c).is_ok()));
        let forward = async {
            while let Some(chunk) = received.recv().await {
                control.send(&chunk).await?;
            }
            Ok::<_, io::Error>(())
        };
        let (listed, forwarded) = tokio::join!(listing, forward);
        forwarded?;
        if let Err(e) = listed {
            warn!("STAT of {shown}: {e}");
        }
        control.send(b"213 End of status.\r\n").await
    }

    fn log_change(&self, what: &str, path: &VirtualPath) {
        let name = self.login.as_ref().map_or("?", |l| l.user.name.as_str());
        info!(
            "{name} {what} {} from {}",
            names::for_log(&path.absolute()),
            self.client
        );
    }

    /// RETR, STOR, APPE, STOU, LIST, NLST and MLSD: checks, then the data connection.
    async fn transfer(
        &mut self,
        control: &mut Control,
        verb: &str,
        tree: Tree,
        arg: &[u8],
        read_only: bool,
    ) -> io::Result<Flow> {
        if self.settings.require_tls && !self.private {
            return done(
                control
                    .reply(
                        521,
                        "Data connection cannot be opened with this PROT setting: send PROT P.",
                    )
                    .await,
            );
        }
        let Some(passive) = self.passive.take() else {
            return done(control.reply(425, "Use PASV or EPSV first.").await);
        };
        let offset = std::mem::take(&mut self.rest);
        // Listing options such as `-la` are accepted and ignored, as vsftpd does.
        let listed = match (verb, arg.first()) {
            ("LIST" | "NLST", Some(b'-')) => {
                let end = arg.iter().position(|&b| b == b' ').unwrap_or(arg.len());
                arg[end..].strip_prefix(b" ").unwrap_or(&[])
            }
            _ => arg,
        };
        let path = match verb {
            "STOU" => Some(self.cwd.child(unique_name().as_ref())),
            _ => self.cwd.resolve(listed),
        };
        let Some(path) = path else {
            return done(control.reply(550, "No such file or directory.").await);
        };
        if matches!(verb, "RETR" | "STOR" | "APPE") && arg.is_empty() {
            return done(control.reply(501, "A file name is needed.").await);
        }
        let target = path.clone();
        let prepared = match verb {
            "RETR" => tree
                .run(move |t| t.open_read(&target))
                .await
                .map(|(file, len)| Work::Download { file, offset, len }),
            "STOR" | "APPE" | "STOU" => {
                let placement = match verb {
                    "APPE" => Placement::Append,
                    "STOU" => Placement::New,
                    _ if offset > 0 => Placement::At(offset),
                    _ => Placement::Replace,
                };
                tree.run(move |t| t.open_write(&target, placement))
                    .await
                    .map(|file| Work::Upload { file })
            }
            _ => {
                let format = match verb {
                    "LIST" => Format::List,
                    "NLST" => Format::Names,
                    _ => Format::Facts,
                };
                let is_mlsd = format == Format::Facts;
                tree.run(move |t| match t.metadata(&target)? {
                    meta if is_mlsd && !meta.is_dir() => Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "not a directory",
                    )),
                    meta if meta.is_dir() => t.entries(&target).map(drop),
                    _ => Ok(()),
                })
                .await
                .map(|()| Work::Listing {
                    path: path.clone(),
                    style: Style {
                        format,
                        facts: self.facts,
                        read_only,
                    },
                })
            }
        };
        let work = match prepared {
            Ok(work) => work,
            Err(e) => {
                file_error(control, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        let opening = match verb {
            "STOU" => format!("FILE: {}", names::for_log(&target_name(&self.cwd, &path))),
            _ => "Opening data connection.".to_string(),
        };
        control.reply(150, opening).await?;
        let data = match passive.connection(DATA_PATIENCE).await {
            Ok(data) => data,
            Err(e) => {
                return done(
                    control
                        .reply(425, format!("Cannot open the data connection: {e}."))
                        .await,
                )
            }
        };
        let data = match (self.private, &self.settings.tls) {
            (true, Some(tls)) => match tls.accept(data).await {
                Ok(data) => data,
                Err(e) => {
                    return done(
                        control
                            .reply(522, format!("TLS on the data connection failed: {e}."))
                            .await,
                    );
                }
            },
            _ => Stream::from(data),
        };
        let record = match &work {
            Work::Listing { .. } => None,
            Work::Download { .. } => Some(self.record(Direction::Download, &path)),
            Work::Upload { .. } => Some(self.record(Direction::Upload, &path)),
        };
        let progress = record
            .as_ref()
            .map_or_else(Default::default, |r| r.bytes.clone());
        let ending = self
            .watch(
                control,
                move_bytes(data, work, tree, progress, self.settings.idle_timeout),
            )
            .await;
        let abort = |record: Option<Record>, why: &str| {
            if let Some(record) = record {
                record.aborted(why);
            }
        };
        match ending {
            Ending::Done(Ok(())) => {
                if let Some(record) = record {
                    record.completed();
                }
                done(control.reply(226, "Transfer complete.").await)
            }
            Ending::Done(Err(e)) => {
                abort(record, &e.to_string());
                done(control.reply(426, format!("Transfer aborted: {e}.")).await)
            }
            Ending::Aborted => {
                abort(record, "ABOR");
                control.reply(426, "Transfer aborted.").await?;
                done(control.reply(226, "ABOR successful.").await)
            }
            Ending::ControlLost => {
                abort(record, "the client closed the control connection");
                Ok(Flow::Close)
            }
        }
    }

    fn record(&self, direction: Direction, path: &VirtualPath) -> Record {
        let name = self.login.as_ref().map_or("?", |l| l.user.name.as_str());
        let metrics = &self.settings.metrics;
        Record::new(name, direction, path.absolute(), self.client, metrics)
    }

    /// Runs a transfer while reading the control connection: ABOR ends it, a hang-up ends it
    /// and the session, and anything else (another command, an over-long line) is answered
    /// when it is over, as it would have been without a transfer.
    async fn watch(
        &mut self,
        control: &mut Control,
        work: impl std::future::Future<Output = io::Result<()>>,
    ) -> Ending {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ending::Done(done),
                incoming = control.next_line(), if self.pending.is_none() => match incoming {
                    Ok(Incoming::Line(line)) if Command::parse(&line).verb == "ABOR" => {
                        return Ending::Aborted;
                    }
                    Ok(Incoming::Closed) | Err(_) => return Ending::ControlLost,
                    Ok(incoming) => self.pending = Some(incoming),
                },
            }
        }
    }
}

/// The data connection's side of a transfer, ending with the connection closed properly.
async fn move_bytes(
    mut data: Stream,
    work: Work,
    tree: Tree,
    progress: transfer::Progress,
    stall: Duration,
) -> io::Result<()> {
    match work {
        Work::Download { file, offset, len } => {
            transfer::send_file(&mut data, file, offset, len, &progress, stall).await?
        }
        Work::Upload { file } => {
            transfer::receive_file(&mut data, file, &progress, stall).await?;
            // The file is stored; a client already gone cannot spoil that.
            let _ = transfer::finish(data, stall).await;
            return Ok(());
        }
        Work::Listing { path, style } => {
            let (chunks, received) = mpsc::channel(2);
            let listing =
                tree.run(move |t| style.write(t, &path, |c| chunks.blocking_send(c).is_ok()));
            let sending = transfer::send_chunks(&mut data, received, &progress, stall);
            let (listed, sent) = tokio::join!(listing, sending);
            sent?;
            listed?;
        }
    }
    transfer::finish(data, stall).await
}

fn done(written: io::Result<()>) -> io::Result<Flow> {
    written.map(|()| Flow::Continue)
}

/// A path in double quotes, inner quotes doubled (RFC 959's 257 replies), control characters
/// escaped.
fn quoted(path: &[u8]) -> Vec<u8> {
    let mut text = vec![b'"'];
    for &byte in &names::escaped(path) {
        text.push(byte);
        if byte == b'"' {
            text.push(b'"');
        }
    }
    text.push(b'"');
    text
}

/// The name STOU stores under: unique within the process, unlikely to exist (and if it does,
/// the upload is refused, never overwrites it).
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "stou.{}.{}.{}",
        now.as_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `path` relative to `cwd` when it is inside it (STOU's name), absolute otherwise.
fn target_name(cwd: &VirtualPath, path: &VirtualPath) -> Vec<u8> {
    match path.parent() == *cwd {
        true => path.name().map_or_else(Vec::new, |n| {
            std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec()
        }),
        false => path.absolute(),
    }
}

/// The reply for a failed filesystem operation.
async fn file_error(control: &mut Control, error: &io::Error) -> io::Result<()> {
    use io::ErrorKind::*;
    let (code, text) = match error.kind() {
        NotFound => (550, "No such file or directory."),
        PermissionDenied => (550, "Permission denied."),
        AlreadyExists => (550, "That name already exists."),
        DirectoryNotEmpty => (550, "Directory not empty."),
        NotADirectory => (550, "Not a directory."),
        IsADirectory => (550, "Is a directory."),
        InvalidInput => (550, "Not a regular file."),
        StorageFull | QuotaExceeded => (452, "Insufficient storage space."),
        _ => (550, "Requested action not taken."),
    };
    control.reply(code, text).await
}

/// Whether the argument of `verb` is a path.
fn takes_path(verb: &str) -> bool {
    matches!(
        verb,
        "CWD"
            | "XCWD"
            | "SIZE"
            | "MDTM"
            | "MLST"
            | "STAT"
            | "DELE"
            | "MKD"
            | "XMKD"
            | "RMD"
            | "XRMD"
            | "RNFR"
            | "RNTO"
            | "RETR"
            | "STOR"
            | "APPE"
            | "LIST"
            | "NLST"
            | "MLSD"
    )
}

fn is_known(verb: &str) -> bool {
    COMMANDS.split(' ').any(|known| known == verb)
}

/// Every command this server answers, for HELP and for telling "log in first" from "unknown".
const COMMANDS: &str = "ABOR ACCT ALLO APPE AUTH CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM \
    MKD MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REST RETR RMD RNFR RNTO \
    SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD";

async fn help(control: &mut Control) -> io::Result<()> {
    control
        .reply_lines(
            214,
            "The following commands are recognized:",
            &[COMMANDS.as_bytes()],
            "Help OK.",
        )
        .await
}
