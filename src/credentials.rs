//! HTTP Basic authentication (RFC 7617) for a route's `basic_auth = { realm, users_file }`: the
//! users file, the check of a client's credentials, and the two header values the exchange
//! needs (the `Authorization` request header read by [`parse_authorization`], the
//! `WWW-Authenticate` challenge written by [`challenge`]).
//!
//! The users file is htpasswd-shaped: one `user:hash` per line, blank lines and `#` comments
//! ignored. Only slow, salted hashes are accepted: bcrypt (`$2a$`, `$2b$`, `$2y$`, as
//! `htpasswd -B` writes) and argon2 PHC strings (`$argon2id$`, `$argon2i$`, `$argon2d$`).
//! Plain text, `{SHA}`, `$apr1$` and the crypt(3) schemes are refused when the file is loaded,
//! with the line and the user named, so a weak file never reaches the request path. Each hash is
//! parsed at load, so a malformed one is a load error too, not a request-time failure.
//!
//! A hash verification costs tens of milliseconds of CPU by design (bcrypt cost 10: about
//! 50 ms), so [`Users`] keeps successful verifications for [`CACHE_TTL`] (at most
//! [`CACHE_ENTRIES`] of them, keyed by user, holding a keyed BLAKE2b tag of the password, never
//! the password), and [`Users::verify_async`] runs a miss on tokio's blocking pool. Loading the
//! file again (a reload) starts with an empty cache.

use blake2::digest::consts::U32;
use blake2::digest::{CtOutput, Key, KeyInit, Mac};
use http::HeaderValue;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a successful verification is remembered: 5 minutes from the verification (a hit
/// does not extend it).
/// The highest bcrypt cost accepted: a check doubles with each step (cost 10 is about 50 ms),
/// and every request with credentials may cost one.
pub const MAX_BCRYPT_COST: u32 = 14;

/// The most memory an argon2 check may take, in KiB (64 MiB; OWASP suggests 19 to 46 MiB).
pub const MAX_ARGON2_KIB: u32 = 64 * 1024;

/// The largest users file read, in bytes.
pub const MAX_USERS_FILE: u64 = 16 << 20;

/// A users file's bytes: a regular file of at most [`MAX_USERS_FILE`] bytes (see
/// [`crate::regular_file`]).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::regular_file::read(path, MAX_USERS_FILE)
}

pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// The most successful verifications remembered at once (one per user).
pub const CACHE_ENTRIES: usize = 1024;

/// The longest `Authorization` value [`parse_authorization`] decodes, in bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

/// How to make an accepted hash, in every error about a refused one.
const FIX: &str = "with `htpasswd -B` (bcrypt) or argon2";

/// The keyed hash of the cache's tags: BLAKE2b with a 32-byte output and a random key drawn
/// when the file is loaded, so a tag in memory says nothing about a password without the key.
type Tagger = blake2::Blake2bMac<U32>;
type Tag = CtOutput<Tagger>;

/// One user's password hash, parsed and checked at load.
#[derive(Clone)]
enum Hash {
    /// A bcrypt string (60 bytes, `$2a$`/`$2b$`/`$2y$`), its cost within 4..=31.
    Bcrypt(String),
    /// An argon2 PHC string whose algorithm, version, parameters, salt and output all parse.
    Argon2(Box<argon2::PasswordHash>),
}

