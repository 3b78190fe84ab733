//! `[acme]`: certificates obtained and renewed in the background (RFC 8555) for the names of
//! routes with `acme = true`. One task per process: it loads the stored certificates, orders
//! the missing ones, renews each at two thirds of its lifetime, and retries a failure with
//! jittered exponential backoff while the old certificate keeps serving. A new certificate is
//! swapped into the listeners' store ([`crate::tls::acme::Issued`]): no restart, no connection
//! dropped. See docs/tls.md.

mod order;
pub mod storage;

use crate::backend::events::{Event, EventLog};
use crate::backend::health::{CheckStatus, Health};
use crate::config::acme::AcmeConfig;
use crate::tls::acme::Issued;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::Storage;

/// The longest one order may take, from the account to the chain.
const ORDER_DEADLINE: Duration = Duration::from_secs(180);
/// The first retry after a failure; each further one waits twice as long, up to
/// [`RETRY_MAX`], each ±20 % at random.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// The task looks again at least this often (a clock that jumped, a long sleep).
const LOOK_AGAIN: Duration = Duration::from_secs(3600);

/// One certificate as the admin API and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub names: Vec<String>,
    /// The leaf's issuer (RFC 4514); empty before the first certificate.
    pub issuer: String,
    /// `notAfter`, seconds since the Unix epoch; `None` before the first certificate.
    pub not_after: Option<i64>,
    /// `"file"` or `"acme"`.
    pub source: &'static str,
    /// The last renewal attempt (seconds since the Unix epoch) and its error (`None`: it
    /// succeeded); ACME only.
    pub last_attempt: Option<i64>,
    pub last_error: Option<String>,
}

/// What the task knows of one name's certificate.
#[derive(Debug, Clone, Default)]
struct State {
    issuer: String,
    not_before: i64,
    not_after: Option<i64>,
    last_attempt: Option<i64>,
    last_error: Option<String>,
    failures: u32,
    /// After a failure: not before this time (Unix seconds).
    retry_at: Option<i64>,
}

/// The ACME side of the instance: its configuration, the store the listeners read, the
/// certificates' states. One per process; reloads change its configuration.
#[derive(Debug)]
pub struct Manager {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    /// Renew every certificate now (the embedding API's hook; nothing in the configuration
    /// reaches it).
    force: AtomicBool,
    events: Arc<EventLog>,
}

#[derive(Debug, Default)]
struct Inner {
    config: Option<AcmeConfig>,
    issued: Option<Arc<Issued>>,
    storage: Option<Storage>,
    certs: BTreeMap<String, State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of
/// its lifetime (Let's Encrypt's advice for 90-day certificates: 30 days before the end).
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * 2 / 3
}

/// How long to wait after the `failures`-th failure in a row: [`RETRY_FIRST`] doubled per
/// failure, at most [`RETRY_MAX`], scaled by `jitter` (0.8 to 1.2).
pub fn retry_after(failures: u32, jitter: f64) -> Duration {
    let base = RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    base.min(RETRY_MAX).mul_f64(jitter.clamp(0.8, 1.2))
}

/// A factor from 0.8 to 1.2, drawn from the process's hash keys and the clock.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now());
    0.8 + (h.finish() % 4001) as f64 / 10_000.0
}

impl Manager {
    pub fn new(events: Arc<EventLog>) -> Manager {
        Manager {
            inner: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            force: AtomicBool::new(false),
            events,
        }
    }

    /// Checks that `config`'s storage can be used (made, written); an error names it.
    pub fn check(config: Option<&AcmeConfig>) -> Result<(), String> {
        config.map_or(Ok(()), |c| Storage::open(&c.storage).map(drop))
    }

