//! Filling the cache as a body streams through: [`Fill`] stores a new response, [`FormFill`]
//! adds a coded form (gzip, br, zstd) to a stored one.

use super::*;

/// How a response will be stored once its body has streamed through (see
/// `ProxyBody::fill`). Dropping it unfinished stores nothing and wakes the waiters.
///
/// The body is copied into one buffer as it passes (so the entry pins none of the connection's
/// read buffers), and what it holds is counted against [`Cache::fill_budget`].
pub struct Fill {
    pub cache: Arc<Cache>,
    pub primary: String,
    /// The request's values of the headers the response varies on.
    pub req_vary: HeaderMap,
    pub meta: Object,
    body: bytes::BytesMut,
    pub guard: Option<FlightGuard>,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("primary", &self.primary)
            .field("size", &self.body.len())
            .finish()
    }
}

impl Fill {
    pub fn new(
        cache: Arc<Cache>,
        primary: String,
        req_vary: HeaderMap,
        meta: Object,
        guard: Option<FlightGuard>,
    ) -> Fill {
        Fill {
            cache,
            primary,
            req_vary,
            meta,
            body: bytes::BytesMut::new(),
            guard,
        }
    }

    /// Takes the next piece of the body; false once it is over `max_object_size`, or when
    /// the fills in progress together would pass their budget (then the fill is abandoned).
    pub fn push(&mut self, data: &Bytes) -> bool {
        let n = data.len() as u64;
        let size = self.body.len() as u64 + n;
        // The object's weight so far is its fixed cost and head: the same bound as `fits`.
        if !self.cache.keeps(self.meta.weight + size) {
            return false;
        }
        let before = self.cache.filling.fetch_add(n, Relaxed);
        if before + n > self.cache.fill_budget() {
            self.cache.filling.fetch_sub(n, Relaxed);
            return false;
        }
        self.body.extend_from_slice(data);
        true
    }

    /// The body is complete: store it, then wake the waiters.
    pub fn finish(mut self) {
        let body = std::mem::take(&mut self.body).freeze();
        self.cache.filling.fetch_sub(body.len() as u64, Relaxed);
        let obj = self.meta.copy_with(self.meta.headers.clone(), body);
        self.cache.insert(&self.primary, &self.req_vary, obj);
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        // Abandoned (or finished: then the buffer was taken and this is zero).
        self.cache
            .filling
            .fetch_sub(self.body.len() as u64, Relaxed);
    }
}

/// Another coding of a stored object, made while it streams to the client that asked for it
/// first, and kept with the object when complete ([`Cache::add_form`]). Only one request makes
/// a given form at a time ([`Object::claim`]); what it holds counts against
/// [`Cache::fill_budget`], like a [`Fill`]. Dropped unfinished, it keeps nothing.
pub struct FormFill {
    cache: Arc<Cache>,
    key: String,
    obj: Arc<Object>,
    coding: Coding,
    body: bytes::BytesMut,
    /// Past a bound: nothing is kept, the response still streams.
    abandoned: bool,
}

impl std::fmt::Debug for FormFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormFill")
            .field("key", &self.key)
            .field("coding", &self.coding)
            .field("size", &self.body.len())
            .finish()
    }
}

impl FormFill {
    /// Claims the making of form `coding` of `obj`, stored under `key`; `None` when another
    /// request is making it.
    pub fn claim(cache: &Arc<Cache>, key: &str, obj: &Arc<Object>, coding: Coding) -> Option<Self> {
        obj.claim(coding).then(|| FormFill {
            cache: cache.clone(),
            key: key.to_string(),
            obj: obj.clone(),
            coding,
            body: bytes::BytesMut::new(),
            abandoned: false,
        })
    }

    /// Takes the next piece of the form.
    pub fn push(&mut self, data: &[u8]) {
        if self.abandoned {
            return;
        }
        let n = data.len() as u64;
        let size = self.obj.weight + self.body.len() as u64 + n;
        let before = self.cache.filling.fetch_add(n, Relaxed);
        if !self.cache.keeps(size) || before + n > self.cache.fill_budget() {
            self.cache.filling.fetch_sub(n, Relaxed);
            self.abandon();
            return;
        }
        self.body.extend_from_slice(data);
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        let held = std::mem::take(&mut self.body);
        self.cache.filling.fetch_sub(held.len() as u64, Relaxed);
    }

    /// The form is complete: kept with its object.
    pub fn finish(mut self) {
        if self.abandoned {
            return;
        }
        let body = std::mem::take(&mut self.body).freeze();
        self.cache.filling.fetch_sub(body.len() as u64, Relaxed);
        self.cache.add_form(&self.key, &self.obj, self.coding, body);
    }
}

impl Drop for FormFill {
    fn drop(&mut self) {
        self.cache
            .filling
            .fetch_sub(self.body.len() as u64, Relaxed);
        self.obj.release(self.coding);
    }
}
