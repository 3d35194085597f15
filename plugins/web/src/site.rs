//! What is served and how: the root and the options about it, and the lookup of one request
//! path.

use crate::body::read_exact_at;
use crate::encoding::Coding;
use crate::listing;
use crate::request_path::RequestPath;
use crate::root::{OpenFile, Opened, Root};
use bytes::Bytes;
use http::HeaderValue;
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

/// Files up to this size are read whole during the lookup, and sent from memory.
const PRELOAD: u64 = 64 * 1024;

/// The served tree and the options that shape the answers.
pub struct Site {
    pub root: Root,
    /// With `--path FILE`: the file's name in the directory `root`; only it is served.
    pub single_file: Option<OsString>,
    pub indexes: Vec<String>,
    pub listing: bool,
    pub show_dotfiles: bool,
    /// The type of files whose extension says nothing (`--mime-type`).
    pub default_type: HeaderValue,
}

/// The answer to one path.
pub enum Lookup {
    File(Hit),
    /// A directory asked for without its trailing slash: redirect to it with one.
    AddSlash,
    /// A directory without an index file, to be listed (see [`Site::listing`]).
    Listing(PathBuf),
    /// A directory without an index file, and listings are off.
    NoIndex,
    NotFound,
    /// The server may not read it (permissions).
    Forbidden,
    Failed(io::Error),
}

/// A file to send.
pub struct Hit {
    pub file: OpenFile,
    pub content_type: HeaderValue,
    /// Set when this is a precompressed sibling, sent with `Content-Encoding`.
    pub coding: Option<Coding>,
    /// The whole content, read already, when the file is at most [`PRELOAD`] bytes long.
    pub content: Option<Bytes>,
}

impl Site {
    /// Looks `path` up, on the calling thread: opening and stating files, and reading small
    /// ones, take microseconds when the file system has them cached, far less than handing the
    /// work to another thread and back (measured with `bench web`: the hand-off cost a third
    /// of the requests per second). nginx does the same by default. Listings and large files,
    /// whose reads take longer, go to the blocking pool.
    ///
    /// `codings` are the precompressed siblings the client accepts; `with_content` reads a
    /// small file's content at once (not for HEAD).
    pub fn lookup(&self, path: &RequestPath, codings: &[Coding], with_content: bool) -> Lookup {
        let relative = match &self.single_file {
            None => path.relative(),
            Some(name) => match path.last_name() {
                None => PathBuf::from(name),
                Some(_) if path.relative() == Path::new(name) => PathBuf::from(name),
                Some(_) => return Lookup::NotFound,
            },
        };
        let found = match self.root.open_entry(&relative) {
            // `/a.txt/` names a directory that is not there (`/` alone may name the single file).
            Ok(Opened::File(_)) if path.trailing_slash && path.last_name().is_some() => {
                return Lookup::NotFound
            }
            Ok(Opened::File(file)) => self.file(&relative, file, codings, with_content),
            Ok(Opened::Dir) if !path.trailing_slash => return Lookup::AddSlash,
            Ok(Opened::Dir) => self.directory(&relative, codings, with_content),
            Err(e) => Err(e),
        };
        found.unwrap_or_else(|e| match Errno::from_io_error(&e) {
            Some(Errno::ACCESS | Errno::PERM) => Lookup::Forbidden,
            // EXDEV: a symlink leads out of the root; ELOOP: too many links, or a link where
            // none may be.
            Some(Errno::NOENT | Errno::NOTDIR | Errno::XDEV | Errno::LOOP | Errno::NAMETOOLONG) => {
                Lookup::NotFound
            }
            _ if e.kind() == io::ErrorKind::NotFound => Lookup::NotFound,
            _ => Lookup::Failed(e),
        })
    }

    fn directory(
        &self,
        relative: &Path,
        codings: &[Coding],
        with_content: bool,
    ) -> io::Result<Lookup> {
        for index in &self.indexes {
            let candidate = relative.join(index);
            match self.root.open_file(&candidate) {
                Ok(file) => return self.file(&candidate, file, codings, with_content),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if Errno::from_io_error(&e) == Some(Errno::XDEV) => continue,
                Err(e) => return Err(e),
            }
        }
        match self.listing {
            true => Ok(Lookup::Listing(relative.to_path_buf())),
            false => Ok(Lookup::NoIndex),
        }
    }

    /// The listing page of the directory `relative`, asked for as `path`. It may stat
    /// thousands of files: run it on the blocking pool.
    pub fn listing(&self, path: &RequestPath, relative: &Path) -> io::Result<String> {
        let (entries, count) = self.root.list(relative, listing::MAX_ENTRIES)?;
        Ok(listing::render(path, entries, count))
    }

    fn file(
        &self,
        relative: &Path,
        file: OpenFile,
        codings: &[Coding],
        with_content: bool,
    ) -> io::Result<Lookup> {
        let content_type = self.content_type(relative);
        let (file, coding) = self
            .precompressed(relative, codings)
            .unwrap_or((file, None));
        let content = match with_content && file.len <= PRELOAD {
            true => Some(read_exact_at(&file.file, 0, file.len as usize)?),
            false => None,
        };
        Ok(Lookup::File(Hit {
            file,
            content_type,
            coding,
            content,
        }))
    }

    /// The first sibling (`NAME.br`, `NAME.gz`) the client accepts that exists.
    fn precompressed(
        &self,
        relative: &Path,
        codings: &[Coding],
    ) -> Option<(OpenFile, Option<Coding>)> {
        codings.iter().find_map(|&coding| {
            let mut sibling = relative.as_os_str().to_owned();
            sibling.push(coding.suffix());
            let file = self.root.open_file(Path::new(&sibling)).ok()?;
            Some((file, Some(coding)))
        })
    }

    /// The Content-Type for a file name: from its extension, with `charset=utf-8` for text,
    /// or the `--mime-type` default.
    fn content_type(&self, relative: &Path) -> HeaderValue {
        let name = relative.file_name().unwrap_or(OsStr::new(""));
        let Some(mime) = mime_guess::from_path(name).first() else {
            return self.default_type.clone();
        };
        // RFC 9239 made text/javascript the one type of JavaScript; mime_guess still says
        // application/javascript for `.mjs`, so both extensions get the same answer.
        let essence = match mime.essence_str() {
            "application/javascript" => "text/javascript",
            essence => essence,
        };
        let textual = essence.starts_with("text/")
            || matches!(
                essence,
                "application/json" | "application/xml" | "image/svg+xml"
            );
        let value = match textual {
            true => format!("{essence}; charset=utf-8"),
            false => essence.to_string(),
        };
        HeaderValue::from_str(&value).unwrap_or_else(|_| self.default_type.clone())
    }
}