    /// Takes `config` (`None`: ACME off) and the store the listeners read; the certificates
    /// stored for names not yet known are loaded and served at once. An error when the
    /// storage cannot be used.
    pub fn configure(
        &self,
        config: Option<AcmeConfig>,
        issued: Option<Arc<Issued>>,
    ) -> Result<(), String> {
        let storage = config
            .as_ref()
            .map(|c| Storage::open(&c.storage))
            .transpose()?;
        let mut inner = lock(&self.inner);
        let same = match (&inner.issued, &issued) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            // A new store (ACME turned on again): everything is loaded into it afresh.
            inner.certs.clear();
        }
        if let Some(issued) = &issued {
            issued.share_http_answers(storage.as_ref().map(|s| s.http_answers()));
        }
        if let (Some(c), Some(s), Some(issued)) = (&config, &storage, &issued) {
            for name in &c.names {
                if !inner.certs.contains_key(name) {
                    let state = load_stored(s, issued, name);
                    inner.certs.insert(name.clone(), state);
                }
            }
        }
        inner.config = config;
        inner.issued = issued;
        inner.storage = storage;
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Renews every certificate now, whatever its age (for tests and operators embedding
    /// langur; not reachable from the configuration).
    #[doc(hidden)]
    pub fn renew_now(&self) {
        self.force.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The ACME certificates, one per configured name.
    pub fn certificates(&self) -> Vec<CertificateInfo> {
        let inner = lock(&self.inner);
        let Some(c) = &inner.config else {
            return Vec::new();
        };
        c.names
            .iter()
            .map(|n| {
                let s = inner.certs.get(n).cloned().unwrap_or_default();
                CertificateInfo {
                    names: vec![n.clone()],
                    issuer: s.issuer,
                    not_after: s.not_after,
                    source: "acme",
                    last_attempt: s.last_attempt,
                    last_error: s.last_error,
                }
            })
            .collect()
    }

    /// The task: orders what is due, then sleeps until the next is due or the configuration
    /// changes. Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (due, wait, force) = self.due();
            for name in &due {
                self.renew(name, force).await;
            }
            if due.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                }
            }
        }
    }

    /// The names due now, how long until the next one is, and whether renewal was forced.
    fn due(&self) -> (Vec<String>, Duration, bool) {
        let force = self.force.swap(false, Ordering::SeqCst);
        let inner = lock(&self.inner);
        let Some(c) = &inner.config else {
            return (Vec::new(), LOOK_AGAIN, false);
        };
        let now = now();
        let mut next = now + LOOK_AGAIN.as_secs() as i64;
        let mut due = Vec::new();
        for name in &c.names {
            let s = inner.certs.get(name);
            let at = match s {
                Some(s) if s.retry_at.is_some() && !force => s.retry_at.unwrap_or(now),
                Some(State {
                    not_after: Some(end),
                    not_before,
                    ..
                }) if !force => renew_at(*not_before, *end),
                _ => now,
            };
            if at <= now {
                due.push(name.clone());
            } else {
                next = next.min(at);
            }
        }
        (due, Duration::from_secs((next - now).max(1) as u64), force)
    }

    /// One attempt for `name`: the stored certificate if another instance renewed it (unless
    /// `force`), else a new order; the outcome in the state, the log and the health log.
    async fn renew(&self, name: &str, force: bool) {
        let (config, storage, issued, serving, since) = {
            let mut inner = lock(&self.inner);
            let (Some(c), Some(s), Some(i)) = (
                inner.config.clone(),
                inner.storage.clone(),
                inner.issued.clone(),
            ) else {
                return;
            };
            let state = inner.certs.entry(name.to_string()).or_default();
            state.last_attempt = Some(now());
            (c, s, i, state.not_after.is_some(), state.not_before)
        };
        let attempt = async {
            let _locked = storage.lock(ORDER_DEADLINE / 2).await?;
            if let Some(stored) = storage.certificate(name).filter(|_| !force) {
                if renewed_elsewhere(&stored, since) {
                    return Ok(stored);
                }
            }
            let (chain, key) = order::obtain(&config, &storage, &issued, name).await?;
            storage.save_certificate(name, chain.as_bytes(), key.as_bytes())?;
            Ok::<_, String>((chain.into_bytes(), key.into_bytes()))
        };
        let outcome = match tokio::time::timeout(ORDER_DEADLINE, attempt).await {
            Ok(Ok((chain, key))) => install(&issued, name, &chain, &key),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no certificate within {ORDER_DEADLINE:?}")),
        };
        let mut inner = lock(&self.inner);
        let state = inner.certs.entry(name.to_string()).or_default();
        match outcome {
            Ok(fresh) => {
                tracing::info!(name, issuer = %fresh.issuer, not_after = fresh.not_after.unwrap_or(0), "ACME certificate obtained");
                let to = format!(
                    "certificate obtained, valid until {}",
                    fmt_time(fresh.not_after)
                );
                *state = State {
                    last_attempt: state.last_attempt,
                    ..fresh
                };
                self.event(name, serving, Health::Up, CheckStatus::L7Ok, to);
            }
            Err(e) => {
                // What a CA sends is its own: at most 512 bytes of it are kept and shown.
                let e = match e.char_indices().nth(512) {
                    Some((i, _)) => format!("{}...", &e[..i]),
                    None => e,
                };
                state.failures += 1;
                let wait = retry_after(state.failures, jitter());
                state.retry_at = Some(now() + wait.as_secs() as i64);
                state.last_error = Some(e.clone());
                tracing::warn!(name, error = %e, retry_in = ?wait, serving, "ACME certificate not obtained; the current one (if any) keeps serving");
                let to = if serving { Health::Up } else { Health::Down };
                self.event(name, serving, to, CheckStatus::L7Rsp, e);
            }
        }
    }

    /// An entry in the health log: pool `acme`, server the name.
    fn event(&self, name: &str, serving: bool, to: Health, status: CheckStatus, reason: String) {
        self.events.push(Event {
            at_unix: now().max(0) as u64,
            pool: "acme".into(),
            server: name.to_string(),
            from: if serving { Health::Up } else { Health::Down },
            to,
            status,
            code: None,
            reason,
        });
    }
}

