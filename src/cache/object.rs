//! A stored response ([`Object`]): its head, body and the coded forms made of it, its
//! freshness arithmetic, and what it weighs against the cache's byte budget.

use crate::clock;
use crate::coding::Coding;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Fixed cost of one entry on top of its key, headers and body: the object itself behind its
/// `Arc`, and the store's node for the key (measured with jemalloc's size classes; see the
/// `what_the_cache_holds` test, which keeps the real total within a quarter of `max_size`).
pub(super) const ENTRY_OVERHEAD: u64 = std::mem::size_of::<Object>() as u64 + 16 + 160;

/// What one slot of a stored header map costs beyond its name and value bytes: the bucket
/// (name, value, hash and links, about a hundred bytes), its index, and the value's own
/// allocation. Counted per slot of the map's capacity, not per field.
const FIELD_OVERHEAD: u64 = 136;

/// A stored response.
#[derive(Debug)]
pub struct Object {
    pub status: StatusCode,
    /// End-to-end headers as received (hop-by-hop and `Set-Cookie` removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was stored, on [`clock::now_ms`].
    pub stored_ms: u64,
    /// Its age in milliseconds when stored ([`crate::cache::policy::initial_age_ms`]).
    pub initial_age_ms: u64,
    /// Freshness lifetime in seconds.
    pub lifetime: u64,
    /// Seconds past expiry it may be served while a refresh runs / when the origin fails.
    pub swr: u64,
    pub sie: u64,
    /// `no-cache`: every use must be revalidated first.
    pub no_cache: bool,
    /// `must-revalidate` and kin: never served stale.
    pub forbids_stale: bool,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
    /// Whether the stale windows (`swr`, `sie`) are the route's `grace` rather than the
    /// response's own directives (for `Cache-Status`).
    pub from_grace: (bool, bool),
    /// The route that stored it (its index in the snapshot): an entry is served only on its
    /// own route, since routes that share a URL may reach different servers or check
    /// different credentials. `u32::MAX`: any route (static files, keyed by their path).
    pub route: u32,
    /// The content coding of `body` (from `Content-Encoding`); `None`: one langur cannot read.
    pub coding: Option<Coding>,
    /// Stored for a route with `compress`: this one entry answers every coding (its forms), so
    /// `Vary: Accept-Encoding` does not make variants of it.
    pub negotiated: bool,
    /// The same body in other codings, made on first demand; each counted in the weight, and
    /// dropped before the body itself when the store needs room.
    pub(super) forms: Vec<(Coding, Bytes)>,
    /// Forms some request is making right now (a bit per coding), so each is made once.
    making: AtomicU8,
    /// Stored once per object for the weigher.
    pub(super) weight: u64,
}

