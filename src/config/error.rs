//! What a load reports: one problem ([`ConfigError`], `FILE:LINE: message`), all of a load
//! ([`ConfigErrors`]), the collector both readers and validation report into ([`Diag`]), and the
//! closest known key or name suggested for a misspelt one.

use std::fmt;

/// One problem in a config file. Displays as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        // The key, when the message does not name it already.
        if let Some(k) = self.key.as_deref() {
            let last = k.rsplit('.').next().unwrap_or(k);
            if !self.message.contains(&format!("`{last}`")) && !self.message.contains(k) {
                write!(f, "`{k}`: ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// All the errors of one load attempt.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file.
pub(crate) struct Diag {
    pub file: String,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    /// The key as the file wrote it, by line, where it differs from the name validation
    /// knows it by (the legacy format's `AttemptsCount` for `attempts`): messages name it so.
    pub written: std::collections::HashMap<usize, String>,
}

impl Diag {
    pub fn new(file: &str) -> Self {
        Diag {
            file: file.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
            written: std::collections::HashMap::new(),
        }
    }

    pub fn error(&mut self, line: usize, key: Option<&str>, message: impl Into<String>) {
        let e = self.said(line, key, message.into());
        self.errors.push(e);
    }

    pub fn warn(&mut self, line: usize, key: Option<&str>, message: impl Into<String>) {
        let w = self.said(line, key, message.into());
        self.warnings.push(w);
    }

    /// The error or warning, naming the key as the file wrote it on that line.
    fn said(&self, line: usize, key: Option<&str>, mut message: String) -> ConfigError {
        let written = self.written.get(&line);
        let key = match (key, written) {
            (Some(k), Some(w)) if !k.eq_ignore_ascii_case(w) => {
                message = message.replace(&format!("`{k}`"), &format!("`{w}`"));
                Some(w.clone())
            }
            (k, _) => k.map(str::to_string),
        };
        ConfigError {
            file: self.file.clone(),
            line,
            key,
            message,
        }
    }

    /// An unknown key, with the closest known one suggested when it is close enough.
    pub fn unknown_key(&mut self, line: usize, section: &str, key: &str, known: &[&str]) {
        let msg = match suggest(key, known) {
            Some(s) => format!("unknown key `{key}` in {section} (did you mean `{s}`?)"),
            None => format!(
                "unknown key `{key}` in {section} (known keys: {})",
                known.join(", ")
            ),
        };
        self.error(line, Some(key), msg);
    }
}

/// The known word closest to `word`, if any is reasonably close.
pub(crate) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&w, &k.to_ascii_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error names its key: in its words, or before them.
    #[test]
    fn an_error_names_its_key() {
        let e = |key: Option<&str>, message: &str| {
            ConfigError {
                file: "t.toml".into(),
                line: 3,
                key: key.map(str::to_string),
                message: message.into(),
            }
            .to_string()
        };
        assert_eq!(
            e(Some("root"), "`/srv/x`: No such file or directory"),
            "t.toml:3: `root`: `/srv/x`: No such file or directory"
        );
        assert_eq!(
            e(Some("compress.level"), "`max` is not a level"),
            "t.toml:3: `compress.level`: `max` is not a level"
        );
        assert_eq!(
            e(Some("cahce"), "unknown key `cahce`"),
            "t.toml:3: unknown key `cahce`"
        );
        assert_eq!(
            e(Some("compress.level"), "`level` must be a string"),
            "t.toml:3: `level` must be a string"
        );
        assert_eq!(
            e(Some("check.path"), "`check.path` must be a string"),
            "t.toml:3: `check.path` must be a string"
        );
        assert_eq!(e(None, "something"), "t.toml:3: something");
    }
}
