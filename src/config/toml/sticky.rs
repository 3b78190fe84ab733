//! `sticky` on a pool in TOML: a table of `cookie`, `mode`, `max_age`, `secure`, `httponly`,
//! `domain` and `secret`.

use super::{At, DeValue, Reader, Val};
use crate::config::sticky::{RawSticky, STICKY_KEYS};

impl Reader<'_> {
    /// `sticky` in `section` (`[pools.NAME]`), as written.
    pub(super) fn sticky(&mut self, section: &str, k: &str, v: &Val<'_>) -> Option<RawSticky> {
        if !matches!(v.get_ref(), DeValue::Table(_)) {
            let want = "a table such as { cookie = \"SRV\", mode = \"insert\" }";
            self.type_error(k, v, want);
            return None;
        }
        let mut s = RawSticky {
            line: self.line(v.span()),
            ..RawSticky::default()
        };
        let section = format!("{section} sticky");
        self.table(v, &section, |me, sk, sv, sline| {
            let key = format!("sticky.{sk}");
            let flag = |me: &mut Self| me.bool(&key, sv).map(|b| At::new(b, sline));
            match sk {
                "cookie" => s.cookie = me.string(&key, sv),
                "mode" => s.mode = me.string(&key, sv),
                "max_age" => s.max_age = me.duration(&key, sv),
                "secure" => s.secure = flag(me),
                "httponly" => s.httponly = flag(me),
                "domain" => s.domain = me.string(&key, sv),
                "secret" => s.secret = me.string(&key, sv),
                _ => me.diag.unknown_key(sline, &section, sk, STICKY_KEYS),
            }
        });
        Some(s)
    }
}
