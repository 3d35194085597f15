//! The password file: one `user:hash` or `user:hash:extra` line per user, `#` comments. Hashes
//! are bcrypt (`$2b$…`, as `htpasswd -nbBC 12 user pw` writes) or argon2 (`$argon2id$…`, PHC
//! form); plain-text passwords only when the operator allows them. What `extra` means is the
//! plugin's business (the ftp plugin's home directory).

use crate::turn::{Priority, Turn};
use argon2::Block;
use plugin_api::{files, tokio};
use std::collections::HashMap;
use std::path::Path;

/// The largest password file read: far more than any real one, small enough to read at once.
const MAX_FILE_BYTES: u64 = files::MIB;

/// How a password is checked.
#[derive(Debug, Clone)]
enum Secret {
    /// A bcrypt or argon2 hash.
    Hash(String),
    /// Allowed only when the plugin's operator says so.
    Plain(String),
}

impl Secret {
    /// Deliberately slow for hashes: call it off the async worker threads, in a [`Turn`].
    fn matches(&self, password: &[u8], turn: &mut Turn) -> bool {
        match self {
            Self::Hash(hash) if hash.starts_with("$argon2") => {
                argon2_matches(hash, password, &mut turn.memory).unwrap_or(false)
            }
            Self::Hash(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Plain(plain) => constant_time_eq(plain.as_bytes(), password),
        }
    }
}

/// What argon2's `verify_password` does, in `memory` (grown as the hash needs) rather than in
/// memory allocated for the check.
fn argon2_matches(hash: &str, password: &[u8], memory: &mut Vec<Block>) -> Option<bool> {
    use argon2::password_hash::{Output, PasswordHash, Salt};
    use argon2::{Algorithm, Argon2, Params, Version};
    let parsed = PasswordHash::new(hash).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = (parsed.version)
        .map_or(Ok(Version::default()), Version::try_from)
        .ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt = [0; Salt::MAX_LENGTH];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut computed = vec![0; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut computed, &mut memory[..blocks])
        .ok()?;
    // Output's comparison takes the same time wherever the outputs differ.
    Some(Output::new(&computed).ok()? == expected)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// One user's line.
#[derive(Debug, Clone)]
pub struct Entry {
    secret: Secret,
    /// The third field, if the line has a non-empty one.
    pub extra: Option<String>,
    /// Where in the file the user is, for the plugin's own error messages.
    pub line: usize,
}

/// The users of a password file.
#[derive(Debug, Default)]
pub struct PasswordFile {
    users: HashMap<String, Entry>,
}

impl PasswordFile {
    /// Reads and checks `path`; an error names the file and the line.
    pub fn load(path: &Path, allow_plaintext: bool) -> Result<Self, String> {
        let text = read_password_file(path)?;
        Self::parse(&text, allow_plaintext)
            .map_err(|(line, why)| format!("{} line {line}: {why}", path.display()))
    }

    pub(crate) fn parse(text: &str, allow_plaintext: bool) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let (Some(user), Some(secret)) = (fields.next(), fields.next()) else {
                return Err((number, "expected user:hash".into()));
            };
            if user.is_empty() {
                return Err((number, "the user name is empty".into()));
            }
            let secret = if secret.starts_with("$2") || secret.starts_with("$argon2") {
                Secret::Hash(secret.to_string())
            } else if allow_plaintext {
                Secret::Plain(secret.to_string())
            } else {
                return Err((number, format!("the password of '{user}' is not a bcrypt or argon2 hash (plain-text passwords need --allow-plaintext-passwords)")));
            };
            let extra = fields.next().filter(|e| !e.is_empty()).map(str::to_string);
            let entry = Entry {
                secret,
                extra,
                line: number,
            };
            if users.insert(user.to_string(), entry).is_some() {
                return Err((number, format!("'{user}' is listed twice")));
            }
        }
        Ok(Self { users })
    }

