//! `--uid`, `--gid` and `--chroot`: giving up root after the ports are bound.

use nix::unistd::{geteuid, getgid, getuid, initgroups, setgid, setgroups, setuid};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::path::Path;

/// The user and group to become.
#[derive(Debug, Clone)]
pub struct Identity {
    uid: Uid,
    gid: Gid,
    /// The user's name, for its supplementary groups; `None` for a uid with no passwd entry.
    user: Option<CString>,
}

/// Resolves `--uid`/`--gid` (names or numbers) now, while /etc/passwd is still reachable.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let euid = geteuid();
    if !euid.is_root() {
        let which = if user.is_some() { "--uid" } else { "--gid" };
        return Err(format!("{which} needs root, but host runs as uid {euid}"));
    }
    let account = user.map(lookup_user).transpose()?;
    let gid = match (group, &account) {
        (Some(group), _) => lookup_group(group)?,
        (None, Some((_, gid, _))) => *gid,
        (None, None) => getgid(),
    };
    Ok(Some(match account {
        Some((uid, _, user)) => Identity { uid, gid, user },
        None => Identity {
            uid: getuid(),
            gid,
            user: None,
        },
    }))
}

/// (uid, primary gid, name) for a user name or number.
fn lookup_user(user: &str) -> Result<(Uid, Gid, Option<CString>), String> {
    let lookup_failed = |e| format!("cannot look up the user '{user}': {e}");
    let entry = match user.parse::<u32>() {
        Ok(number) => {
            let uid = Uid::from_raw(number);
            match User::from_uid(uid).map_err(lookup_failed)? {
                Some(entry) => entry,
                // A number with no passwd entry is still a uid to run as.
                None => return Ok((uid, Gid::from_raw(number), None)),
            }
        }
        Err(_) => User::from_name(user)
            .map_err(lookup_failed)?
            .ok_or_else(|| format!("no user named '{user}'"))?,
    };
    let name = CString::new(entry.name).map_err(|_| format!("invalid user name '{user}'"))?;
    Ok((entry.uid, entry.gid, Some(name)))
}

fn lookup_group(group: &str) -> Result<Gid, String> {
    if let Ok(gid) = group.parse() {
        return Ok(Gid::from_raw(gid));
    }
    Group::from_name(group)
        .map_err(|e| format!("cannot look up the group '{group}': {e}"))?
        .map(|entry| entry.gid)
        .ok_or_else(|| format!("no group named '{group}'"))
}

/// Changes the root directory to `dir`.
pub fn chroot(dir: &Path) -> Result<(), String> {
    std::os::unix::fs::chroot(dir)
        .map_err(|e| format!("cannot chroot to {}: {e}", dir.display()))?;
    std::env::set_current_dir("/").map_err(|e| format!("cannot enter the chroot: {e}"))
}

impl Identity {
    /// Becomes this user and group, supplementary groups included. glibc applies each change to
    /// every thread of the process, plugin runtime threads included.
    pub fn assume(&self) -> Result<(), String> {
        match &self.user {
            Some(user) => initgroups(user, self.gid),
            None => setgroups(&[self.gid]),
        }
        .map_err(|e| format!("cannot set the supplementary groups: {e}"))?;
        setgid(self.gid).map_err(|e| format!("cannot switch to group {}: {e}", self.gid))?;
        setuid(self.uid).map_err(|e| format!("cannot switch to user {}: {e}", self.uid))
    }

    /// `uid N (name), gid M` for the log.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(user) => format!(
                "uid {} ({}), gid {}",
                self.uid,
                user.to_string_lossy(),
                self.gid
            ),
            None => format!("uid {}, gid {}", self.uid, self.gid),
        }
    }
}