impl Hash {
    /// Parses the hash field of a line; the error says what the field is and what to do, and
    /// never repeats the field (it may be a password).
    fn parse(text: &str) -> Result<Hash, String> {
        if text.is_empty() {
            return Err(format!("no password hash; hash the password {FIX}"));
        }
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            if text.starts_with(prefix) {
                return Self::bcrypt(text).map_err(|e| {
                    format!("malformed bcrypt hash ({e}); regenerate it with `htpasswd -B`")
                });
            }
        }
        if text.starts_with("$argon2") {
            return Self::argon2(text)
                .map_err(|e| format!("malformed argon2 hash ({e}); regenerate it"));
        }
        let weak = |what: &str| {
            format!("{what}, fast enough to guess offline; re-hash the password {FIX}")
        };
        let refused = |what: &str| format!("{what}, not supported; re-hash the password {FIX}");
        Err(if text.starts_with("{SHA}") {
            weak("SHA-1 hash ({SHA})")
        } else if text.starts_with("$apr1$") {
            weak("Apache MD5 hash ($apr1$)")
        } else if text.starts_with("$1$") {
            weak("MD5-crypt hash ($1$)")
        } else if text.starts_with("$5$") {
            refused("SHA-256-crypt hash ($5$)")
        } else if text.starts_with("$6$") {
            refused("SHA-512-crypt hash ($6$)")
        } else if text.starts_with("$2x$") {
            refused("bcrypt hash of the buggy `$2x$` variant")
        } else if text.starts_with('$') || text.starts_with('{') {
            format!(
                "unrecognised hash scheme (accepted: bcrypt `$2a$`/`$2b$`/`$2y$`, argon2 \
                 `$argon2id$`/`$argon2i$`/`$argon2d$`); hash the password {FIX}"
            )
        } else if text.len() == 13
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        {
            format!("DES-crypt hash or a plain-text password; hash the password {FIX}")
        } else {
            format!("plain-text password; hash it {FIX}")
        })
    }

    fn bcrypt(text: &str) -> Result<Hash, String> {
        let parts: bcrypt::HashParts = text.parse().map_err(|e: bcrypt::BcryptError| {
            e.to_string()
                .trim_start_matches("Invalid hash: ")
                .to_string()
        })?;
        let cost = parts.get_cost();
        if !(4..=MAX_BCRYPT_COST).contains(&cost) {
            return Err(format!(
                "cost {cost} outside 4..={MAX_BCRYPT_COST} (each check at cost {cost} would take \
                 about {} ms; 10 to 12 is usual)",
                50u64 << cost.saturating_sub(10).min(30)
            ));
        }
        Ok(Hash::Bcrypt(text.to_string()))
    }

    fn argon2(text: &str) -> Result<Hash, String> {
        let hash = argon2::PasswordHash::new(text).map_err(|e| e.to_string())?;
        argon2::Algorithm::try_from(hash.algorithm.as_str()).map_err(|e| e.to_string())?;
        if let Some(v) = hash.version {
            argon2::Version::try_from(v).map_err(|e| e.to_string())?;
        }
        let params = argon2::Params::try_from(&hash).map_err(|e| e.to_string())?;
        if params.m_cost() > MAX_ARGON2_KIB || params.t_cost() > 16 || params.p_cost() > 16 {
            return Err(format!(
                "parameters m={} KiB, t={}, p={} above what a request may cost (m at most {} \
                 KiB, t and p at most 16)",
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                MAX_ARGON2_KIB
            ));
        }
        match &hash.salt {
            None => return Err("no salt".into()),
            Some(s) if s.len() < argon2::MIN_SALT_LEN => {
                return Err(format!(
                    "salt of {} bytes, under argon2's {}",
                    s.len(),
                    argon2::MIN_SALT_LEN
                ))
            }
            Some(_) => {}
        }
        if hash.hash.is_none() {
            return Err("no hash output".into());
        }
        Ok(Hash::Argon2(Box::new(hash)))
    }

    /// The slow part: recomputes the hash of `password` with this hash's salt and parameters
    /// and compares the outputs in constant time (both crates do).
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
            Hash::Argon2(h) => {
                use argon2::PasswordVerifier;
                argon2::Argon2::default()
                    .verify_password(password, &**h)
                    .is_ok()
            }
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Hash::Bcrypt(_) => "bcrypt",
            Hash::Argon2(_) => "argon2",
        }
    }
}

/// The successful verifications remembered: user → (tag of the password, when verified).
struct Cache {
    entries: Mutex<HashMap<String, (Tag, Instant)>>,
}

