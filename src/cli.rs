//! Command-line interface: `run`, `check` and `demo`.

use crate::config::{self, Config};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "langur",
    version,
    about = "A reverse proxy, load balancer and HTTP cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve in the foreground until SIGTERM or SIGINT.
    Run {
        /// Config file: `*.toml` is TOML, anything else the legacy proxy_reverse format.
        #[arg(short, long)]
        config: PathBuf,
        /// Client listener (repeatable); replaces the file's listeners.
        #[arg(long)]
        listen: Vec<String>,
        /// Admin listener address (default 127.0.0.1:9090).
        #[arg(long)]
        admin: Option<String>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Turn the access log off.
        #[arg(long)]
        no_access_log: bool,
    },
    /// Validate a config file: exit 0 with a summary, or 1 with every error as FILE:LINE: message.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Start three demo backends and langur in front of them; no files needed.
    Demo {
        /// Where langur listens for clients.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin listener address.
        #[arg(long, default_value = config::DEFAULT_ADMIN_LISTEN)]
        admin: String,
    },
}

fn parse_addr(text: &str, what: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .with_context(|| format!("bad {what} address `{text}`"))?
        .next()
        .with_context(|| format!("{what} address `{text}` resolves to nothing"))
}

/// `run`'s command-line overrides, parsed; [`crate::server::Overrides::apply`] applies them
/// (at start and again on every reload).
pub fn overrides(
    listen: &[String],
    admin: Option<&str>,
    workers: Option<usize>,
    no_access_log: bool,
) -> anyhow::Result<crate::server::Overrides> {
    let listen = if listen.is_empty() {
        None
    } else {
        Some(
            listen
                .iter()
                .map(|l| parse_addr(l, "listen"))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let admin = admin
        .map(|a| parse_addr(a, "admin").map(Some))
        .transpose()?;
    if let Some(w) = workers {
        anyhow::ensure!(
            (1..=1024).contains(&w),
            "--workers must be between 1 and 1024"
        );
    }
    Ok(crate::server::Overrides {
        listen,
        admin,
        workers,
        no_access_log,
    })
}

/// Applies `run`'s command-line overrides to a loaded config.
pub fn apply_overrides(
    config: &mut Config,
    listen: &[String],
    admin: Option<&str>,
    workers: Option<usize>,
    no_access_log: bool,
) -> anyhow::Result<crate::server::Overrides> {
    let o = overrides(listen, admin, workers, no_access_log)?;
    o.apply(config)?;
    Ok(o)
}

/// `langur check`: prints the summary or every error; returns the exit code.
pub fn check(path: &std::path::Path) -> i32 {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                println!("{}:{}: warning: {}", w.file, w.line, w.message);
            }
            for w in c.self_loop_warnings() {
                println!("{w}");
            }
            println!("{}", c.summary());
            0
        }
        Err(errs) => {
            for e in &errs.0 {
                println!("{e}");
            }
            1
        }
    }
}

/// The application log's filter from `LANGUR_LOG` (`info` when unset or empty): a level as
/// people write it (`warning` or `warn`, `err`, `DEBUG`, ...), or comma-separated
/// `TARGET=LEVEL` directives (`info,langur::proxy=debug`). A word that is not a level is an
/// error naming it (tracing's own parser would take it for a target name and log nothing else).
pub fn log_filter(text: Option<&str>) -> Result<tracing_subscriber::EnvFilter, String> {
    let text = text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("info");
    let mut directives = Vec::new();
    for d in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let normalized = match d.rsplit_once('=') {
            _ if d.contains('[') => d.to_string(),
            Some((target, lvl)) => match level(lvl) {
                Some(l) => format!("{target}={l}"),
                None => return Err(unknown_level(lvl)),
            },
            None => level(d).ok_or_else(|| unknown_level(d))?.to_string(),
        };
        directives.push(normalized);
    }
    tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .map_err(|e| format!("LANGUR_LOG=`{text}`: {e}"))
}

fn unknown_level(word: &str) -> String {
    format!(
        "LANGUR_LOG: unknown level `{word}` (write trace, debug, info, warn, error or off, or TARGET=LEVEL)"
    )
}

/// A level's name as tracing knows it, from the names people use.
fn level(word: &str) -> Option<&'static str> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "trace" | "all" => "trace",
        "debug" => "debug",
        "info" | "information" | "notice" => "info",
        "warn" | "warning" => "warn",
        "error" | "err" | "critical" | "crit" | "fatal" => "error",
        "off" | "none" | "quiet" => "off",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn log_levels_as_people_write_them() {
        for ok in [
            "warning",
            "WARN",
            "err",
            "debug",
            "",
            "info,langur::proxy=warning",
            "off",
        ] {
            assert!(log_filter(Some(ok)).is_ok(), "{ok}");
        }
        assert_eq!(log_filter(Some("warning")).unwrap().to_string(), "warn");
        assert_eq!(
            log_filter(Some("info,hyper=Warning")).unwrap().to_string(),
            "hyper=warn,info"
        );
        let e = log_filter(Some("verbose")).unwrap_err();
        assert!(e.contains("unknown level `verbose`"), "{e}");
        assert!(log_filter(Some("langur=loud")).is_err());
        assert!(log_filter(None).is_ok());
    }
}