    /// Every user and their line.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.users
            .iter()
            .map(|(user, entry)| (user.as_str(), entry))
    }

    /// The line of `user`, if listed.
    pub fn get(&self, user: &str) -> Option<&Entry> {
        self.users.get(user)
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s, checked on a blocking thread (hashing is slow on
    /// purpose) once a [`Turn`] is free. An unknown user costs a hash from the file too, so
    /// the time taken does not tell which user names exist as long as the file has one kind of
    /// hash; [`LoginGuard::log_in`](crate::LoginGuard::log_in) also hides the difference
    /// between kinds.
    pub async fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.verify_in_turn(Turn::wait(Priority::Fresh).await, user, password)
            .await
    }

    pub(crate) async fn verify_in_turn(&self, turn: Turn, user: &str, password: &[u8]) -> bool {
        let (secret, known) = match (self.users.get(user), self.users.values().next()) {
            (Some(entry), _) => (entry.secret.clone(), true),
            (None, Some(any)) => (any.secret.clone(), false),
            (None, None) => return false,
        };
        let password = password.to_vec();
        // The turn goes with the hashing: a caller that gives up waiting (its client's deadline)
        // cannot stop the thread, and the memory stays taken until it is done.
        let mut turn = turn;
        let matches = tokio::task::spawn_blocking(move || secret.matches(&password, &mut turn))
            .await
            .unwrap_or(false);
        known && matches
    }
}

/// Reads the password file through the kit's file policy: a regular file of at most
/// [`MAX_FILE_BYTES`], opened without blocking (a FIFO would otherwise wait for a writer).
fn read_password_file(path: &Path) -> Result<String, String> {
    let cannot = |why: String| format!("cannot read the password file {}: {why}", path.display());
    let bytes = files::read_regular(path, MAX_FILE_BYTES).map_err(|e| cannot(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(file: &PasswordFile, user: &str, password: &str) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(file.verify(user, password.as_bytes()))
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
        let small = argon2::Params::new(1024, 1, 2, Some(16)).unwrap();
        let argon2i_hash =
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x10, small)
                .hash_password(b"hunter3", &salt)
                .unwrap()
                .to_string();
        let text =
            format!("# users\nalice:{bcrypt_hash}:alice\nbob:{argon_hash}\ndave:{argon2i_hash}\n");
        let file = PasswordFile::parse(&text, false).unwrap();
        assert_eq!(file.len(), 3);
        assert!(verify(&file, "alice", "s3cret") && !verify(&file, "alice", "S3cret"));
        assert_eq!(file.get("alice").unwrap().extra.as_deref(), Some("alice"));
        assert_eq!(file.get("alice").unwrap().line, 2);
        assert!(verify(&file, "bob", "hunter2") && !verify(&file, "bob", "hunter3"));
        assert!(verify(&file, "dave", "hunter3") && !verify(&file, "dave", "hunter2"));
        assert!(!verify(&file, "carol", "s3cret"));
    }

    #[test]
    fn plain_text_passwords_need_the_flag() {
        let (line, error) = PasswordFile::parse("carol:letmein\n", false).unwrap_err();
        assert_eq!(line, 1);
        assert!(error.contains("the password of 'carol' is not a bcrypt or argon2 hash"));
        let file = PasswordFile::parse("carol:letmein\n", true).unwrap();
        assert!(verify(&file, "carol", "letmein") && !verify(&file, "carol", "letmeout"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let error = |text| PasswordFile::parse(text, true).unwrap_err();
        assert_eq!(
            error("# c\nnobody\n"),
            (2, "expected user:hash".to_string())
        );
        assert_eq!(error(":x\n").1, "the user name is empty");
        assert_eq!(error("a:x\na:y\n"), (2, "'a' is listed twice".to_string()));
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("logins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let error = PasswordFile::load(&dir, false).unwrap_err();
        assert!(error.ends_with("not a regular file"), "{error}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let error = PasswordFile::load(&big, false).unwrap_err();
        assert!(error.contains("larger than"), "{error}");
        let fifo = dir.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        let error = PasswordFile::load(&fifo, false).unwrap_err();
        assert!(error.ends_with("not a regular file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
