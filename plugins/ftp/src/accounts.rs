//! Who may log in: the anonymous user (read-only unless `--write-anonymous`) and the users of
//! the password file (the `logins` crate, shared with the socks plugin), whose third field is
//! the user's home under the root.

use logins::{Login, LoginGuard, PasswordFile};
use plugin_api::tokio::time::Instant;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The accounts from `--password-file` and the anonymous user's name and rights.
#[derive(Debug)]
pub struct Accounts {
    anonymous: String,
    write_anonymous: bool,
    users: PasswordFile,
    /// Each user's root, when the password file's third field names one.
    homes: HashMap<String, PathBuf>,
}

impl Accounts {
    /// Reads the password file: `user:hash` or `user:hash:home` lines, `#` comments.
    pub fn load(
        anonymous: &str,
        write_anonymous: bool,
        password_file: Option<&Path>,
        allow_plaintext: bool,
        root: &Path,
    ) -> Result<Self, String> {
        let users = match password_file {
            Some(file) => PasswordFile::load(file, allow_plaintext)?,
            None => PasswordFile::default(),
        };
        let mut homes = HashMap::new();
        for (user, entry) in users.entries() {
            let at = |why: String| {
                let file = password_file.unwrap_or(Path::new("")).display();
                format!("{file} line {}: {why}", entry.line)
            };
            if user == anonymous {
                return Err(at(format!("invalid user name '{user}'")));
            }
            if let Some(home) = &entry.extra {
                homes.insert(user.to_string(), home_under(root, home).map_err(at)?);
            }
        }
        Ok(Self {
            anonymous: anonymous.to_string(),
            write_anonymous,
            users,
            homes,
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// A home directory given relative to the root, which must exist and stay inside it.
fn home_under(root: &Path, home: &str) -> Result<PathBuf, String> {
    let path = root
        .join(home.trim_start_matches('/'))
        .canonicalize()
        .map_err(|e| format!("home '{home}': {e}"))?;
    if !path.starts_with(root) || !path.is_dir() {
        return Err(format!("home '{home}' is not a directory inside the root"));
    }
    Ok(path)
}

/// A logged-in user and what they may do.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub read_only: bool,
    /// Their root, if not the served root: a directory under it.
    pub home: Option<PathBuf>,
}

impl Accounts {
    pub fn is_anonymous(&self, name: &[u8]) -> bool {
        name == self.anonymous.as_bytes()
    }

    /// Checks a user's credentials: the anonymous name with any password, anyone else with
    /// the right one, through `guard` (see `logins::LoginGuard::log_in`): the check waits for a
    /// turn no later than `deadline`, a banned address is refused unheard, a failure is counted
    /// and answered a fixed time after the check began, and an unknown user fails exactly like
    /// a wrong password, so names cannot be probed.
    pub async fn log_in(
        &self,
        name: &[u8],
        password: &[u8],
        ip: IpAddr,
        guard: &LoginGuard,
        deadline: Instant,
    ) -> Result<User, Login> {
        if self.is_anonymous(name) {
            return Ok(User {
                name: self.anonymous.clone(),
                read_only: !self.write_anonymous,
                home: None,
            });
        }
        match guard
            .log_in(ip, &self.users, name, password, deadline)
            .await
        {
            Login::Accepted => {
                // Accepted, so the name is a user's, and user names are UTF-8.
                let name = String::from_utf8_lossy(name).into_owned();
                Ok(User {
                    home: self.homes.get(&name).cloned(),
                    name,
                    read_only: false,
                })
            }
            refused => Err(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(lines: &str, plaintext: bool) -> Result<Accounts, String> {
        let dir = std::env::temp_dir().join(format!(
            "ftp-accounts-{}-{}",
            std::process::id(),
            lines.len()
        ));
        std::fs::create_dir_all(dir.join("alice")).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, lines).unwrap();
        let root = dir.canonicalize().unwrap();
        Accounts::load("anonymous", false, Some(&file), plaintext, &root)
    }

    fn log_in(accounts: &Accounts, name: &str, password: &str) -> Option<User> {
        let guard = LoginGuard::default();
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        plugin_api::tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(accounts.log_in(
                name.as_bytes(),
                password.as_bytes(),
                "127.0.0.1".parse().unwrap(),
                &guard,
                deadline,
            ))
            .ok()
    }

    #[test]
    fn users_log_in_with_their_home_and_anonymous_reads_only() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let accounts = accounts(&format!("# users\nalice:{hash}:alice\n"), false).unwrap();
        assert_eq!(accounts.user_count(), 1);
        let alice = log_in(&accounts, "alice", "s3cret").unwrap();
        assert!(!alice.read_only && alice.home.unwrap().ends_with("alice"));
        assert!(log_in(&accounts, "alice", "S3cret").is_none());
        assert!(log_in(&accounts, "mallory", "s3cret").is_none());
        assert!(log_in(&accounts, "anonymous", "").unwrap().read_only);
    }

    #[test]
    fn malformed_lines_and_escaping_homes_are_refused() {
        assert!(accounts("nobody\n", true)
            .unwrap_err()
            .contains("expected user:hash"));
        assert!(accounts("dave:x:../..\n", true)
            .unwrap_err()
            .contains("not a directory inside the root"));
        assert!(accounts("anonymous:x\n", true)
            .unwrap_err()
            .contains("invalid user name"));
    }
}
