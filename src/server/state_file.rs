//! `[server] state_file`: the servers' health, operator state, weights and `maxconn` kept on
//! disk (HAProxy's `server-state-file`), so a restart does not forget that a server was in
//! maintenance or down. Read once at start; written when it changes (looked at once a second,
//! so a burst of changes is one write) and at shutdown, always whole: a temporary file in the
//! same directory, then renamed over the old one. A file that cannot be read or was not written
//! by this langur is a warning, never a failed start.

use super::*;
use crate::backend::state::{parse, restore, snapshot};
use std::path::Path;
use std::sync::Weak;

/// How often the writer looks for a change (the debounce: at most one write per interval).
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// The largest state file read (about 50 000 servers): a bigger one is not langur's.
const MAX_SIZE: u64 = 16 << 20;

/// The text of a regular file of at most [`MAX_SIZE`] bytes (see [`crate::regular_file`]).
fn read_bounded(path: &Path) -> std::io::Result<String> {
    crate::regular_file::read_string(path, MAX_SIZE)
}

/// Applies the state file at `path` to `pools` (see [`crate::backend::state::restore`]). A
/// missing file is the first start; anything else that cannot be used is a warning.
pub(super) fn read(path: &Path, pools: &[Arc<Pool>]) {
    let text = read_bounded(path);
    let text = match text {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %path.display(), "no server-state file yet; it is written as servers change");
            return;
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "server-state file ignored: cannot read it");
            return;
        }
    };
    match parse(&text) {
        Ok(saved) => {
            let applied = restore(pools, &saved);
            let others = saved.len() - applied;
            tracing::info!(file = %path.display(), servers = applied, "server state restored");
            if others > 0 {
                tracing::warn!(file = %path.display(), records = others, "server-state records for servers this configuration does not have were ignored");
            }
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "server-state file ignored")
        }
    }
}

/// Starts the writer: once a second, the servers' state written if it changed (and the
/// configuration names a state file) until the instance stops.
pub(super) fn spawn(shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::time::sleep(WRITE_EVERY).await;
            let Some((path, text)) = changed(&shared, &last) else {
                continue;
            };
            if text.is_empty() {
                return;
            }
            // Off the event loop: the write waits for the disk.
            let written = tokio::task::spawn_blocking(move || (write(&path, &text), path, text));
            match written.await {
                Ok((Ok(()), _, text)) => last = text,
                Ok((Err(e), path, _)) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot write the server-state file")
                }
                Err(_) => return,
            }
        }
    })
}

/// One look: the file and the state to write when it differs from `last`; an empty text once
/// the instance stops (the writer ends; shutdown writes the last state); `None` when there is
/// nothing to write.
fn changed(shared: &Weak<Shared>, last: &str) -> Option<(std::path::PathBuf, String)> {
    let Some(shared) = shared.upgrade() else {
        return Some(Default::default());
    };
    if shared.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return Some(Default::default());
    }
    let path = lock(&shared.current).server.state_file.clone()?;
    let text = snapshot(&shared.runtime.load().pools);
    (text != last).then_some((path, text))
}

/// Writes the state now (at shutdown), if the configuration names a state file.
pub(super) fn save(shared: &Shared) {
    let Some(path) = lock(&shared.current).server.state_file.clone() else {
        return;
    };
    let text = snapshot(&shared.runtime.load().pools);
    match write(&path, &text) {
        Ok(()) => tracing::info!(file = %path.display(), "server state saved"),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the server-state file")
        }
    }
}

/// Writes `text` to `path` whole: a temporary file beside it (owner-only), flushed to disk,
/// renamed over `path`. One writer at a time.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    static ONE: Mutex<()> = Mutex::new(());
    let _one = lock(&ONE);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let done = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file's bound is the state file's own (the kind is `regular_file`'s test).
    #[test]
    fn a_state_file_over_its_bound_is_refused() {
        let scratch = crate::scratch_dir("state");
        let dir = scratch.path().to_path_buf();
        let big = dir.join("big");
        std::fs::write(&big, vec![b' '; MAX_SIZE as usize + 1]).unwrap();
        assert!(read_bounded(&big).is_err());
        let ok = dir.join("ok");
        std::fs::write(&ok, "{}").unwrap();
        assert_eq!(read_bounded(&ok).unwrap(), "{}");
    }
}
