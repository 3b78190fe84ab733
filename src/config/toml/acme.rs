//! `[acme]` in TOML, read as written (checked in `config::acme`).

use super::{RawConfig, Reader, Val};
use crate::config::acme::{RawAcme, ACME_KEYS};

impl Reader<'_> {
    /// `[acme]`: `directory`, `directory_ca`, `email`, `storage`, `challenge`, `eab_kid`,
    /// `eab_hmac_key`.
    pub(super) fn acme(&mut self, raw: &mut RawConfig, val: &Val<'_>, line: usize) {
        let mut a = RawAcme {
            line,
            ..RawAcme::default()
        };
        self.table(val, "[acme]", |r, k, v, line| match k {
            "directory" => a.directory = r.string(k, v),
            "directory_ca" => a.directory_ca = r.string(k, v),
            "email" => a.email = r.string(k, v),
            "storage" => a.storage = r.string(k, v),
            "challenge" => a.challenge = r.string(k, v),
            "eab_kid" => a.eab_kid = r.string(k, v),
            "eab_hmac_key" => a.eab_hmac_key = r.string(k, v),
            _ => r.diag.unknown_key(line, "[acme]", k, ACME_KEYS),
        });
        raw.acme = Some(a);
    }
}
