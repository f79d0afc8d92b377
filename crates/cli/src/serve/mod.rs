//! `switchyard serve`: the settings ([`settings`]) layered and checked into the server's
//! config, then the server runs until SIGTERM or Ctrl-C.

mod settings;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use switchyard_server::Listeners;

pub use settings::ServeArgs;

pub fn init_logging(json: bool, file: Option<crate::logfile::RotatingFile>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (file, json) {
        (Some(f), true) => builder.with_writer(f).with_ansi(false).json().init(),
        (Some(f), false) => builder.with_writer(f).with_ansi(false).init(),
        (None, true) => builder.with_writer(std::io::stderr).json().init(),
        (None, false) => {
            // Colours only for a terminal: a redirected log is read with grep and less.
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .init()
        }
    }
}

pub async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Run the server until SIGTERM or Ctrl-C.
/// Bind a compatibility face's listener, if one was asked for, and say where it is.
async fn bind_face(
    addr: &Option<String>,
    name: &str,
    scheme: &str,
) -> anyhow::Result<(Option<tokio::net::TcpListener>, Option<String>)> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {name} face"))?;
    let url = format!("{scheme}://{}", l.local_addr()?);
    eprintln!("switchyard {name} face on {url}");
    Ok((Some(l), Some(url)))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.check {
        return args.check_and_print();
    }
    let ready_json = args.ready_json;
    let s = args.settings()?;
    let file = match &s.log_file {
        Some((path, max, keep)) => Some(
            crate::logfile::RotatingFile::open(path, *max, *keep)
                .with_context(|| format!("log_file {}", path.display()))?,
        ),
        None => None,
    };
    init_logging(s.json_logs, file);
    let mut listeners = Listeners::bind(&s.listen, &s.peer_listen)
        .await
        .with_context(|| format!("cannot listen on {} and {}", s.listen, s.peer_listen))?;
    let scheme = s.config.api_scheme();
    let (mv, mv_url) = bind_face(&s.mv_listen, "mv", scheme).await?;
    let (altair, altair_url) = bind_face(&s.altair_listen, "Altair beer-tap", scheme).await?;
    let (testbed, testbed_url) = bind_face(&s.testbed_listen, "TestbedOS", scheme).await?;
    let (funkytown, funkytown_url) =
        bind_face(&s.funkytown_listen, "funkytown reporter", scheme).await?;
    (listeners.mv, listeners.altair) = (mv, altair);
    (listeners.testbed, listeners.funkytown) = (testbed, funkytown);
    let token = s
        .config
        .auth
        .as_ref()
        .and_then(|a| a.write_token().map(str::to_string));
    let server = switchyard_server::start(s.config, listeners).await?;
    eprintln!(
        "switchyard node {} serving the API on {} (peer RPC on {})",
        server.node.id,
        server.url(),
        server.peer_addr
    );
    if server.node.config.peer_tls.is_some() {
        eprintln!("peers talk mutual TLS");
    }
    if ready_json {
        let ready = serde_json::json!({
            "node_id": server.node.id,
            "api": server.url(),
            "peer": server.peer_addr.to_string(),
            "mv": mv_url,
            "altair": altair_url,
            "testbed": testbed_url,
            "funkytown": funkytown_url,
        });
        println!("{ready}");
    }
    #[cfg(unix)]
    {
        let node = server.node.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing a SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match node.config.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificates")
                    }
                }
            }
        });
    }
    let worker_ca = server
        .node
        .config
        .ca_cert
        .clone()
        .or_else(|| server.node.config.peer_ca().map(Path::to_path_buf));
    let stop_worker = tokio_util::sync::CancellationToken::new();
    let worker = (s.local_workers > 0).then(|| {
        let mut w = switchyard_worker::Config::new(server.url(), s.local_worker_queue.clone());
        w.id = format!("local-node{}", server.node.id);
        w.concurrency = s.local_workers;
        w.token = token;
        w.ca_cert = worker_ca;
        w.shutdown_grace = Duration::from_secs(5);
        w.host = serde_json::json!({"local": true, "node_id": server.node.id});
        let stop = stop_worker.clone();
        eprintln!(
            "local worker {} runs {} job(s) at once from queue {:?}",
            w.id, w.concurrency, w.queue
        );
        tokio::spawn(async move {
            if let Err(e) = switchyard_worker::run(w, stop).await {
                tracing::error!(error = %e, "the local worker stopped");
            }
        })
    });
    terminated().await;
    // The local worker finishes or releases its jobs while the server still answers.
    stop_worker.cancel();
    if let Some(w) = worker {
        let _ = w.await;
    }
    server.stop().await;
    Ok(())
}
