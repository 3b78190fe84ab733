//! A stored response as the shared cache keeps it in Redis: a versioned, compact binary record
//! (big-endian integers, every length checked), so a value that is cut, of another version or
//! not ours at all reads as nothing, never as a wrong response or a panic.
//!
//! Layout, version 1:
//!
//! ```text
//! "LGL2" 1               magic and version (5 bytes)
//! flags                  u8: no-cache, forbids stale, negotiated, swr and sie from grace
//! status                 u16
//! route                  u32: the route that stored it (its index in the configuration)
//! written                u64: when the record was written, Unix milliseconds
//! age                    u64: the response's age then, milliseconds
//! lifetime, swr, sie     u64 each, seconds
//! fields                 u16 count, then per field: name (u16 length, bytes), value (u32
//!                        length, bytes)
//! body                   u32 length, bytes
//! ```
//!
//! The record ends exactly after the body. The age carries over between instances through the
//! wall clock (`written`): instances' clocks must agree (NTP) to within what an age may be off.

use super::Object;
use crate::clock;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

const MAGIC: &[u8; 4] = b"LGL2";
const VERSION: u8 = 1;
/// Magic, version, flags, status, route, written, age, lifetime, swr, sie, field count.
const FIXED: usize = 4 + 1 + 1 + 2 + 4 + 8 * 6 + 2;

/// The record of `obj`, written at `unix_ms` when the monotonic clock read `now_ms`. `None`
/// when a length does not fit its field (more than 65 535 fields, a body over 4 GiB).
pub fn encode(obj: &Object, now_ms: u64, unix_ms: u64) -> Option<Vec<u8>> {
    let head: usize = obj
        .headers
        .iter()
        .map(|(n, v)| 6 + n.as_str().len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(FIXED + head + 4 + obj.body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let flags = u8::from(obj.no_cache)
        | u8::from(obj.forbids_stale) << 1
        | u8::from(obj.negotiated) << 2
        | u8::from(obj.from_grace.0) << 3
        | u8::from(obj.from_grace.1) << 4;
    out.push(flags);
    out.extend_from_slice(&obj.status.as_u16().to_be_bytes());
    out.extend_from_slice(&obj.route.to_be_bytes());
    for n in [unix_ms, obj.age_ms(now_ms), obj.lifetime, obj.swr, obj.sie] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&u16::try_from(obj.headers.len()).ok()?.to_be_bytes());
    for (n, v) in &obj.headers {
        out.extend_from_slice(&u16::try_from(n.as_str().len()).ok()?.to_be_bytes());
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).ok()?.to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(obj.body.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&obj.body);
    Some(out)
}

/// Reads a record at `unix_ms` (the monotonic clock at `now_ms`): the object as if stored here
/// (its age carried over), or `None` for anything that is not a whole version-1 record.
pub fn decode(rec: &[u8], now_ms: u64, unix_ms: u64) -> Option<Object> {
    let mut r = Reader { rec, at: 0 };
    if r.take(4)? != MAGIC || r.u8()? != VERSION {
        return None;
    }
    let flags = r.u8()?;
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let route = r.u32()?;
    let (written, age, lifetime, swr, sie) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let count = r.u16()? as usize;
    // The count is not trusted for the allocation; a map past its own bound is refused.
    let mut headers = HeaderMap::with_capacity(count.min(64));
    for _ in 0..count {
        let n = r.u16()? as usize;
        let name = HeaderName::from_bytes(r.take(n)?).ok()?;
        let n = r.u32()? as usize;
        let value = HeaderValue::from_bytes(r.take(n)?).ok()?;
        headers.try_append(name, value).ok()?;
    }
    let n = r.u32()? as usize;
    let body = Bytes::copy_from_slice(r.take(n)?);
    if r.at != rec.len() {
        return None;
    }
    let age = age.checked_add(unix_ms.saturating_sub(written))?;
    let mut obj = Object::new(
        status,
        headers,
        body,
        age,
        lifetime,
        swr,
        sie,
        flags & 1 != 0,
        flags & 2 != 0,
    );
    obj.stored_ms = now_ms;
    obj.route = route;
    obj.negotiated = flags & 4 != 0;
    obj.from_grace = (flags & 8 != 0, flags & 16 != 0);
    Some(obj)
}

/// [`decode`] now.
pub fn decode_now(rec: &[u8]) -> Option<Object> {
    decode(rec, clock::now_ms(), super::policy::unix_now_ms())
}

/// A cursor that refuses to read past the end.
struct Reader<'a> {
    rec: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.rec.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Object {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/html"));
        h.append("vary", HeaderValue::from_static("x-lang"));
        h.append("x-many", HeaderValue::from_static("1"));
        h.append("x-many", HeaderValue::from_static("2"));
        h.insert("etag", HeaderValue::from_static("\"v1\""));
        let mut o = Object::new(
            StatusCode::OK,
            h,
            Bytes::from_static(b"hello"),
            3_000,
            60,
            5,
            7,
            false,
            true,
        );
        o.stored_ms = 10_000;
        o.route = 4;
        o.negotiated = true;
        o.from_grace = (true, false);
        o
    }

    #[test]
    fn a_record_reads_back_as_written_with_its_age_carried_over() {
        let o = sample();
        // Written 2.5 s after it was stored here; read 1 s later elsewhere.
        let rec = encode(&o, 12_500, 1_000_000).unwrap();
        let back = decode(&rec, 500_000, 1_001_000).unwrap();
        assert_eq!(back.status, o.status);
        assert_eq!(back.headers, o.headers);
        assert_eq!(back.body, o.body);
        assert_eq!((back.lifetime, back.swr, back.sie), (60, 5, 7));
        assert_eq!((back.no_cache, back.forbids_stale), (false, true));
        assert_eq!((back.route, back.negotiated), (4, true));
        assert_eq!(back.from_grace, (true, false));
        assert_eq!(back.etag, o.etag);
        // 3 s + 2.5 s + 1 s old.
        assert_eq!(back.age_ms(500_000), 6_500);
        assert_eq!(back.age(500_000), 6);
        assert_eq!(back.ttl(500_000), 54);
    }

    #[test]
    fn anything_but_a_whole_record_is_nothing() {
        let rec = encode(&sample(), 10_000, 1).unwrap();
        for n in 0..rec.len() {
            assert!(decode(&rec[..n], 0, 1).is_none(), "cut at {n}");
        }
        let mut longer = rec.clone();
        longer.push(0);
        assert!(decode(&longer, 0, 1).is_none());
        let mut other = rec.clone();
        other[4] = 2;
        assert!(decode(&other, 0, 1).is_none(), "another version");
        assert!(decode(b"not ours at all", 0, 1).is_none());
        // Lengths that point past the end, a bad status, a bad field name.
        let mut huge = rec.clone();
        let body_len = rec.len() - 5 - 4;
        huge[body_len..body_len + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge, 0, 1).is_none());
        let mut status = rec.clone();
        status[6..8].copy_from_slice(&1000u16.to_be_bytes());
        assert!(decode(&status, 0, 1).is_none());
        let mut name = rec.clone();
        name[FIXED + 2] = b' ';
        assert!(decode(&name, 0, 1).is_none());
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut r = rec.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % r.len();
                r[i] = (x >> 32) as u8;
            }
            let _ = decode(&r, 0, 1);
        }
    }
}
