//! Command-line interface: `run`, `check`, `explain`, `demo` and `man`.

use crate::config::{self, Config};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `langur --version`: the package's version, the git commit it was built from and the build
/// date (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LANGUR_GIT_COMMIT"),
    ", built ",
    env!("LANGUR_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "langur",
    version = VERSION,
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
    /// Tell what langur would do with one request: the route (and the routes tried before it),
    /// the rules, the client's address and how it was found, the cache key and whether the
    /// answer would be stored, the pool and which of its servers are usable. Nothing is sent.
    Explain {
        #[arg(short, long)]
        config: PathBuf,
        /// `METHOD URL` or `URL` (GET), e.g. 'GET https://shop.example/api/x'.
        request: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client's address as the socket sees it (default 192.0.2.1).
        #[arg(long)]
        from: Option<String>,
        /// The source a PROXY protocol header announced on the connection.
        #[arg(long)]
        proxy_source: Option<String>,
        /// The status of the response to judge for the cache (default 200).
        #[arg(long)]
        status: Option<String>,
        /// A header of the response to judge for the cache, `Name: value` (repeatable).
        #[arg(long = "response-header")]
        response_headers: Vec<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
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
    /// Print a manual page (roff, for man(1)): `langur man > langur.1`, `langur man explain >
    /// langur-explain.1`.
    Man {
        /// The command whose page to print (`run`, `check`, `explain`, `demo`); none: langur(1).
        command: Option<String>,
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

/// `langur man [COMMAND]`: langur(1), or langur-COMMAND(1), generated from these definitions
/// by `clap_mangen`. Errors: an unknown command, a failed write.
pub fn man(command: Option<&str>, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let page = match command {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .with_context(|| format!("no command `{name}`"))?;
            // clap names are `'static`; the process prints one page and ends.
            let full: &'static str = Box::leak(format!("langur-{name}").into_boxed_str());
            sub.clone().name(full).bin_name(full).version(VERSION)
        }
    };
    clap_mangen::Man::new(page).render(out)?;
    if matches!(command, None | Some("run")) {
        out.write_all(MAN_RUNNING.as_bytes())?;
    }
    Ok(())
}

/// What langur(1) and langur-run(1) add to what clap generates: the environment, the signals,
/// the files, where the rest is (roff).
const MAN_RUNNING: &str = r#".SH ENVIRONMENT
.TP
\fBLANGUR_LOG\fR
The application log's level: \fBerror\fR, \fBwarn\fR (or \fBwarning\fR), \fBinfo\fR (the
default), \fBdebug\fR, \fBtrace\fR, \fBoff\fR, or a filter such as
\fBinfo,langur::backend=debug\fR. An unknown level stops the start.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Read the configuration file again and swap it in when it is valid; a bad one changes nothing
and is logged (\fBsystemctl reload\fR sends it).
.TP
\fBSIGUSR1\fR
Open the access-log file again by name (after logrotate moved it).
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: listeners close, \fB/healthz\fR answers 503, requests in flight finish and idle
connections close (within \fB[server] shutdown_timeout\fR), then exit 0.
.SH FILES
.TP
\fB/etc/langur/langur.toml\fR
The configuration (\fB-c\fR); \fBlangur check\fR validates it, naming file, line and key.
.TP
\fB/var/lib/langur\fR
ACME storage and the server-state file, when configured.
.SH SEE ALSO
The README (every configuration key, the admin API) and docs/ (observability, TLS, scale-out,
performance) of the source distribution.
"#;

/// What `langur explain` is asked: the request and the response to judge.
#[derive(Debug, Default)]
pub struct ExplainArgs {
    pub request: String,
    pub headers: Vec<String>,
    pub from: Option<String>,
    pub proxy_source: Option<String>,
    pub status: Option<String>,
    pub response_headers: Vec<String>,
    pub json: bool,
}

/// `langur explain`: the explanation on stdout (exit 0), or the configuration's errors or a
/// bad request on stderr (exit 1 and 2). The servers' state is the state at start (no checks
/// have run); the admin API's `/api/explain` tells the running instance's.
pub fn explain(path: &std::path::Path, args: &ExplainArgs) -> i32 {
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return 1;
        }
    };
    let ask = match crate::proxy::explain::ask_from(
        &args.request,
        &args.headers,
        args.from.as_deref(),
        args.proxy_source.as_deref(),
        args.status.as_deref(),
        &args.response_headers,
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("langur explain: {e}");
            return 2;
        }
    };
    // Nothing is logged or traced: no writer thread is started.
    config.server.access_log = false;
    config.tracing = None;
    let events = std::sync::Arc::new(crate::backend::events::EventLog::default());
    let name = crate::server::instance_name(&config);
    let rt = match crate::server::build_runtime(&config, &name, 1, &events) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("langur explain: {e:#}");
            return 1;
        }
    };
    let out = crate::proxy::explain::explain(&rt, &ask);
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default()),
        false => print!("{out}"),
    }
    0
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
