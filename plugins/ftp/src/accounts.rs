//! Who may log in: the anonymous user (read-only unless `--write-anonymous`) and the users of
//! the password file, whose passwords are bcrypt or argon2 hashes.

use crate::login_guard::LoginGuard;
use plugin_api::files;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How a password is checked.
#[derive(Debug, Clone)]
enum Secret {
    /// A bcrypt (`$2b$…`) or argon2 (`$argon2id$…`) hash in PHC form.
    Hash(String),
    /// Allowed only with `--allow-plaintext-passwords`.
    Plain(String),
}

impl Secret {
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Self::Hash(hash) if hash.starts_with("$argon2") => {
                use argon2::password_hash::{PasswordHash, PasswordVerifier};
                PasswordHash::new(hash).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
            Self::Hash(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Plain(plain) => constant_time_eq(plain.as_bytes(), password),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
struct Account {
    secret: Secret,
    /// The user's home under the root, if the password file names one.
    home: Option<PathBuf>,
}

/// The accounts from `--password-file` and the anonymous user's name and rights.
#[derive(Debug)]
pub struct Accounts {
    anonymous: String,
    write_anonymous: bool,
    users: HashMap<String, Account>,
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
        let mut users = HashMap::new();
        if let Some(file) = password_file {
            let cannot_read = |e| format!("cannot read the password file {}: {e}", file.display());
            let bytes = files::read_regular(file, crate::CONFIG_FILE_LIMIT).map_err(cannot_read)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                cannot_read(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "it is not UTF-8 text",
                ))
            })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let at = || format!("{} line {}", file.display(), number + 1);
                let mut fields = line.splitn(3, ':');
                let (Some(user), Some(secret)) = (fields.next(), fields.next()) else {
                    return Err(format!("{}: expected user:hash", at()));
                };
                if user.is_empty() || user == anonymous {
                    return Err(format!("{}: invalid user name '{user}'", at()));
                }
                let secret = if secret.starts_with("$2") || secret.starts_with("$argon2") {
                    Secret::Hash(secret.to_string())
                } else if allow_plaintext {
                    Secret::Plain(secret.to_string())
                } else {
                    return Err(format!(
                        "{}: the password of '{user}' is not a bcrypt or argon2 hash (plain-text passwords need --allow-plaintext-passwords)",
                        at()
                    ));
                };
                let home = fields
                    .next()
                    .filter(|h| !h.is_empty())
                    .map(|h| home_under(root, h))
                    .transpose()
                    .map_err(|e| format!("{}: {e}", at()))?;
                users.insert(user.to_string(), Account { secret, home });
            }
        }
        Ok(Self {
            anonymous: anonymous.to_string(),
            write_anonymous,
            users,
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
    /// the right one. A failure is recorded by `guard`, which makes the caller wait and bans an
    /// address that keeps failing; an unknown user fails exactly like a wrong password, so names
    /// cannot be probed.
    pub async fn log_in(
        &self,
        name: &[u8],
        password: &[u8],
        ip: IpAddr,
        guard: &LoginGuard,
    ) -> Option<User> {
        if self.is_anonymous(name) {
            return Some(User {
                name: self.anonymous.clone(),
                read_only: !self.write_anonymous,
                home: None,
            });
        }
        let account = std::str::from_utf8(name)
            .ok()
            .and_then(|name| Some((name, self.users.get(name)?)));
        if let Some((name, account)) = account {
            // Hashing is deliberately slow: keep it off the async worker threads.
            let (secret, password) = (account.secret.clone(), password.to_vec());
            let matches =
                plugin_api::tokio::task::spawn_blocking(move || secret.matches(&password))
                    .await
                    .unwrap_or(false);
            if matches {
                return Some(User {
                    name: name.to_string(),
                    read_only: false,
                    home: account.home.clone(),
                });
            }
        }
        guard.failed(ip, &crate::names::for_log(name)).await;
        None
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

    #[test]
    fn bcrypt_and_argon2_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let argon_hash = argon2::Argon2::default()
            .hash_password(b"hunter2", &salt)
            .unwrap()
            .to_string();
        let accounts = accounts(
            &format!("# users\nalice:{bcrypt_hash}:alice\nbob:{argon_hash}\n"),
            false,
        )
        .unwrap();
        assert_eq!(accounts.user_count(), 2);
        let alice = &accounts.users["alice"];
        assert!(alice.secret.matches(b"s3cret") && !alice.secret.matches(b"S3cret"));
        assert!(alice.home.as_ref().unwrap().ends_with("alice"));
        let bob = &accounts.users["bob"];
        assert!(bob.secret.matches(b"hunter2") && !bob.secret.matches(b"hunter3"));
    }

    #[test]
    fn plain_text_passwords_need_the_flag() {
        let error = accounts("carol:letmein\n", false).unwrap_err();
        assert!(
            error.contains("line 1: the password of 'carol' is not a bcrypt or argon2 hash"),
            "{error}"
        );
        let accounts = accounts("carol:letmein\n", true).unwrap();
        assert!(accounts.users["carol"].secret.matches(b"letmein"));
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
