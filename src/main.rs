use clap::Parser;
use langur::cli::{self, Cli, Command};
use langur::config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => ExitCode::from(cli::check(&config) as u8),
        Command::Run {
            config,
            listen,
            admin,
            workers,
            no_access_log,
        } => run_proxy(&config, &listen, admin.as_deref(), workers, no_access_log),
        Command::Explain {
            config,
            request,
            headers,
            from,
            proxy_source,
            status,
            response_headers,
            json,
        } => {
            let args = cli::ExplainArgs {
                request,
                headers,
                from,
                proxy_source,
                status,
                response_headers,
                json,
            };
            ExitCode::from(cli::explain(&config, &args) as u8)
        }
        Command::Man { command } => match cli::man(command.as_deref(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("langur man: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Demo { listen, admin } => {
            let _log = init_tracing();
            run(langur::demo::run(listen, admin))
        }
    }
}

/// `langur run`: load, apply the command line's overrides, warn, serve until stopped.
fn run_proxy(
    path: &std::path::Path,
    listen: &[String],
    admin: Option<&str>,
    workers: Option<usize>,
    no_access_log: bool,
) -> ExitCode {
    let _log = init_tracing();
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::from(1);
        }
    };
    let overrides = match cli::apply_overrides(&mut config, listen, admin, workers, no_access_log) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("langur: {e:#}");
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{}:{}: {}", w.file, w.line, w.message);
    }
    for w in config.self_loop_warnings() {
        tracing::warn!("{w}");
    }
    let served = langur::server::run_threaded_with(config, overrides);
    // The last access-log lines and spans, written before the process ends.
    langur::access_log::wait_for_writers(std::time::Duration::from_secs(5));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("langur: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("langur: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("langur: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stdout through a background writer, so a slow terminal never stalls requests. The
/// level comes from `LANGUR_LOG` ([`cli::log_filter`]); a bad one ends the start with exit 2.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = match cli::log_filter(std::env::var("LANGUR_LOG").ok().as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("langur: {e}");
            std::process::exit(2);
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .init();
    guard
}

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
