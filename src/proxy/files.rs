//! Static files for routes with `root` (legacy `DocumentRoot`): the caching plugin's original
//! job. Files get their Content-Type from the extension, `Last-Modified`, an `ETag` made of
//! modification time and size, `Range` and HEAD support, and 304s. With `cache = true` a file
//! is kept in the shared cache under the same rules, so a hot file is read from disk once; each
//! use checks the file's metadata, so a changed file is read again.
//!
//! With `precompressed = true`, a file's sibling `NAME.zst`, `NAME.br` or `NAME.gz` is sent
//! instead to a client that accepts that coding (in the route's order of `compress.encodings`,
//! else zstd, br, gzip), with the file's type and the sibling's own `ETag`, `Last-Modified` and
//! length; every answer of the route names `Accept-Encoding` in `Vary`. A range is always
//! answered from the file itself.
//!
//! Containment: the path is percent-decoded once, any `..` segment, NUL or backslash is
//! refused, and the file is opened beneath the root: symlinks are followed, but never out of
//! it ([`root`]). Everything refused is a plain 404, indistinguishable from a missing file.

pub mod root;

use crate::access_log::AccessLog;
use crate::cache::policy::{self, RangeAnswer};
use crate::cache::Object;
use crate::coding::{Accept, Coding};
use crate::proxy::body::ProxyBody;
use crate::proxy::cached::{self, CACHE_STATUS};
use crate::proxy::{RouteRt, Runtime};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, LAST_MODIFIED,
};
use http::{Method, Request, Response, StatusCode};
use root::{Opened, Root};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Files are fresh for as long as their metadata does not change.
const FILE_LIFETIME: u64 = 10 * 365 * 24 * 3600;

/// Serves a request on a file route.
pub async fn serve<B>(
    rt: &Arc<Runtime>,
    route: &RouteRt,
    req: Request<B>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n", log);
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(root) = route.root.as_deref() else {
        return plain(StatusCode::NOT_FOUND, "not found\n", log);
    };
    let opened = match resolve(root, req.uri().path()) {
        Ok(o) => o,
        Err(NoFile::Directory) => return to_directory(req.uri(), log),
        Err(NoFile::NotFound) => return plain(StatusCode::NOT_FOUND, "not found\n", log),
    };
    let how = Ask {
        method: &method,
        req: req.headers(),
        compress: route.encoding.compress.as_deref(),
    };
    let precompressed = route.encoding.precompressed;
    let order = route
        .encoding
        .compress
        .as_ref()
        .map_or(&crate::coding::DEFAULT_ORDER[..], |c| &c.encodings[..]);
    let sib = precompressed
        .then(|| sibling(root, &opened.rel, order, req.headers()))
        .flatten();
    let mut resp = match sib {
        Some((coding, sib)) => {
            // The file's type; the sibling's validators and length; kept in the cache as the
            // file would be, and never compressed again.
            let (mut headers, etag) = file_headers(&opened.rel, &sib.meta);
            headers.insert(http::header::CONTENT_ENCODING, coding.header());
            let how = Ask {
                compress: None,
                ..how
            };
            let mut r = file(rt, route, root, sib, (headers, etag), &how, log).await;
            r.extensions_mut()
                .insert(crate::proxy::compress::Negotiated);
            r
        }
        None => {
            let head = file_headers(&opened.rel, &opened.meta);
            file(rt, route, root, opened, head, &how, log).await
        }
    };
    if precompressed {
        crate::proxy::compress::add_vary(resp.headers_mut());
    }
    resp
}

/// A file (or a pre-compressed sibling) with its response head (`head`: the fields and the
/// `ETag`): from the shared cache on a route with `cache` (when it may be kept), else streamed
/// from disk.
async fn file(
    rt: &Arc<Runtime>,
    route: &RouteRt,
    root: &Root,
    opened: Opened,
    (headers, etag): (HeaderMap, HeaderValue),
    how: &Ask<'_>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let size = opened.meta.len();
    let rules = &rt.cache.rules;
    let keep = route.cache
        && size <= rules.max_object_size
        && policy::type_allowed(headers.get(CONTENT_TYPE), &rules.types);
    if keep {
        let key = file_key(root, &opened, headers.get(http::header::CONTENT_ENCODING));
        return kept(&rt.cache, key, opened, headers, &etag, how, log).await;
    }
    // Only a file being kept is read whole; every other answer streams in bounded chunks, so
    // a slow client costs a chunk, not the file.
    let status = route.cache.then_some("langur; fwd=miss; detail=too-large");
    let (method, req) = (how.method, how.req);
    stream(opened.file, size, headers, &etag, method, req, status, log)
}

