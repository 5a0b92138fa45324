//! `switchyard serve`, `run`, `check` and `config schema`: the commands
//! that start from a config file.

use super::common::{Exit, usage};
use crate::api::{self, ApiState};
use crate::config::{Config, Problems};
use crate::deployment::{Deployment, StartOptions};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Exit code: the server could not start or stopped on an error.
pub const EXIT_SERVE: i32 = 3;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(default_value = "switchyard.toml")]
    pub(super) config: PathBuf,
    /// Listen here instead of `server.listen` (`127.0.0.1:0` picks a port).
    #[arg(long)]
    listen: Option<String>,
}

pub(super) fn problems(p: Problems) -> Exit {
    usage(p.to_string().trim_end())
}

pub(super) fn load(path: &Path) -> Result<Config, Exit> {
    Config::load(path).map_err(problems)
}

/// Prints a line every few seconds while plugins compile (Python and
/// JavaScript components take ~15 s the first time), until dropped.
pub(super) fn ticker() -> AbortOnDrop {
    let started = Instant::now();
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "  ... still loading plugins ({:.0?}; first loads compile, later ones use the cache)",
                started.elapsed()
            );
        }
    }))
}

pub(super) async fn start(config: Config, store: bool) -> Result<Deployment, Exit> {
    let _ticker = ticker();
    let d = Deployment::start(
        config,
        StartOptions {
            store,
            progress: true,
        },
    )
    .await
    .map_err(problems)?;
    for w in &d.warnings {
        eprintln!("warning: {w}");
    }
    Ok(d)
}

pub async fn serve(args: ServeArgs) -> Result<(), Exit> {
    let config = load(&args.config)?;
    serve_config(args, config).await
}

/// `serve` with its config read.
pub(super) async fn serve_config(args: ServeArgs, config: Config) -> Result<(), Exit> {
    let server = config.file.server.clone();
    // Every token, secrets resolved, before anything starts.
    let tokens = config.server_tokens().map_err(problems)?;
    let tls = match &server.tls {
        Some(t) => Some(Arc::new(
            crate::tls::Tls::load(&config.relative(&t.cert), &config.relative(&t.key)).map_err(
                |e| Exit {
                    code: EXIT_SERVE,
                    message: format!("{}: {e}", config.path.display()),
                },
            )?,
        )),
        None => None,
    };
    let deployment = Arc::new(start(config, true).await?);
    deployment
        .throttle
        .set_limit(server.auth_failures_per_minute);
    if server.auth {
        let warnings = deployment.enable_auth(&tokens).map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!("the store's tokens could not be read: {e}"),
        })?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
    for line in &deployment.drift {
        eprintln!("config drift: {line}");
    }
    // Cluster mode: take in the cluster's definitions and open breakers
    // before serving (a few seconds at most; without Redis the replica
    // serves on its own state and converges when Redis is reachable).
    let _cluster = match &deployment.cluster {
        Some(c) => {
            match c.join(&*deployment, Duration::from_secs(3)).await {
                Ok(true) => {}
                Ok(false) => eprintln!("{}", c.readiness().trim_end()),
                Err(why) => {
                    return Err(Exit {
                        code: EXIT_SERVE,
                        message: format!(
                            "{}: cluster: this replica does not join: {why}",
                            deployment.config().path.display()
                        ),
                    });
                }
            }
            let local: Arc<dyn crate::cluster::Local> = deployment.clone();
            Some(AbortOnDrop(c.spawn(&local)))
        }
        None => None,
    };
    let listen = args.listen.unwrap_or(server.listen);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!(
                "cannot listen on {listen}: {e}; set `server.listen` or pass --listen"
            ),
        })?;
    let addr = listener.local_addr().map_err(|e| Exit {
        code: EXIT_SERVE,
        message: e.to_string(),
    })?;
    let healthchecks = server
        .healthchecks
        .then(|| deployment.yard.spawn_healthchecks());
    let defs = deployment.definition_count();
    println!(
        "switchyard serving on {}://{addr} ({} apps, {defs} definitions, store {}, auth {})",
        if tls.is_some() { "https" } else { "http" },
        deployment.apps().len(),
        deployment
            .store
            .as_ref()
            .map_or_else(String::new, |s| s.path().display().to_string()),
        if server.auth {
            format!("on, {} tokens", deployment.token_list().len())
        } else {
            "off".to_string()
        }
    );
    let state = Arc::new(ApiState {
        deployment,
        tls: tls.clone(),
        max_body_bytes: server.max_body_bytes,
        max_event_streams: server.max_event_streams,
        ready: AtomicBool::new(true),
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
    });
    let grace = Duration::from_millis(server.shutdown_grace_ms);
    let _hup = reload_on_sighup(state.deployment.clone(), tls);
    let _token_use = every_minute(
        &state.deployment,
        |d| {
            d.flush_token_use();
            Ok(())
        },
        "token use",
    );
    let _history = every_minute(
        &state.deployment,
        |d| d.flush_history(false).map(|_| ()),
        "history",
    );
    let deployment = state.deployment.clone();
    api::serve(listener, state, shutdown_signal(), grace)
        .await
        .map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!("server stopped: {e}"),
        })?;
    drop(healthchecks);
    // The minute in progress too: a restart loses none of the history.
    if let Err(e) = tokio::task::spawn_blocking(move || deployment.flush_history(true))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    {
        eprintln!("history: the last minutes were not kept: {e}");
    }
    eprintln!("switchyard stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
/// SIGHUP reloads the config (as `POST /v1/admin/reload` does) and says
/// what changed on stderr. Stops with the returned guard.
pub(super) fn reload_on_sighup(
    deployment: Arc<Deployment>,
    tls: Option<Arc<crate::tls::Tls>>,
) -> Option<AbortOnDrop> {
    #[cfg(unix)]
    {
        let mut hup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()?;
        Some(AbortOnDrop(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The certificate first: it does not depend on the config.
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => eprintln!("reload: the TLS certificate was read again"),
                        Err(e) => eprintln!("reload: the TLS certificate was not changed: {e}"),
                    }
                }
                match deployment.reload().await {
                    Ok(report) => {
                        for line in report.lines() {
                            eprintln!("reload: {line}");
                        }
                        let actor = crate::ops::Actor {
                            name: "signal".into(),
                            channel: "signal",
                        };
                        let _ = deployment.audit(
                            &actor,
                            "reload",
                            "config",
                            format!("{} changes", report.lines().len().saturating_sub(1)),
                        );
                    }
                    Err(p) => eprintln!(
                        "reload refused, nothing changed: {}",
                        p.to_string().trim_end()
                    ),
                }
            }
        })))
    }
    #[cfg(not(unix))]
    {
        let _ = (deployment, tls);
        None
    }
}

/// Once a minute, on a blocking thread, `work` on the deployment (while it
/// lives): the tokens' last-used times and the providers' whole minutes of
/// history go to the store this way.
pub(super) fn every_minute(
    deployment: &Arc<Deployment>,
    work: fn(&Deployment) -> Result<(), String>,
    what: &'static str,
) -> AbortOnDrop {
    let weak = Arc::downgrade(deployment);
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(d) = weak.upgrade() else { return };
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || work(&d)).await {
                eprintln!("{what}: not kept this minute: {e}");
            }
        }
    }))
}

/// Aborts its task when dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing in-flight runs");
}
