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
//! with `realpath` and must lie under the resolved root; the resolved path is then walked from
//! the root's handle one name at a time with `O_NOFOLLOW`, so a symlink put in its way after
//! the check fails the open instead of being followed (no check-then-use race).

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
    fd: Result<OwnedFd, nix::errno::Errno>,
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
    pub fn open(&self, rel: PathBuf) -> Option<Opened> {
        let handle = self.handle();
        let dir = handle.fd.as_ref().ok()?;
        #[cfg(target_os = "linux")]
        let beneath_works = openat2_works(dir);
        #[cfg(not(target_os = "linux"))]
        let beneath_works = false;
        Self::open_in(dir, &self.path, rel, beneath_works)
    }

    /// [`Root::open`] from the root's handle `dir` (of `path`), with `openat2` or, where
    /// `beneath_works` is false, by the resolved path only.
    fn open_in(dir: &OwnedFd, path: &Path, rel: PathBuf, beneath_works: bool) -> Option<Opened> {
        #[cfg(target_os = "linux")]
        if beneath_works {
            match beneath(dir, &rel) {
                Ok(file) => return opened(rel, file),
                // An absolute symlink, or one leading out: resolved by path below.
                Err(Errno::EXDEV) => {}
                Err(_) => return None,
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = beneath_works;
        open_resolved(dir, path, rel)
    }

    /// The handle, opened again when it is older than [`REOPEN_MS`].
    fn handle(&self) -> arc_swap::Guard<Arc<Handle>> {
        let h = self.dir.load();
        let now = crate::clock::now_ms();
        if now.saturating_sub(h.opened_ms) < REOPEN_MS {
            return h;
        }
        let fresh = Handle::open(&self.path, now);
        // Said once when the root goes missing (a deploy that points it at nothing), and once
        // when it is back: every request meanwhile is a 404.
        match (&h.fd, &fresh.fd) {
            (Ok(_), Err(e)) => tracing::warn!(
                root = %self.path.display(),
                error = %e,
                "the root cannot be opened: its files are answered 404 until it can"
            ),
            (Err(_), Ok(_)) => {
                tracing::info!(root = %self.path.display(), "the root can be opened again")
            }
            _ => {}
        }
        self.dir.store(Arc::new(fresh));
        self.dir.load()
    }
}

/// `realpath` of the root (`path`, whose handle is `dir`) and of the file; a file under the
/// root is then opened by walking its resolved path (which has no symlink) from the root's
/// handle.
fn open_resolved(dir: &OwnedFd, path: &Path, rel: PathBuf) -> Option<Opened> {
    let root = std::fs::canonicalize(path).ok()?;
    let real = std::fs::canonicalize(path.join(&rel)).ok()?;
    let inside = real.strip_prefix(&root).ok()?;
    opened(rel, walk(dir, inside)?)
}

fn opened(rel: PathBuf, file: File) -> Option<Opened> {
    let meta = file.metadata().ok()?;
    Some(Opened { rel, file, meta })
}

/// How a file is opened: read-only, non-blocking (a FIFO is not waited on), no controlling
/// terminal.
fn file_flags() -> nix::fcntl::OFlag {
    use nix::fcntl::OFlag;
    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// How a directory is held: a handle to open beneath (`O_PATH` where there is one).
fn dir_flags() -> nix::fcntl::OFlag {
    use nix::fcntl::OFlag;
    #[cfg(target_os = "linux")]
    let read = OFlag::O_PATH;
    #[cfg(not(target_os = "linux"))]
    let read = OFlag::O_RDONLY;
    read | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Opens `rel` (a path without symlinks, relative to `dir`) one name at a time, each with
/// `O_NOFOLLOW`: a symlink met on the way (one swapped in since `rel` was resolved) fails the
/// open.
fn walk(dir: &OwnedFd, rel: &Path) -> Option<File> {
    use nix::fcntl::{openat, OFlag};
    use std::os::fd::AsFd;
    use std::path::Component;
    let none = nix::sys::stat::Mode::empty();
    let file = file_flags();
    let through = dir_flags() | OFlag::O_NOFOLLOW;
    let mut names = rel.components().peekable();
    let mut at: Option<OwnedFd> = None;
    loop {
        let from = at.as_ref().map_or(dir.as_fd(), |f| f.as_fd());
        match names.next() {
            // The root itself.
            None => return openat(from, ".", file, none).ok().map(File::from),
            Some(Component::Normal(name)) if names.peek().is_none() => {
                return openat(from, name, file | OFlag::O_NOFOLLOW, none)
                    .ok()
                    .map(File::from);
            }
            Some(Component::Normal(name)) => at = Some(openat(from, name, through, none).ok()?),
            Some(_) => return None,
        }
    }
}

/// Whether `openat2` can be used here, asked once per process (of the first root): a kernel
/// before 5.6 answers `ENOSYS`, a seccomp filter that does not know it `EPERM` (or `ENOSYS`).
/// Asked of the root itself, not judged from a file's open, which may be refused with `EPERM`
/// for reasons of its own (a fanotify permission check, FUSE).
#[cfg(target_os = "linux")]
fn openat2_works(dir: &OwnedFd) -> bool {
    use nix::fcntl::{OpenHow, ResolveFlag};
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let how = OpenHow::new()
            .flags(dir_flags())
            .resolve(ResolveFlag::RESOLVE_BENEATH);
        usable(nix::fcntl::openat2(dir, ".", how).map(drop))
    })
}

/// What the probe of `openat2` on a root says of it: `ENOSYS` (a kernel before 5.6, or a
/// seccomp filter's answer) and `EPERM` (a seccomp filter's) mean it is not there; anything
/// else, an open or another refusal, means it is.
#[cfg(target_os = "linux")]
fn usable(probe: nix::Result<()>) -> bool {
    !matches!(probe, Err(Errno::ENOSYS | Errno::EPERM))
}

impl Handle {
    fn open(path: &Path, now: u64) -> Handle {
        let fd = nix::fcntl::open(path, dir_flags(), nix::sys::stat::Mode::empty());
        Handle { fd, opened_ms: now }
    }
}

/// `openat2(dir, rel, file_flags(), RESOLVE_BENEATH)`.
#[cfg(target_os = "linux")]
fn beneath(dir: &OwnedFd, rel: &Path) -> nix::Result<File> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(file_flags())
        .resolve(ResolveFlag::RESOLVE_BENEATH);
    nix::fcntl::openat2(dir, rel, how).map(File::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback's walk never follows a symlink, wherever it is met.
    #[test]
    fn the_walk_refuses_every_symlink_on_the_way() {
        let scratch = crate::scratch_dir("walk");
        let d = scratch.path().to_path_buf();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "inside").unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("link")).unwrap();
        std::os::unix::fs::symlink("f", d.join("a/b/to-f")).unwrap();
        std::os::unix::fs::symlink("b", d.join("a/to-b")).unwrap();
        let root = Root::new(&d);
        let h = root.handle();
        let dir = h.fd.as_ref().unwrap();
        let read = |p: &str| {
            walk(dir, Path::new(p)).map(|f| std::io::read_to_string(f).unwrap_or_default())
        };
        assert_eq!(read("a/b/f").as_deref(), Some("inside"));
        for p in ["link/b/f", "a/to-b/f", "a/b/to-f", "a/../a/b/f"] {
            assert_eq!(read(p), None, "{p}");
        }
        // The root itself, and the open beneath it (symlinks inside are followed there).
        assert!(walk(dir, Path::new(""))
            .unwrap()
            .metadata()
            .unwrap()
            .is_dir());
        assert!(root.open(PathBuf::from("a/to-b/to-f")).is_some());
    }

    /// A kernel without `openat2` (before 5.6) or a seccomp filter that refuses it: the probe
    /// turns it off, and the resolved path serves the same files and refuses the same escapes.
    #[cfg(target_os = "linux")]
    #[test]
    fn without_openat2_the_same_files_are_served() {
        assert!(!usable(Err(Errno::ENOSYS)));
        assert!(!usable(Err(Errno::EPERM)));
        for other in [
            Ok(()),
            Err(Errno::EACCES),
            Err(Errno::ENOENT),
            Err(Errno::EXDEV),
        ] {
            assert!(usable(other), "{other:?}");
        }
        let scratch = crate::scratch_dir("no-openat2");
        let d = scratch.path().join("root");
        let out = scratch.path().join("secret");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "inside").unwrap();
        std::fs::write(&out, "outside").unwrap();
        std::os::unix::fs::symlink("b/f", d.join("a/rel-link")).unwrap();
        std::os::unix::fs::symlink(d.join("a/b/f"), d.join("abs-in")).unwrap();
        std::os::unix::fs::symlink(&out, d.join("abs-out")).unwrap();
        std::os::unix::fs::symlink("../../secret", d.join("a/up-out")).unwrap();
        std::os::unix::fs::symlink("../a/b", d.join("a/up-in")).unwrap();
        let root = Root::new(&d);
        let h = root.handle();
        let dir = h.fd.as_ref().unwrap();
        let read = |rel: &str, beneath: bool| {
            Root::open_in(dir, &d, PathBuf::from(rel), beneath)
                .map(|o| std::io::read_to_string(o.file).unwrap_or_default())
        };
        let cases = [
            ("a/b/f", Some("inside")),
            ("a/rel-link", Some("inside")),
            ("abs-in", Some("inside")),
            ("a/up-in/f", Some("inside")),
            ("abs-out", None),
            ("a/up-out", None),
            ("a/b/missing", None),
        ];
        for (rel, want) in cases {
            assert_eq!(read(rel, false).as_deref(), want, "{rel} without openat2");
            assert_eq!(read(rel, true).as_deref(), want, "{rel} with openat2");
        }
        assert!(read("", false).is_some(), "the root itself");
    }
}
