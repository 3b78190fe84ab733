//! A response head as it is read: the fields framing and persistence depend on.

use super::*;

pub(super) struct Head {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    /// The hop-by-hop fields were left out.
    pub(super) stripped: bool,
    pub(super) framing: Framing,
}

/// The response fields this module looks at, told apart by their raw names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    /// The other hop-by-hop fields: Keep-Alive, Proxy-Connection, TE.
    Hop,
    Upgrade,
    Other,
}

impl Field {
    pub(super) fn of(name: &[u8]) -> Field {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        match name.len() {
            14 if is("content-length") => Field::ContentLength,
            17 if is("transfer-encoding") => Field::TransferEncoding,
            10 if is("connection") => Field::Connection,
            10 if is("keep-alive") => Field::Hop,
            16 if is("proxy-connection") => Field::Hop,
            2 if is("te") => Field::Hop,
            7 if is("upgrade") => Field::Upgrade,
            _ => Field::Other,
        }
    }

    pub(super) fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::TransferEncoding | Field::Connection | Field::Hop | Field::Upgrade
        )
    }
}

/// The fields a response's framing and persistence depend on, seen as the head is built.
#[derive(Default)]
pub(super) struct Framing {
    pub(super) lengths: u32,
    pub(super) length: Option<u64>,
    pub(super) length_ok: bool,
    pub(super) codings: u32,
    pub(super) chunked: bool,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    /// `Connection` names a field other than the usual options (so that field is hop-by-hop).
    pub(super) names_others: bool,
}

impl Framing {
    pub(super) fn see(&mut self, field: Field, value: &[u8]) {
        match field {
            Field::ContentLength => {
                self.lengths += 1;
                self.length = strict::digits(value);
                self.length_ok = self.length.is_some();
            }
            Field::TransferEncoding => {
                self.codings += 1;
                self.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            Field::Connection => {
                for t in value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if !(t.is_empty()
                        || t.eq_ignore_ascii_case(b"upgrade")
                        || t.eq_ignore_ascii_case(b"te"))
                    {
                        self.names_others = true;
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn length(&self) -> Result<Option<u64>, &'static str> {
        match self.lengths {
            0 => Ok(None),
            1 if self.length_ok => Ok(self.length),
            _ => Err("invalid or repeated content-length"),
        }
    }

    pub(super) fn chunked(&self) -> Result<bool, &'static str> {
        match self.codings {
            0 => Ok(false),
            1 if self.chunked => Ok(true),
            _ => Err("transfer-encoding other than chunked"),
        }
    }
}
