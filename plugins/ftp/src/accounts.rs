//! Who may log in: the anonymous user (read-only unless `--write-anonymous`) and the users of
//! the password file, whose passwords are bcrypt or argon2 hashes.
//!
//! libunftp's stock anonymous authenticator accepts every user name with any password; this one
//! accepts only the configured anonymous name without a password, and everyone else only with
//! the right one.

use async_trait::async_trait;
use logins::{LoginGuard, PasswordFile};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

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

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct FtpUser {
    pub name: String,
    pub read_only: bool,
    home: Option<PathBuf>,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl UserDetail for FtpUser {
    fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }
}

/// Checks credentials, with a delay after each failure and a ban on addresses that keep failing.
#[derive(Debug)]
pub struct FtpAuthenticator {
    pub accounts: Arc<Accounts>,
    pub guard: Arc<LoginGuard>,
}

#[async_trait]
impl Authenticator for FtpAuthenticator {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let ip = creds.source_ip;
        if self.guard.is_banned(ip) {
            return Err(AuthenticationError::IpDisallowed);
        }
        let accepted = if username == self.accounts.anonymous {
            true
        } else if let Some(password) = &creds.password {
            self.accounts
                .users
                .verify(username, password.as_bytes())
                .await
        } else {
            false
        };
        if accepted {
            return Ok(Principal {
                username: username.to_string(),
            });
        }
        self.guard.failed(ip, username).await;
        // An unknown user fails exactly like a wrong password, so names cannot be probed.
        Err(AuthenticationError::BadPassword)
    }
}

/// Turns a logged-in principal into an [`FtpUser`] with its rights.
#[derive(Debug)]
pub struct FtpUsers {
    pub accounts: Arc<Accounts>,
}

#[async_trait]
impl UserDetailProvider for FtpUsers {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let name = principal.username.clone();
        if name == self.accounts.anonymous {
            return Ok(FtpUser {
                name,
                read_only: !self.accounts.write_anonymous,
                home: None,
            });
        }
        if self.accounts.users.get(&name).is_none() {
            return Err(UserDetailError::UserNotFound { username: name });
        }
        Ok(FtpUser {
            home: self.accounts.homes.get(&name).cloned(),
            name,
            read_only: false,
        })
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
    fn homes_are_directories_inside_the_root() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let accounts = accounts(
            &format!(
                "alice:{hash}:alice
bob:{hash}
"
            ),
            false,
        )
        .unwrap();
        assert_eq!(accounts.user_count(), 2);
        assert!(accounts.homes["alice"].ends_with("alice"));
        assert!(!accounts.homes.contains_key("bob"));
    }

    #[test]
    fn malformed_lines_and_escaping_homes_are_refused() {
        assert!(accounts("nobody\n", true)
            .unwrap_err()
            .contains("line 1: expected user:hash"));
        assert!(accounts("dave:x:../..\n", true)
            .unwrap_err()
            .contains("not a directory inside the root"));
        assert!(accounts("anonymous:x\n", true)
            .unwrap_err()
            .contains("invalid user name"));
    }
}