/// `notAfter` as RFC 3339 for messages.
fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|t| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(t.max(0) as u64)))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default()
}

/// Whether the stored certificate is newer than the one served (valid from `since`) and not
/// yet due: another instance on the same storage renewed it.
fn renewed_elsewhere((chain, _): &(Vec<u8>, Vec<u8>), since: i64) -> bool {
    let Some(leaf) = rustls::pki_types::CertificateDer::pem_slice_iter(chain).next() else {
        return false;
    };
    let Ok(leaf) = leaf else { return false };
    match x509_parser::parse_x509_certificate(&leaf) {
        Ok((_, c)) => {
            let (from, to) = (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            );
            from > since && renew_at(from, to) > now()
        }
        Err(_) => false,
    }
}

/// Serves `chain` and `key` for `name`; the state they give.
fn install(issued: &Issued, name: &str, chain: &[u8], key: &[u8]) -> Result<State, String> {
    let id = crate::tls::identity_from_pem(chain, key).map_err(|e| e.to_string())?;
    if !id.names.iter().any(|n| n == name) {
        return Err(format!("the certificate does not name {name}"));
    }
    let not_before =
        x509_parser::parse_x509_certificate(id.key.end_entity_cert().map_err(|e| e.to_string())?)
            .map(|(_, c)| c.validity().not_before.timestamp())
            .map_err(|e| e.to_string())?;
    issued.put(name, id.key.clone());
    Ok(State {
        issuer: id.issuer,
        not_before,
        not_after: Some(id.not_after),
        ..State::default()
    })
}

/// The state of `name` from storage: its stored certificate served, or nothing (then due).
fn load_stored(storage: &Storage, issued: &Issued, name: &str) -> State {
    let Some((chain, key)) = storage.certificate(name) else {
        return State::default();
    };
    match install(issued, name, &chain, &key) {
        Ok(s) => {
            tracing::info!(name, not_after = %fmt_time(s.not_after), "ACME certificate loaded from storage");
            s
        }
        Err(e) => {
            tracing::warn!(name, error = %e, "the stored ACME certificate does not load; a new one is ordered");
            State::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime() {
        assert_eq!(renew_at(0, 90 * 86_400), 60 * 86_400);
        assert_eq!(renew_at(1_000, 1_300), 1_200);
        assert_eq!(renew_at(1_000, 900), 1_000);
    }

    #[test]
    fn retries_back_off_with_jitter_and_a_ceiling() {
        assert_eq!(retry_after(1, 1.0), Duration::from_secs(60));
        assert_eq!(retry_after(2, 1.0), Duration::from_secs(120));
        assert_eq!(retry_after(3, 0.8), Duration::from_secs(192));
        assert_eq!(retry_after(40, 1.0), RETRY_MAX);
        assert_eq!(retry_after(1, 5.0), Duration::from_secs(72));
        let j = jitter();
        assert!((0.8..=1.2).contains(&j));
    }
}
