//! `compress` in TOML, on a route or in `[defaults]`: `true`, `false` or a table of
//! `encodings`, `types`, `min_size` and `level`.

use super::{DeValue, Reader, Val};
use crate::config::compress::{RawCompress, COMPRESS_KEYS};

impl Reader<'_> {
    /// `compress` in `section` (`[[route]]` or `[defaults]`), as written.
    pub(super) fn compress(&mut self, section: &str, k: &str, v: &Val<'_>) -> Option<RawCompress> {
        let mut c = RawCompress {
            line: self.line(v.span()),
            on: true,
            ..RawCompress::default()
        };
        match v.get_ref() {
            DeValue::Boolean(on) => {
                c.on = *on;
                return Some(c);
            }
            DeValue::Table(_) => {}
            _ => {
                let want = "true, false or a table such as { encodings = [\"br\", \"gzip\"], min_size = \"1 KiB\" }";
                self.type_error(k, v, want);
                return None;
            }
        }
        let section = format!("{section} compress");
        self.table(v, &section, |me, sk, sv, sline| match sk {
            "encodings" => c.encodings = Some(me.str_list("compress.encodings", sv)),
            "types" => c.types = Some(me.str_list("compress.types", sv)),
            "min_size" => c.min_size = me.size("compress.min_size", sv),
            "level" => c.level = me.string("compress.level", sv),
            _ => me.diag.unknown_key(sline, &section, sk, COMPRESS_KEYS),
        });
        Some(c)
    }
}
