//! `compress` (per route, and in `[defaults]` for routes that set none) and `precompressed`:
//! the settings as written ([`RawCompress`]) and validated ([`Compress`]).

use super::{At, Diag};
use crate::coding::{Coding, Level};

/// The content types compressed when a route does not list its own: text, the JSON, XML and
/// JavaScript types, SVG, icons and uncompressed font formats. Images, audio, video, archives,
/// WOFF fonts and PDFs are compressed already and left out.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/geo+json",
    "application/problem+json",
    "application/x-ndjson",
    "application/graphql-response+json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/wasm",
    "application/x-yaml",
    "application/yaml",
    "application/vnd.api+json",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
];

/// Bodies shorter than this (when their length is known) are sent as they are: below about a
/// kilobyte the coding's framing eats most of the gain (nginx's `gzip_min_length` is often set
/// to 1000 for that reason; Cloudflare's threshold is similar).
pub const DEFAULT_MIN_SIZE: u64 = 1024;

/// A route's compression, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Compress {
    /// The codings offered, in the server's order of preference (`zstd`, `br`, `gzip`).
    pub encodings: Vec<Coding>,
    /// Content types compressed, lowercased: `type/subtype`, `type/*` or `*`.
    pub types: Vec<String>,
    /// Bodies of a known length below this many bytes are not compressed.
    pub min_size: u64,
    pub level: Level,
}

impl Default for Compress {
    fn default() -> Self {
        Compress {
            encodings: crate::coding::DEFAULT_ORDER.to_vec(),
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            min_size: DEFAULT_MIN_SIZE,
            level: Level::Default,
        }
    }
}

/// How a route's answers are encoded: `compress` and `precompressed`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compression {
    /// `compress` (the route's own, else `[defaults]`'): responses encoded for clients that
    /// accept it; `None`: never.
    pub compress: Option<std::sync::Arc<Compress>>,
    /// `precompressed` (routes with `root`): a file's `.zst`, `.br` or `.gz` sibling is sent to
    /// a client that accepts that coding.
    pub precompressed: bool,
}

/// `compress = true | false | { encodings, types, min_size, level }` as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCompress {
    pub line: usize,
    /// `false`: off (on a route, not even `[defaults]`'); a table is on.
    pub on: bool,
    pub encodings: Option<Vec<At<String>>>,
    pub types: Option<Vec<At<String>>>,
    pub min_size: Option<At<String>>,
    pub level: Option<At<String>>,
}

/// The keys of a `compress` table.
pub(crate) const COMPRESS_KEYS: &[&str] = &["encodings", "types", "min_size", "level"];

/// A route's compression: its own `compress`, else `[defaults]`' (`None`: off). Every problem
/// is reported with its line and key.
pub(crate) fn compress(
    own: Option<&RawCompress>,
    defaults: Option<&RawCompress>,
    diag: &mut Diag,
) -> Option<Compress> {
    let raw = own.or(defaults)?;
    if !raw.on {
        return None;
    }
    let mut c = Compress::default();
    if let Some(list) = &raw.encodings {
        c.encodings = encodings(list, raw.line, diag);
    }
    if let Some(list) = &raw.types {
        c.types = types(list, diag);
    }
    if let Some(v) = &raw.min_size {
        match crate::config::parse_size(&v.value) {
            Ok(b) => c.min_size = b,
            Err(e) => diag.error(v.line, Some("compress.min_size"), e),
        }
    }
    if let Some(v) = &raw.level {
        c.level = match v.value.trim().to_ascii_lowercase().as_str() {
            "fast" => Level::Fast,
            "default" => Level::Default,
            "best" => Level::Best,
            _ => {
                let msg = format!("`{}` is not a level: fast, default or best", v.value);
                diag.error(v.line, Some("compress.level"), msg);
                Level::Default
            }
        };
    }
    Some(c)
}

/// `compress.encodings`: `zstd`, `br`, `gzip` in the order preferred, each once, at least one.
fn encodings(list: &[At<String>], line: usize, diag: &mut Diag) -> Vec<Coding> {
    let mut out = Vec::new();
    for e in list {
        match Coding::from_token(&e.value).filter(|c| *c != Coding::Identity) {
            Some(c) if out.contains(&c) => diag.error(
                e.line,
                Some("compress.encodings"),
                format!("`{}` is listed twice", e.value),
            ),
            Some(c) => out.push(c),
            None => diag.error(
                e.line,
                Some("compress.encodings"),
                format!(
                    "`{}` is not an encoding langur makes: zstd, br or gzip",
                    e.value
                ),
            ),
        }
    }
    if list.is_empty() {
        let msg = "`compress.encodings` lists no encoding (write `compress = false` to turn compression off)";
        diag.error(line, Some("compress.encodings"), msg);
    }
    out
}

/// `compress.types`: content type patterns, lowercased (`text/html`, `text/*`, `*`).
fn types(list: &[At<String>], diag: &mut Diag) -> Vec<String> {
    let mut out = Vec::new();
    for t in list {
        let v = t.value.trim().to_ascii_lowercase();
        let pattern = v == "*"
            || v.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !a.contains('*') && (b == "*" || !b.contains('*'))
            });
        if pattern {
            out.push(v);
        } else {
            diag.error(
                t.line,
                Some("compress.types"),
                format!(
                    "`{}` is not a content type pattern (write text/html, text/* or *)",
                    t.value
                ),
            );
        }
    }
    out
}