impl Object {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        initial_age_ms: u64,
        lifetime: u64,
        swr: u64,
        sie: u64,
        no_cache: bool,
        forbids_stale: bool,
    ) -> Object {
        let etag = headers.get(http::header::ETAG).cloned();
        let last_modified = headers.get(http::header::LAST_MODIFIED).cloned();
        let weight = ENTRY_OVERHEAD + headers_size(&headers) + body.len() as u64;
        let coding = Coding::of(&headers);
        Object {
            status,
            headers,
            body,
            stored_ms: clock::now_ms(),
            initial_age_ms,
            lifetime,
            swr,
            sie,
            no_cache,
            forbids_stale,
            etag,
            last_modified,
            from_grace: (false, false),
            route: u32::MAX,
            coding,
            negotiated: false,
            forms: Vec::new(),
            making: AtomicU8::new(0),
            weight,
        }
    }

    /// The body in coding `c`: the body itself, or a form made before.
    pub fn form(&self, c: Coding) -> Option<&Bytes> {
        if self.coding == Some(c) {
            return Some(&self.body);
        }
        self.forms.iter().find(|(f, _)| *f == c).map(|(_, b)| b)
    }

    /// Claims the making of form `c` for one request: false when another is making it.
    pub fn claim(&self, c: Coding) -> bool {
        let bit = 1u8 << (c as u8);
        self.making.fetch_or(bit, Relaxed) & bit == 0
    }

    /// Gives up a claim (the form was not finished).
    pub fn release(&self, c: Coding) {
        self.making.fetch_and(!(1u8 << (c as u8)), Relaxed);
    }

    /// Bytes held by the forms.
    pub fn forms_size(&self) -> u64 {
        self.forms.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// This object with one more form (replacing one of the same coding).
    pub(super) fn with_form(&self, c: Coding, body: Bytes) -> Object {
        let mut o = self.copy_with(self.headers.clone(), self.body.clone());
        o.weight -= o.forms_size();
        o.forms.retain(|(f, _)| *f != c);
        o.forms.push((c, body));
        o.weight += o.forms_size();
        o
    }

    /// This object without its forms (room is needed; the body stays).
    pub(super) fn without_forms(&self) -> Object {
        let mut o = self.copy_with(self.headers.clone(), self.body.clone());
        o.weight -= o.forms_size();
        o.forms.clear();
        o
    }

    /// The rule that lets this object be served stale while it is refreshed, as
    /// `Cache-Status` says it.
    pub fn swr_rule(&self) -> &'static str {
        if self.from_grace.0 {
            "grace"
        } else {
            "stale-while-revalidate"
        }
    }

    /// The rule that lets this object be served stale when its servers fail.
    pub fn sie_rule(&self) -> &'static str {
        if self.from_grace.1 {
            "grace"
        } else {
            "stale-if-error"
        }
    }

    /// The same response facts (time stored, age, lifetime, windows) with other headers and
    /// body. The forms come along when the body and its coding are the same (a revalidation
    /// updates the head only).
    pub fn copy_with(&self, headers: HeaderMap, body: Bytes) -> Object {
        let same_body = body.as_ptr() == self.body.as_ptr() && body.len() == self.body.len();
        let mut o = Object::new(
            self.status,
            headers,
            body,
            self.initial_age_ms,
            self.lifetime,
            self.swr,
            self.sie,
            self.no_cache,
            self.forbids_stale,
        );
        o.stored_ms = self.stored_ms;
        o.from_grace = self.from_grace;
        o.route = self.route;
        o.negotiated = self.negotiated;
        if same_body && o.coding == self.coding {
            o.forms = self.forms.clone();
            o.weight += o.forms_size();
        }
        o
    }

    /// Current age in milliseconds: its age when stored plus the time since.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.initial_age_ms
            .saturating_add(now_ms.saturating_sub(self.stored_ms))
    }

    /// Current age in whole seconds (the `Age` field, RFC 9111 5.1).
    pub fn age(&self, now_ms: u64) -> u64 {
        self.age_ms(now_ms) / 1000
    }

    /// Milliseconds of freshness left: positive while fresh (RFC 9111 4.2: the lifetime is
    /// greater than the age), zero or negative once stale.
    pub fn ttl_ms(&self, now_ms: u64) -> i64 {
        let lifetime = i64::try_from(self.lifetime.saturating_mul(1000)).unwrap_or(i64::MAX);
        let age = i64::try_from(self.age_ms(now_ms)).unwrap_or(i64::MAX);
        lifetime.saturating_sub(age)
    }

    /// Seconds of freshness left, zero or negative once stale: the lifetime less the `Age`
    /// an answer from it says ([`Object::age`]), so the two add up to the lifetime.
    /// `Cache-Status`'s `ttl` (RFC 9211 2.5).
    pub fn ttl(&self, now_ms: u64) -> i64 {
        let lifetime = i64::try_from(self.lifetime).unwrap_or(i64::MAX);
        lifetime.saturating_sub(i64::try_from(self.age(now_ms)).unwrap_or(i64::MAX))
    }

    /// May be served without asking the origin.
    pub fn fresh(&self, now_ms: u64) -> bool {
        !self.no_cache && self.ttl_ms(now_ms) > 0
    }

    /// Stale, but less than `window` seconds past expiry, and allowed to be served stale.
    pub fn within(&self, now_ms: u64, window: u64) -> bool {
        let window = i64::try_from(window.saturating_mul(1000)).unwrap_or(i64::MAX);
        let past = self.ttl_ms(now_ms).checked_neg().unwrap_or(i64::MAX);
        !self.forbids_stale && !self.no_cache && past < window
    }

    /// A file kept for a `root` route: stored on no route (keyed by its path) and checked
    /// against the file at every request, so it is never older than the file itself and its
    /// answers carry no `Age`.
    pub fn is_file(&self) -> bool {
        self.route == u32::MAX
    }

    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Whether this object can still be of any use: fresh, servable stale, or revalidatable.
    pub fn useful(&self, now_ms: u64) -> bool {
        self.fresh(now_ms) || self.has_validator() || self.within(now_ms, self.swr.max(self.sie))
    }
}

/// The bytes a stored header map holds: names and values, plus [`FIELD_OVERHEAD`] per slot of
/// its capacity.
pub fn headers_size(h: &HeaderMap) -> u64 {
    let text: u64 = h
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum();
    text + h.capacity().max(h.len()) as u64 * FIELD_OVERHEAD
}
