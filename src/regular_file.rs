//! Reading a file the configuration names (the configuration itself, certificates and keys,
//! CA and CRL files, users files, pages, the server-state file, ACME storage): only a regular
//! file, and only up to a size bound.
//!
//! The file is opened non-blocking and its type asked of the open file (`fstat`), not of the
//! path beforehand, which a swap could change in between: opening a FIFO for reading would wait
//! for a writer (a start or a reload would hang), and a device such as `/dev/zero` never ends
//! (it would fill memory). The read itself stops one byte past the bound whatever the metadata
//! said, so a file that grows while it is read is refused too.

use std::io::Read;
use std::path::Path;

/// The bound for PEM files (certificates, keys, CA bundles, CRLs), in bytes.
pub const MAX_PEM: u64 = 16 << 20;

/// The bytes of the regular file at `path`, at most `max` of them. Errors: the file's own
/// (`NotFound`, `PermissionDenied`, ...), or `Other` with "not a regular file" or "larger
/// than N bytes".
pub fn read(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text; `InvalidData` when it is not.
pub fn read_string(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large(max: u64) -> std::io::Error {
    std::io::Error::other(format!("larger than {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound() {
        let scratch = crate::scratch_dir("regular");
        let dir = scratch.path().to_path_buf();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Opening it would block until a writer came.
        assert!(read(&fifo, 100).is_err());
        assert!(read(Path::new("/dev/zero"), 100).is_err());
        assert!(read(&dir, 100).is_err());
        let big = dir.join("big");
        std::fs::write(&big, [b'a'; 101]).unwrap();
        let e = read(&big, 100).unwrap_err();
        assert!(e.to_string().contains("larger than 100 bytes"), "{e}");
        assert_eq!(read(&big, 101).unwrap().len(), 101);
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(read_string(&big, 100).is_err());
        let e = read(&dir.join("missing"), 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
