//! `--uid`, `--gid` and `--chroot`: giving up root after the ports are bound.

use super::os_error;
use std::ffi::{CStr, CString};
use std::path::Path;

/// The user and group to become.
#[derive(Debug, Clone)]
pub struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// The user's name, for its supplementary groups; `None` for a uid with no passwd entry.
    user: Option<CString>,
}

/// Resolves `--uid`/`--gid` (names or numbers) now, while /etc/passwd is still reachable.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        let which = if user.is_some() { "--uid" } else { "--gid" };
        return Err(format!("{which} needs root, but host runs as uid {euid}"));
    }
    let account = user.map(lookup_user).transpose()?;
    let gid = match (group, &account) {
        (Some(group), _) => lookup_group(group)?,
        (None, Some((_, gid, _))) => *gid,
        // SAFETY: getgid has no preconditions.
        (None, None) => unsafe { libc::getgid() },
    };
    Ok(Some(match account {
        Some((uid, _, user)) => Identity { uid, gid, user },
        // SAFETY: getuid has no preconditions.
        None => Identity {
            uid: unsafe { libc::getuid() },
            gid,
            user: None,
        },
    }))
}

/// (uid, primary gid, name) for a user name or number.
fn lookup_user(user: &str) -> Result<(libc::uid_t, libc::gid_t, Option<CString>), String> {
    let name = CString::new(user).map_err(|_| format!("invalid user name '{user}'"))?;
    // SAFETY: getpwnam/getpwuid return NULL or a pointer to static data, read at once here,
    // before any other thread could call them.
    unsafe {
        let entry = match user.parse::<libc::uid_t>() {
            Ok(uid) => {
                let entry = libc::getpwuid(uid);
                if entry.is_null() {
                    return Ok((uid, uid, None));
                }
                entry
            }
            Err(_) => libc::getpwnam(name.as_ptr()),
        };
        if entry.is_null() {
            return Err(format!("no user named '{user}'"));
        }
        let entry = &*entry;
        Ok((
            entry.pw_uid,
            entry.pw_gid,
            Some(CStr::from_ptr(entry.pw_name).to_owned()),
        ))
    }
}

fn lookup_group(group: &str) -> Result<libc::gid_t, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| format!("invalid group name '{group}'"))?;
    // SAFETY: getgrnam returns NULL or a pointer to static data, read at once.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(format!("no group named '{group}'"));
    }
    // SAFETY: non-null, checked above.
    Ok(unsafe { (*entry).gr_gid })
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
        // SAFETY: plain system calls with valid arguments; `user` is NUL-terminated.
        unsafe {
            let groups_set = match &self.user {
                Some(user) => libc::initgroups(user.as_ptr(), self.gid),
                None => libc::setgroups(1, &self.gid),
            };
            if groups_set != 0 {
                return Err(format!(
                    "cannot set the supplementary groups: {}",
                    os_error()
                ));
            }
            if libc::setgid(self.gid) != 0 {
                return Err(format!(
                    "cannot switch to group {}: {}",
                    self.gid,
                    os_error()
                ));
            }
            if libc::setuid(self.uid) != 0 {
                return Err(format!(
                    "cannot switch to user {}: {}",
                    self.uid,
                    os_error()
                ));
            }
        }
        Ok(())
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
