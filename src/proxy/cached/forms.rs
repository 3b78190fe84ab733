//! Which coding of a stored object a request gets, and from what it is made.
//!
//! On a route with `compress`, an entry holds one body (identity, unless the server sent it
//! encoded) and the forms made from it on first demand: the request gets the coding it prefers
//! among the route's `encodings`, from a stored form when there is one; else the form is made
//! as it streams to this client and kept with the entry (one request makes a given form at a
//! time; the others encode for themselves meanwhile). Ranges get the identity form; a HEAD the
//! head its GET gets.
//!
//! On every cached route, a client that does not accept the stored coding gets the identity
//! form, decoded (and kept) when only an encoded body is stored.

use super::Reply;
use crate::cache::Object;
use crate::coding::{Accept, Coding};
use crate::config::compress::Compress;
use crate::proxy::compress;
use bytes::Bytes;
use http::header::RANGE;
use http::HeaderMap;

/// What a request is served from.
pub(super) enum Plan {
    /// The object as stored; `vary`: a compressible entry, whose answer names `Accept-Encoding`.
    AsStored { vary: bool },
    /// A stored form in another coding.
    Stored(Coding, Bytes),
    /// Made on the way: `src`, in coding `from`, re-coded into `to`.
    Make {
        from: Coding,
        src: Bytes,
        to: Coding,
    },
}

/// Chooses what `how`'s request is served from (see the module docs).
pub(super) fn plan(obj: &Object, how: &Reply<'_>) -> Plan {
    let Some(stored) = obj.coding else {
        return Plan::AsStored { vary: false };
    };
    let accept = Accept::parse(how.req);
    let formable = how.compress.filter(|c| may_recode(c, obj));
    let want = match formable {
        Some(_) if how.req.contains_key(RANGE) => Coding::Identity,
        Some(c) => accept.choose(&c.encodings),
        None if stored == Coding::Identity || accept.accepts(stored) => stored,
        None => Coding::Identity,
    };
    if want == stored {
        return Plan::AsStored {
            vary: formable.is_some(),
        };
    }
    if let Some(form) = obj.form(want) {
        return Plan::Stored(want, form.clone());
    }
    match obj.form(Coding::Identity) {
        Some(identity) if want != Coding::Identity => Plan::Make {
            from: Coding::Identity,
            src: identity.clone(),
            to: want,
        },
        _ => Plan::Make {
            from: stored,
            src: obj.body.clone(),
            to: want,
        },
    }
}

/// Whether a stored object may be sent in other codings on a route with `compress`: the same
/// rules as a response on its way ([`compress::recodable`]), its length being the identity
/// form's when one is stored.
fn may_recode(c: &Compress, obj: &Object) -> bool {
    let len = obj.form(Coding::Identity).map(|b| b.len() as u64);
    compress::recodable(c, obj.status, &obj.headers, len)
}

/// The stored head, as sent in coding `to` ([`compress::recoded_head`]).
pub(super) fn head(obj: &Object, to: Coding) -> HeaderMap {
    let mut h = obj.headers.clone();
    compress::recoded_head(&mut h, to);
    h
}

/// A request's headers without its range: a body made on the way is sent whole.
pub(super) fn without_range(req: &HeaderMap) -> HeaderMap {
    let mut h = req.clone();
    h.remove(RANGE);
    h
}
