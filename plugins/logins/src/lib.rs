//! Logging users in, the same way in every plugin that does: a password file of bcrypt or argon2
//! hashes ([`PasswordFile`]) and a guard against password guessing ([`LoginGuard`]).

mod guard;
mod password_file;
mod turn;

pub use guard::{Login, LoginGuard};
pub use password_file::{Entry, PasswordFile};