impl Cache {
    /// Whether `user` was verified with the password of `tag` less than [`CACHE_TTL`] before
    /// `now`. The tags are compared in constant time; an expired entry is dropped.
    fn hit(&self, user: &str, tag: &Tag, now: Instant) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some((kept, at)) = entries.get(user) else {
            return false;
        };
        if now.saturating_duration_since(*at) >= CACHE_TTL {
            entries.remove(user);
            return false;
        }
        kept == tag
    }

    /// Remembers a successful verification; when [`CACHE_ENTRIES`] are kept, drops the expired
    /// ones, then the oldest.
    fn remember(&self, user: &str, tag: Tag, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(user) && entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < CACHE_TTL);
            if entries.len() >= CACHE_ENTRIES {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(u, _)| u.clone());
                if let Some(u) = oldest {
                    entries.remove(&u);
                }
            }
        }
        entries.insert(user.to_string(), (tag, now));
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The users of a `users_file`, with the cache of their recent successful verifications. Built
/// by [`Users::load`]; shared as `Arc<Users>` by the requests of the routes that name the file.
pub struct Users {
    hashes: HashMap<String, Hash>,
    /// The file's first hash: an unknown user's password is checked against it and refused,
    /// so that answer costs what a known user's does.
    dummy: Hash,
    key: Key<Tagger>,
    cache: Cache,
    /// Bounds the hash verifications [`Users::verify_async`] runs at once to the machine's
    /// cores, so a flood of wrong passwords cannot take the whole blocking pool.
    slots: Arc<tokio::sync::Semaphore>,
    /// Hash verifications run (cache misses, unknown users' included).
    slow: AtomicU64,
}

impl fmt::Debug for Users {
    /// Names the users and their hash schemes, never a hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<(&str, &str)> = self
            .hashes
            .iter()
            .map(|(u, h)| (u.as_str(), h.scheme()))
            .collect();
        users.sort_unstable();
        f.debug_struct("Users")
            .field("users", &users)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Reads and checks a users file (`user:hash` per line, UTF-8, blank lines and lines
    /// starting with `#` ignored, surrounding whitespace and a `\r` trimmed).
    ///
    /// Errors, each naming the file, and for a line its number and user: the file cannot be
    /// read (with the OS reason); a line is not UTF-8 or has no `:`; an empty user; a user with
    /// a `:` (RFC 7617 2: the client's `user:password` splits at the first colon) or a control
    /// character; a user listed twice; a hash that is not bcrypt or argon2 (plain text,
    /// `{SHA}`, `$apr1$`, `$1$`, `$5$`, `$6$`, anything else) or does not parse; no users.
    pub fn load(path: &Path) -> Result<Users, String> {
        let bytes = read_bounded(path)
            .map_err(|e| format!("cannot read users file `{}`: {e}", path.display()))?;
        let at = |n: usize, what: String| format!("`{}`: line {n}: {what}", path.display());
        let mut hashes: HashMap<String, Hash> = HashMap::new();
        let mut lines: HashMap<String, usize> = HashMap::new();
        let mut dummy = None;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let line = std::str::from_utf8(raw)
                .map_err(|_| at(n, "not UTF-8".into()))?
                .trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = split_line(line)
                .ok_or_else(|| at(n, "no `:` (each line is `user:hash`)".into()))?;
            if user.is_empty() {
                return Err(at(n, "empty user name (each line is `user:hash`)".into()));
            }
            if user.contains(':') {
                return Err(at(
                    n,
                    format!(
                        "user {user:?} contains `:`, which Basic authentication cannot carry \
                         (RFC 7617 2); rename the user"
                    ),
                ));
            }
            if user.chars().any(char::is_control) {
                return Err(at(n, format!("user {user:?} contains a control character")));
            }
            if let Some(first) = lines.get(user) {
                return Err(at(
                    n,
                    format!(
                        "user {user:?} is already listed on line {first}; keep one line per user"
                    ),
                ));
            }
            let hash = Hash::parse(hash).map_err(|e| at(n, format!("user {user:?}: {e}")))?;
            dummy.get_or_insert_with(|| hash.clone());
            lines.insert(user.to_string(), n);
            hashes.insert(user.to_string(), hash);
        }
        let Some(dummy) = dummy else {
            return Err(format!(
                "users file `{}` lists no users (each line is `user:hash`)",
                path.display()
            ));
        };
        let mut key = Key::<Tagger>::default();
        getrandom::fill(&mut key[..]).map_err(|e| format!("cannot draw a random key: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Users {
            hashes,
            dummy,
            key,
            cache: Cache {
                entries: Mutex::new(HashMap::new()),
            },
            slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            slow: AtomicU64::new(0),
        })
    }

