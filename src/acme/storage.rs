//! `[acme] storage`: the account and the certificates as files, and the lock several
//! instances sharing the directory take before they order.
//!
//! ```text
//! STORAGE/lock                         flock(2): held while an instance orders or writes
//! STORAGE/accounts/DIRECTORY.json      the account's key and URL, per ACME directory (0600)
//! STORAGE/certificates/NAME.crt        the chain, leaf first (PEM)
//! STORAGE/certificates/NAME.key        its private key (PEM, 0600)
//! STORAGE/http-01/TOKEN                an HTTP-01 answer while its validation runs
//! ```

use crate::regular_file::{read, MAX_PEM};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The storage directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

/// The lock on the storage directory: released when dropped.
#[derive(Debug)]
pub struct Locked {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Storage {
    /// Makes the directory (0700 when langur makes it) and its subdirectories, and checks that files can be written
    /// in it; an error names the directory.
    pub fn open(dir: &Path) -> Result<Storage, String> {
        let s = Storage {
            dir: dir.to_path_buf(),
        };
        // Only a directory langur makes is made private: an existing one (or a link's target)
        // keeps the permissions its owner gave it.
        let made = !dir.exists();
        for sub in [
            dir.to_path_buf(),
            s.dir.join("accounts"),
            s.dir.join("certificates"),
            s.http_answers(),
        ] {
            std::fs::create_dir_all(&sub)
                .map_err(|e| format!("[acme] storage `{}` cannot be made: {e}", sub.display()))?;
        }
        if made {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let probe = dir.join(".writable");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| format!("[acme] storage `{}` is not writable: {e}", dir.display()))?;
        Ok(s)
    }

    /// Takes the directory's lock, waiting up to `within` for another instance to let go.
    pub async fn lock(&self, within: Duration) -> Result<Locked, String> {
        let path = self.dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let deadline = tokio::time::Instant::now() + within;
        let mut file = file;
        loop {
            use nix::fcntl::{Flock, FlockArg};
            file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Locked { _lock: lock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => f,
                Err((_, e)) => return Err(format!("cannot lock `{}`: {e}", path.display())),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "`{}` stayed locked by another instance for {within:?}",
                    path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where HTTP-01 answers are shared between instances (one file per token).
    pub fn http_answers(&self) -> PathBuf {
        self.dir.join("http-01")
    }

    fn account_path(&self, directory: &str) -> PathBuf {
        let file: String = directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join("accounts").join(format!("{file}.json"))
    }

    /// The stored account for `directory`, if there is one that reads.
    pub fn account(&self, directory: &str) -> Option<instant_acme::AccountCredentials> {
        let text = read(&self.account_path(directory), MAX_PEM).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn save_account(
        &self,
        directory: &str,
        creds: &instant_acme::AccountCredentials,
    ) -> Result<(), String> {
        let text = serde_json::to_vec(creds).map_err(|e| e.to_string())?;
        write_atomic(&self.account_path(directory), &text, 0o600)
    }

    fn cert_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("certificates");
        (d.join(format!("{name}.crt")), d.join(format!("{name}.key")))
    }

    /// The stored chain and key (PEM) of `name`, if both are there.
    pub fn certificate(&self, name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let (c, k) = self.cert_paths(name);
        Some((read(&c, MAX_PEM).ok()?, read(&k, MAX_PEM).ok()?))
    }

    /// Stores `name`'s chain and key, each replaced whole (written aside, then renamed); the
    /// key first, so a reader that finds the new chain finds its key.
    pub fn save_certificate(&self, name: &str, chain: &[u8], key: &[u8]) -> Result<(), String> {
        let (c, k) = self.cert_paths(name);
        write_atomic(&k, key, 0o600)?;
        write_atomic(&c, chain, 0o644)
    }
}

/// Writes `path` whole: a temporary file beside it, synced, then renamed over it.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory langur makes is private; one that exists keeps its owner's permissions.
    #[test]
    fn only_a_directory_langur_makes_is_made_private() {
        let scratch = crate::scratch_dir("acme");
        let base = scratch.path().to_path_buf();
        let made = base.join("made");
        Storage::open(&made).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&made), 0o700);
        let shared = base.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        Storage::open(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }
}
