//! The virtual filesystem: unftp-sbe-fs's `Filesystem`, which confines every path to the root
//! (cap-std refuses `..` and symlinks that lead outside it), wrapped to add what a public server
//! needs on top:
//!
//! - read-only users (anonymous, unless `--write-anonymous`) cannot change anything;
//! - listings do not reveal where symlinks point (a link to /etc/passwd must not say so);
//! - `MLST name` is resolved against the current directory (libunftp passes it unresolved);
//! - downloads are read in 1 MiB blocks, the next one while the last is being sent
//!   (unftp-sbe-fs reads 4 KiB at a time, which caps RETR far below what the disk and the
//!   network can do);
//! - every transfer is logged with user, path, bytes, duration and client address.

use crate::accounts::FtpUser;
use async_trait::async_trait;
use plugin_api::tokio::io::{AsyncRead, AsyncWrite, BufReader};
use plugin_api::tracing::info;
use std::fmt::Debug;
use std::io::{Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use unftp_core::auth::UserDetail;
use unftp_core::storage::{ErrorKind, Fileinfo, Metadata, Permissions, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

/// The block size for transfers.
const TRANSFER_BUFFER: usize = 1 << 20;

/// One session's view of the root.
#[derive(Debug)]
pub struct ConfinedFs {
    inner: Filesystem,
    /// The root (or the user's home), for downloads, which bypass `inner` to read files with
    /// plain blocking reads; cap-std confines every path to it exactly as `inner` does.
    dir: Arc<cap_std::fs::Dir>,
    root: PathBuf,
    peer: SocketAddr,
    /// The session's current directory, as last set by CWD (see `metadata`).
    cwd: Mutex<PathBuf>,
}

impl ConfinedFs {
    pub fn new(root: &Path, peer: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            inner: Filesystem::new(root)?,
            dir: Arc::new(cap_std::fs::Dir::open_ambient_dir(
                root,
                cap_std::ambient_authority(),
            )?),
            root: root.to_path_buf(),
            peer,
            cwd: Mutex::new(PathBuf::from("/")),
        })
    }

    fn writable(user: &FtpUser) -> Result<()> {
        match user.read_only {
            true => Err(ErrorKind::PermissionDenied.into()),
            false => Ok(()),
        }
    }

    fn log_transfer(&self, user: &FtpUser, verb: &str, path: &Path, bytes: u64, started: Instant) {
        info!(
            "{user} {verb} {} ({bytes} bytes in {:.3} s) from {}",
            path.display(),
            started.elapsed().as_secs_f64(),
            self.peer.ip()
        );
    }
}

/// File metadata with symlink targets hidden.
#[derive(Debug)]
pub struct SafeMeta(Meta);

impl Metadata for SafeMeta {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn is_dir(&self) -> bool {
        self.0.is_dir()
    }
    fn is_file(&self) -> bool {
        self.0.is_file()
    }
    fn is_symlink(&self) -> bool {
        self.0.is_symlink()
    }
    fn modified(&self) -> Result<SystemTime> {
        self.0.modified()
    }
    fn gid(&self) -> u32 {
        self.0.gid()
    }
    fn uid(&self) -> u32 {
        self.0.uid()
    }
    fn links(&self) -> u64 {
        self.0.links()
    }
    fn permissions(&self) -> Permissions {
        self.0.permissions()
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for ConfinedFs {
    type Metadata = SafeMeta;

    fn supported_features(&self) -> u32 {
        StorageBackend::<FtpUser>::supported_features(&self.inner)
    }

    fn enter(&mut self, user: &FtpUser) -> std::io::Result<()> {
        *self.cwd.lock().unwrap_or_else(|p| p.into_inner()) = PathBuf::from("/");
        self.inner.enter(user)?;
        if let Some(home) = user.home() {
            let relative = home
                .strip_prefix(&self.root)
                .map_err(std::io::Error::other)?;
            self.dir = Arc::new(self.dir.open_dir(relative)?);
        }
        Ok(())
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<SafeMeta> {
        // Every command resolves its argument against the current directory before calling
        // the backend, except MLST, which passes a relative argument as is.
        let path = path.as_ref();
        let resolved = match path.is_relative() {
            true => self
                .cwd
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .join(path),
            false => path.to_path_buf(),
        };
        self.inner.metadata(user, resolved).await.map(SafeMeta)
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, SafeMeta>>> {
        let entries = self.inner.list(user, path).await?;
        Ok(entries
            .into_iter()
            .map(|entry| Fileinfo {
                path: entry.path,
                metadata: SafeMeta(entry.metadata),
            })
            .collect())
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let started = Instant::now();
        let path = path.as_ref().to_path_buf();
        let (dir, relative) = (self.dir.clone(), within_root(&path));
        let file =
            plugin_api::tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                let mut file = dir.open(relative)?.into_std();
                file.seek(SeekFrom::Start(start_pos))?;
                Ok(file)
            })
            .await
            .map_err(std::io::Error::other)??;
        let bytes = pipelined_copy(file, output).await?;
        self.log_transfer(user, "downloaded", &path, bytes, started);
        Ok(bytes)
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        Self::writable(user)?;
        let started = Instant::now();
        let path = path.as_ref().to_path_buf();
        let input = BufReader::with_capacity(TRANSFER_BUFFER, input);
        let bytes = self.inner.put(user, input, &path, start_pos).await?;
        self.log_transfer(user, "uploaded", &path, bytes, started);
        Ok(bytes)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        Self::writable(user)?;
        let path = path.as_ref().to_path_buf();
        self.inner.del(user, &path).await?;
        info!("{user} deleted {} from {}", path.display(), self.peer.ip());
        Ok(())
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        Self::writable(user)?;
        self.inner.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        Self::writable(user)?;
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        Self::writable(user)?;
        self.inner.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        self.inner.cwd(user, &path).await?;
        *self.cwd.lock().unwrap_or_else(|p| p.into_inner()) = path;
        Ok(())
    }
}

/// A client path as a path relative to the root, the way unftp-sbe-fs reads it.
fn within_root(path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) if relative.as_os_str().is_empty() => PathBuf::from("."),
        Ok(relative) => relative.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

/// Copies `file` to `output` in [`TRANSFER_BUFFER`] blocks, a blocking thread reading the next
/// block while the last one is being sent, so disk reads overlap socket writes. Two blocks are
/// reused throughout: memory stays the same whatever the file's size.
async fn pipelined_copy<W>(mut file: std::fs::File, output: &mut W) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    use plugin_api::tokio::io::AsyncWriteExt;
    use plugin_api::tokio::sync::mpsc;
    use std::io::Read;
    let (full, mut filled) = mpsc::channel::<Vec<u8>>(1);
    let (empty, mut spare) = mpsc::channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = empty.send(vec![0; TRANSFER_BUFFER]).await;
    }
    let reader = plugin_api::tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        while let Some(mut block) = spare.blocking_recv() {
            block.resize(TRANSFER_BUFFER, 0);
            let mut length = 0;
            while length < block.len() {
                match file.read(&mut block[length..])? {
                    0 => break,
                    read => length += read,
                }
            }
            block.truncate(length);
            // An empty block is the end; a closed channel means the writer gave up.
            if full.blocking_send(block).is_err() || length == 0 {
                break;
            }
        }
        Ok(())
    });
    let mut total = 0;
    while let Some(block) = filled.recv().await {
        if block.is_empty() {
            break;
        }
        output.write_all(&block).await?;
        total += block.len() as u64;
        let _ = empty.send(block).await;
    }
    drop(filled);
    reader.await.map_err(std::io::Error::other)??;
    Ok(total)
}