    /// Whether `password` is `user`'s. Answers from the cache when the same credentials
    /// verified less than [`CACHE_TTL`] ago; otherwise runs one hash verification (tens of
    /// milliseconds: call it off the event loop, or use [`Users::verify_async`]), also for an
    /// unknown user, against a dummy hash, so timing does not tell which users exist. Only
    /// successes are cached. bcrypt reads the first 72 bytes of a password, as htpasswd does.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.verify_at(user, password, Instant::now())
    }

    /// [`Users::verify`] that answers a cache hit inline and runs a miss on tokio's blocking
    /// pool (at most one verification per core at once; the others wait their turn), so the
    /// event loop never stalls on a hash. Must be called within a tokio runtime.
    pub async fn verify_async(self: &Arc<Self>, user: String, password: Vec<u8>) -> bool {
        let tag = self.tag(&user, &password);
        if self.cache.hit(&user, &tag, Instant::now()) {
            return true;
        }
        let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
            return false;
        };
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let ok = this.verify_slow(&user, &password, tag, Instant::now());
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false)
    }

    /// Hash verifications run so far (cache misses, unknown users' included): a cache that
    /// works keeps this well under the count of requests.
    pub fn slow_verifications(&self) -> u64 {
        self.slow.load(Ordering::Relaxed)
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Never true for a loaded file (an empty one is refused); here for `len`'s sake.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// [`Users::verify`] at a given time (the cache's clock).
    fn verify_at(&self, user: &str, password: &[u8], now: Instant) -> bool {
        let tag = self.tag(user, password);
        self.cache.hit(user, &tag, now) || self.verify_slow(user, password, tag, now)
    }

    /// One hash verification (the dummy one for an unknown user); a success is remembered as
    /// of `now`.
    fn verify_slow(&self, user: &str, password: &[u8], tag: Tag, now: Instant) -> bool {
        self.slow.fetch_add(1, Ordering::Relaxed);
        match self.hashes.get(user) {
            Some(hash) => {
                let ok = hash.matches(password);
                if ok {
                    self.cache.remember(user, tag, now);
                }
                ok
            }
            None => {
                std::hint::black_box(self.dummy.matches(password));
                false
            }
        }
    }

    /// The keyed tag of a user and password: `len(user) || user || password` under the key.
    fn tag(&self, user: &str, password: &[u8]) -> Tag {
        let mut mac = Tagger::new(&self.key);
        mac.update(&(user.len() as u64).to_le_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize()
    }
}

/// Splits a users-file line into user and hash. The user ends at the first `:`, unless the
/// text after the last `:` is a bcrypt or argon2 hash: then the user is all before it (and is
/// refused for its `:`). Either way a plain-text password with a colon is never shown as part
/// of a user name.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let (first, _) = line.split_once(':')?;
    let (before_last, last) = line.rsplit_once(':')?;
    let hash_like = ["$2a$", "$2b$", "$2y$", "$argon2"]
        .iter()
        .any(|p| last.starts_with(p));
    if hash_like {
        Some((before_last, last))
    } else {
        Some((first, &line[first.len() + 1..]))
    }
}

/// Reads an `Authorization: Basic <base64>` value (RFC 7617 2; the scheme's case does not
/// matter, RFC 9110 11.1) into `(user, password)`, split at the first `:` of the decoded
/// bytes, so the password may hold colons and be empty. `None` for a value over
/// [`MAX_AUTHORIZATION_LEN`] bytes, another scheme, invalid base64 (RFC 4648 4, padded), no
/// colon, a user that is not UTF-8 or holds a control character.
pub fn parse_authorization(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let bytes = value.as_bytes();
    if bytes.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?.trim_matches([' ', '\t']);
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_start_matches(' '))
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?;
    if user.chars().any(char::is_control) {
        return None;
    }
    Some((user.to_string(), decoded[colon + 1..].to_vec()))
}

/// The `WWW-Authenticate` value of a 401 answer: `Basic realm="<realm>", charset="UTF-8"`
/// (RFC 7617 2 and 2.1), the realm a quoted-string with `"` and `\` escaped by a backslash
/// (RFC 9110 5.6.4). Control characters, which a header value cannot carry, are left out.
pub fn challenge(realm: &str) -> HeaderValue {
    let mut out = String::with_capacity(realm.len() + 32);
    out.push_str("Basic realm=\"");
    for c in realm.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\", charset=\"UTF-8\"");
    HeaderValue::from_str(&out)
        .unwrap_or_else(|_| HeaderValue::from_static("Basic charset=\"UTF-8\""))
}

#[cfg(test)]
mod tests;
