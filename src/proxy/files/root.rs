//! A file route's `root` and the opening of a request's file under it.
//!
//! On Linux a file is opened with one `openat2(2)` from a handle on the root directory, with
//! `RESOLVE_BENEATH`: the kernel follows symlinks but refuses any step out of the root (an
//! absolute symlink, or `..` past it). The open file is then `fstat`ed and read, as nginx opens
//! and `fstat`s a file. Resolving the path first (`realpath(3)`) would cost a `readlink` per
//! path component, then a `stat` and an `open` by path, each walking the path again.
//!
//! The handle is reopened from the configured path at most once a second, so a root that is
//! replaced (removed and made again, or a symlink moved to a new release) is served within a
//! second, without a reload.
//!
//! Where `openat2` is refused (`EXDEV`: an absolute symlink, which may still point inside the
//! root) or missing (kernels before 5.6, seccomp filters, other systems), the path is resolved
//! with `realpath` and must lie under the resolved root: the same answer, at the old cost.

use arc_swap::ArcSwap;
#[cfg(target_os = "linux")]
use nix::errno::Errno;
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long a handle on the root directory is used before it is opened again, in ms.
const REOPEN_MS: u64 = 1000;

/// A route's `root` directory.
pub struct Root {
    /// As configured (absolute, symlinks kept, so that a moved symlink is followed).
    path: PathBuf,
    dir: ArcSwap<Handle>,
}

/// A handle on the root directory (`O_PATH`), and when it was opened (`clock::now_ms`).
struct Handle {
    fd: Option<OwnedFd>,
    opened_ms: u64,
}

/// A file opened under a root.
#[derive(Debug)]
pub struct Opened {
    /// Its path relative to the root, as the request named it (symlinks not resolved).
    pub rel: PathBuf,
    pub file: File,
    pub meta: Metadata,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Root").field(&self.path).finish()
    }
}

impl Root {
    /// A root at `path` (a directory; one that is missing makes every request a 404 until it
    /// exists).
    pub fn new(path: &Path) -> Root {
        Root {
            path: path.to_path_buf(),
            dir: ArcSwap::from_pointee(Handle::open(path, crate::clock::now_ms())),
        }
    }

    /// The directory as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` (plain names only, as `safe_relative` gives; empty for the root itself)
    /// under the root, read-only and non-blocking (a FIFO is not waited on). `None` when it is
    /// missing, unreadable, or resolves outside the root.
    pub fn open(&self, rel: &Path) -> Option<Opened> {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.handle().fd {
            match beneath(fd, rel) {
                Ok(file) => {
                    let meta = file.metadata().ok()?;
                    let rel = rel.to_path_buf();
                    return Some(Opened { rel, file, meta });
                }
                // An absolute symlink: resolved by path below.
                Err(Errno::EXDEV) => {}
                // No `openat2` here: resolved by path, now and from now on.
                Err(Errno::ENOSYS | Errno::EPERM) => {
                    NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => return None,
            }
        }
        self.open_by_path(rel)
    }

    /// The handle, opened again when it is older than [`REOPEN_MS`].
    fn handle(&self) -> arc_swap::Guard<Arc<Handle>> {
        let h = self.dir.load();
        let now = crate::clock::now_ms();
        if now.saturating_sub(h.opened_ms) < REOPEN_MS {
            return h;
        }
        self.dir.store(Arc::new(Handle::open(&self.path, now)));
        self.dir.load()
    }

    /// `realpath` of both, the file under the root, then an open by the resolved path.
    fn open_by_path(&self, rel: &Path) -> Option<Opened> {
        let root = std::fs::canonicalize(&self.path).ok()?;
        let real = std::fs::canonicalize(self.path.join(rel)).ok()?;
        if !real.starts_with(&root) {
            return None;
        }
        let file = options().open(&real).ok()?;
        let meta = file.metadata().ok()?;
        let rel = rel.to_path_buf();
        Some(Opened { rel, file, meta })
    }
}

/// Set once `openat2` is found missing or filtered, so it is not tried again.
#[cfg(target_os = "linux")]
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Handle {
    #[cfg(target_os = "linux")]
    fn open(path: &Path, now: u64) -> Handle {
        use nix::fcntl::OFlag;
        let fd = if NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).ok()
        };
        Handle { fd, opened_ms: now }
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_: &Path, now: u64) -> Handle {
        Handle {
            fd: None,
            opened_ms: now,
        }
    }
}

/// `openat2(dir, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, RESOLVE_BENEATH)`.
#[cfg(target_os = "linux")]
fn beneath(dir: &OwnedFd, rel: &Path) -> nix::Result<File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH);
    nix::fcntl::openat2(dir, rel, how).map(File::from)
}

/// Read-only, non-blocking (a FIFO is not waited on), no controlling terminal.
fn options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY);
    o
}
