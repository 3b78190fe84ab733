//! `langur demo`: three small backends on loopback and langur in front of them, no files needed.

use crate::config;
use crate::server::{bind, Langur};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// Starts a backend on an ephemeral loopback port that answers every request with its name.
pub async fn start_backend(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let body = format!("{name} answered {} {}\n", req.method(), req.uri());
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .header("x-backend", name)
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The demo's config: static files round robin over all three, the rest least-connections.
pub fn demo_config(listen: &str, admin: &str, backends: &[SocketAddr]) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
listen = ["{listen}"]
name = "langur-demo"

[admin]
listen = "{admin}"

[defaults]
attempts = 3
offline_timeout = "10s"

[[route]]
match = ['\.(jpg|png|css|js|html)$']
pool = "static"

[[route]]
match = ['^/']
pool = "app"

[pools.static]
balance = "round-robin"
server = [
  {{ address = "{}", weight = 2 }},
  {{ address = "{}" }},
  {{ address = "{}" }},
]

[pools.app]
balance = "least-connections"
servers = [{list}]
"#,
        backends[0], backends[1], backends[2]
    )
}

pub async fn run(listen: String, admin: String) -> anyhow::Result<()> {
    let mut backends = Vec::new();
    for name in ["demo-backend-1", "demo-backend-2", "demo-backend-3"] {
        backends.push(start_backend(name).await?);
    }
    let text = demo_config(&listen, &admin, &backends);
    let config = config::parse_str("(demo)", &text, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let langur = Langur::start(config).await?;
    let at = langur.listen_addrs()[0];
    println!(
        "langur demo is running. Backends: {}",
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("Try:");
    println!("  curl http://{at}/                 # pool `app`, least-connections");
    println!("  curl http://{at}/logo.png         # pool `static`, weighted round robin 2:1:1");
    println!("  for i in 1 2 3 4; do curl -s http://{at}/a.css; done");
    println!(
        "  curl http://{}/healthz            # admin listener",
        langur
            .admin_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    if let Some(a) = langur.admin_addr() {
        println!("Dashboard: http://{a}/");
    }
    println!("The config it runs:\n{text}");
    println!("Press Ctrl-C to stop.");
    langur.run_until_signal().await
}