/// The sibling of `rel` in the coding the request prefers among `order` (`.zst`, `.br`,
/// `.gz`), when it is a file under `root`. None for a range, or a client that accepts none.
fn sibling(root: &Root, rel: &Path, order: &[Coding], req: &HeaderMap) -> Option<(Coding, Opened)> {
    if req.contains_key(http::header::RANGE) {
        return None;
    }
    let accept = Accept::parse(req);
    let mut wanted: Vec<Coding> = order
        .iter()
        .copied()
        .filter(|c| accept.accepts(*c))
        .collect();
    // Highest q-value first; the route's order among equals (the sort is stable).
    wanted.sort_by_key(|c| std::cmp::Reverse(accept.q(*c)));
    let first = wanted.first()?;
    if accept.q(Coding::Identity) > accept.q(*first) {
        return None;
    }
    wanted.into_iter().find_map(|c| {
        let ext = match c {
            Coding::Gzip => "gz",
            Coding::Br => "br",
            Coding::Zstd => "zst",
            Coding::Identity => return None,
        };
        let mut name = rel.as_os_str().to_owned();
        name.push(".");
        name.push(ext);
        let sib = root.open(PathBuf::from(name))?;
        sib.meta.is_file().then_some((c, sib))
    })
}

/// A kept file's cache key: its path, and its device, inode and change time (`st_ctime`, which
/// no program can set back): a file replaced by another of the same size and modification time
/// (a release copied with its times kept, an inode reused, a root moved to another file
/// system) or rewritten in place with its time kept is a different entry, where the `ETag`
/// (time and size, as nginx's) would match.
///
/// A pre-compressed sibling sent for its file (`coding`: its `Content-Encoding`) is another
/// entry than the same file asked for by its own name: the two answers differ in type and
/// coding.
fn file_key(root: &Root, f: &Opened, coding: Option<&HeaderValue>) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = &f.meta;
    let coding = coding.and_then(|c| c.to_str().ok()).unwrap_or("");
    format!(
        "file://{}/{}#{:x}:{:x}:{:x}.{:x};{coding}",
        root.path().display(),
        f.rel.display(),
        m.dev(),
        m.ino(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// What a request asks of a file.
#[derive(Clone, Copy)]
struct Ask<'a> {
    method: &'a Method,
    req: &'a HeaderMap,
    compress: Option<&'a crate::config::compress::Compress>,
}

/// A file's response head: `Content-Type` from its extension, `Last-Modified`, and an `ETag`
/// of its modification time (seconds and nanoseconds) and size, in hex, which is also returned.
fn file_headers(path: &Path, meta: &std::fs::Metadata) -> (HeaderMap, HeaderValue) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = HeaderValue::from_str(&format!(
        "\"{:x}-{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    ))
    .expect("hex is a valid header value");
    let mut headers = HeaderMap::new();
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(mime.as_ref())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(v) = policy::http_date_value(mtime.as_secs()) {
        headers.insert(LAST_MODIFIED, v);
    }
    headers.insert(ETAG, etag.clone());
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    (headers, etag)
}

/// A file kept in the shared cache (`cache = true`, small enough, a type kept): served from
/// the entry while its `ETag` is the file's; else read whole and stored. Concurrent misses of
/// one file read it once: the others wait for the store (a hit takes no lock).
async fn kept(
    cache: &Arc<crate::cache::Cache>,
    key: String,
    opened: Opened,
    headers: HeaderMap,
    etag: &HeaderValue,
    how: &Ask<'_>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let none = HeaderMap::new();
    let hit = |cache: &crate::cache::Cache| {
        cache
            .lookup(&key, &none)
            .map(|(_, o)| o)
            .filter(|o| o.etag.as_ref() == Some(etag))
    };
    let mut _guard = None;
    let mut found = hit(cache);
    if found.is_none() {
        match cache.join(&key) {
            crate::cache::Join::Wait(rx) => {
                cache.counters.coalesced.fetch_add(1, Relaxed);
                crate::cache::wait(rx, cache.rules.lock_timeout).await;
                found = hit(cache);
            }
            crate::cache::Join::Leader(g) => _guard = Some(g),
        }
    }
    let reply = |home| cached::Reply {
        method: how.method,
        req: how.req,
        compress: how.compress,
        home,
    };
    if let Some(obj) = found {
        cache.counters.hits.fetch_add(1, Relaxed);
        let r = reply(Some((cache, &key)));
        return cached::serve(&obj, &r, "langur; hit".into(), "hit", log);
    }
    cache.counters.misses.fetch_add(1, Relaxed);
    let (file, len) = (opened.file, opened.meta.len());
    let data = if len <= READ_INLINE_MAX {
        read_inline(&file, 0, len)
    } else {
        tokio::task::spawn_blocking(move || read_inline(&file, 0, len))
            .await
            .ok()
            .flatten()
    };
    let Some(body) = data else {
        return plain(StatusCode::NOT_FOUND, "not found\n", log);
    };
    let obj = Object::new(
        StatusCode::OK,
        headers,
        body,
        0,
        FILE_LIFETIME,
        0,
        0,
        false,
        false,
    );
    let copy = obj.copy_with(obj.headers.clone(), obj.body.clone());
    let status = if cache.insert(&key, &none, copy) {
        "langur; fwd=miss; stored"
    } else {
        "langur; fwd=miss"
    };
    cached::serve(&Arc::new(obj), &reply(None), status.into(), "miss", log)
}

/// A file not kept in the cache, streamed from disk in chunks as the client takes them.
/// `cache_status` is set on cached routes (the file was too large or of a type not kept).
#[allow(clippy::too_many_arguments)]
fn stream(
    file: std::fs::File,
    size: u64,
    mut headers: HeaderMap,
    etag: &HeaderValue,
    method: &Method,
    req: &HeaderMap,
    cache_status: Option<&'static str>,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let lm = headers.get(LAST_MODIFIED).cloned();
    if policy::precondition_failed(req, Some(etag), lm.as_ref()) {
        return plain(StatusCode::PRECONDITION_FAILED, "", log);
    }
    if policy::not_modified(req, Some(etag), lm.as_ref()) {
        let mut r = plain(StatusCode::NOT_MODIFIED, "", log);
        r.headers_mut().insert(ETAG, etag.clone());
        if let Some(lm) = lm {
            r.headers_mut().insert(LAST_MODIFIED, lm);
        }
        return r;
    }
    let (status, start, len) = match policy::range(req, size, Some(etag), lm.as_ref()) {
        RangeAnswer::Full => (StatusCode::OK, 0, size),
        RangeAnswer::Partial(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
                headers.insert(CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "", log);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(cs) = cache_status {
        headers.insert(CACHE_STATUS, HeaderValue::from_static(cs));
    }
    if let Some(l) = &mut log {
        l.status = status.as_u16();
        // A miss only on a route with a cache; else the cache had no part in it.
        if cache_status.is_some() {
            l.cache = "miss";
        }
    }
    let body = if method == Method::HEAD {
        ProxyBody::full(Bytes::new(), log)
    } else if let Some(data) = (len <= READ_INLINE_MAX)
        .then(|| read_inline(&file, start, len))
        .flatten()
    {
        ProxyBody::full(data, log)
    } else {
        match ProxyBody::file(file, start, len, log) {
            Ok(b) => b,
            Err(log) => return plain(StatusCode::NOT_FOUND, "not found\n", log),
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Files (or ranges) up to this size are read whole in the worker's own thread, as nginx reads
/// files (its `aio` is off by default): from the page cache such a read takes microseconds,
/// where tokio's blocking pool costs a thread's wake-up for each step. Larger ones stream from
/// the blocking pool in 64 KiB chunks.
const READ_INLINE_MAX: u64 = 64 * 1024;

/// `len` bytes of `file` from `start`; `None` when it cannot be read or has changed size (the
/// streaming path then answers as it would).
fn read_inline(mut f: &std::fs::File, start: u64, len: u64) -> Option<Bytes> {
    use std::io::{Read, Seek};
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start)).ok()?;
    }
    let mut data = Vec::with_capacity(usize::try_from(len).ok()?);
    f.take(len).read_to_end(&mut data).ok()?;
    (data.len() as u64 == len).then(|| Bytes::from(data))
}

fn plain(
    status: StatusCode,
    body: &'static str,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    if let Some(l) = &mut log {
        l.status = status.as_u16();
    }
    let mut r = Response::new(ProxyBody::full(body, log));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

/// Why a request path names no file to serve.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFile {
    /// A directory asked for without its trailing slash: redirected, as nginx and Apache do,
    /// so the page's relative links resolve.
    Directory,
    /// Outside the root, missing, not a regular file, or a file asked for as a directory
    /// (`/a.txt/`): a 404.
    NotFound,
}

/// Opens the file a request path names under `root` (a directory's `index.html` when the path
/// ends with `/`).
pub fn resolve(root: &Root, path: &str) -> Result<Opened, NoFile> {
    // In the worker's thread, as nginx's `open` and `fstat` are (see `READ_INLINE_MAX`).
    let rel = safe_relative(path).ok_or(NoFile::NotFound)?;
    let as_directory = path.ends_with('/');
    let mut opened = root.open(rel).ok_or(NoFile::NotFound)?;
    if opened.meta.is_dir() {
        if !as_directory {
            return Err(NoFile::Directory);
        }
        let index = opened.rel.join("index.html");
        opened = root.open(index).ok_or(NoFile::NotFound)?;
    } else if as_directory {
        return Err(NoFile::NotFound);
    }
    if !opened.meta.is_file() {
        return Err(NoFile::NotFound);
    }
    Ok(opened)
}

/// 301 to the same path with a trailing slash (the query kept).
fn to_directory(uri: &http::Uri, log: Option<AccessLog>) -> Response<ProxyBody> {
    let location = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let mut r = plain(StatusCode::MOVED_PERMANENTLY, "moved permanently\n", log);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// The decoded relative path, if every segment is a plain name.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return None,
            s if s.contains(':') && cfg!(windows) => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_traversal_in_every_spelling() {
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/a/%2e%2e/%2e%2e/x",
            "/..%2fetc",
            "/%2e%2e%2fetc",
            "/a%00b",
            "/a%5c..%5cb",
            "/%ff",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
        assert_eq!(
            safe_relative("/a/./b%20c.txt"),
            Some(PathBuf::from("a/b c.txt"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
    }
}
