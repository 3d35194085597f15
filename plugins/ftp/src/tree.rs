//! The directory tree a session sees: the root (or the user's home), opened once with cap-std.
//!
//! Every operation goes through the directory handle, so no path, `..` or symlink reaches
//! outside it (cap-std resolves each component beneath the handle and refuses anything that
//! would leave, with `openat2(RESOLVE_BENEATH)` where the kernel has it). The calls block; the
//! session runs them with [`Tree::run`] on tokio's blocking threads.

use crate::vpath::VirtualPath;
use cap_std::fs::{Dir, File, Metadata, OpenOptions, OpenOptionsExt};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Where an upload's bytes go in its file.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    /// A new file, or the old one emptied (`STOR`).
    Replace,
    /// At this offset, keeping what comes before (`REST` then `STOR`).
    At(u64),
    /// After the end (`APPE`).
    Append,
    /// A new file only: fails if the name exists (`STOU`).
    New,
}

/// A directory handle shared by the tasks of one session.
#[derive(Clone, Debug)]
pub struct Tree(Arc<Dir>);

impl Tree {
    /// Opens the served root. Runs before privileges are dropped, with the host's ambient
    /// authority; everything after that goes through the handle.
    pub fn open(root: &Path) -> io::Result<Self> {
        Dir::open_ambient_dir(root, cap_std::ambient_authority()).map(|dir| Self(Arc::new(dir)))
    }

    /// The directory `relative` below this one, as a tree of its own (a user's home).
    pub fn subtree(&self, relative: &Path) -> io::Result<Self> {
        self.0.open_dir(relative).map(|dir| Self(Arc::new(dir)))
    }

    /// Runs blocking filesystem work off the async threads.
    pub async fn run<T, F>(&self, work: F) -> io::Result<T>
    where
        F: FnOnce(&Tree) -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let tree = self.clone();
        plugin_api::tokio::task::spawn_blocking(move || work(&tree))
            .await
            .map_err(io::Error::other)?
    }

    /// What `path` is, following symlinks that stay inside.
    pub fn metadata(&self, path: &VirtualPath) -> io::Result<Metadata> {
        self.0.metadata(path.relative())
    }

    /// Whether `path` is a directory the session may change into.
    pub fn check_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.0.open_dir(path.relative()).map(drop)
    }

    /// Opens a regular file for reading, with its length. Opened non-blocking, so a FIFO
    /// cannot hang the thread, and refused unless it is a regular file.
    pub fn open_read(&self, path: &VirtualPath) -> io::Result<(std::fs::File, u64)> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc_nonblock());
        let file = self.0.open_with(path.relative(), &options)?;
        let len = regular(&file)?;
        Ok((file.into_std(), len))
    }

    /// Opens a file for an upload, placed as asked.
    pub fn open_write(
        &self,
        path: &VirtualPath,
        placement: Placement,
    ) -> io::Result<std::fs::File> {
        let mut options = OpenOptions::new();
        options.write(true).custom_flags(libc_nonblock());
        match placement {
            Placement::Replace => options.create(true).truncate(true),
            Placement::At(_) => options.create(true),
            Placement::Append => options.create(true).append(true),
            Placement::New => options.create_new(true),
        };
        let file = self.0.open_with(path.relative(), &options)?;
        regular(&file)?;
        let mut file = file.into_std();
        if let Placement::At(offset) = placement {
            use std::io::Seek;
            file.set_len(offset)?;
            file.seek(io::SeekFrom::Start(offset))?;
        }
        Ok(file)
    }

    pub fn make_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.0.create_dir(path.relative())
    }

    pub fn remove_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.0.remove_dir(path.relative())
    }

    pub fn remove_file(&self, path: &VirtualPath) -> io::Result<()> {
        self.0.remove_file(path.relative())
    }

    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        self.0.rename(from.relative(), &self.0, to.relative())
    }

    /// The entries of a directory: each name with what it is (see [`Tree::describe`]).
    pub fn entries(&self, path: &VirtualPath) -> io::Result<cap_std::fs::ReadDir> {
        self.0.read_dir(path.relative())
    }

    /// What a directory entry shows in a listing. A symlink that stays inside the tree shows
    /// as what it leads to, so clients can use it; one that leads outside, or nowhere, shows as
    /// a symlink, and its target is never shown.
    pub fn describe(&self, path: &VirtualPath) -> io::Result<Metadata> {
        let relative = path.relative();
        let own = self.0.symlink_metadata(&relative)?;
        match own.is_symlink() {
            true => Ok(self.0.metadata(&relative).unwrap_or(own)),
            false => Ok(own),
        }
    }
}

/// `O_NONBLOCK`: opening a FIFO for reading would otherwise wait for a writer.
fn libc_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// The length of `file` if it is a regular file; an error otherwise (FIFOs, devices, sockets).
fn regular(file: &File) -> io::Result<u64> {
    let meta = file.metadata()?;
    match meta.is_file() {
        true => Ok(meta.len()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )),
    }
}
