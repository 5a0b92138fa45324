//! `switchyard op`: the operator actions of the dashboard, against a
//! running server (`--server`), audited as the CLI's.

use super::common::{Exit, usage};
use super::http::http_with;
use clap::{Args, Subcommand};

/// Where the server is and how to reach it.
#[derive(Debug, Args)]
pub struct Target {
    /// The running server (`http://127.0.0.1:7400`, or `https://…`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7400")]
    server: String,
    /// The environment variable holding the API token.
    #[arg(long, value_name = "NAME", default_value = "SWITCHYARD_TOKEN")]
    token_env: String,
    /// A PEM file of the CA that signed an `https://` server's certificate
    /// (default: the public web's roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// Run a healthcheck now.
    Check {
        /// Product.
        product: String,
        /// Env.
        env: String,
        /// The healthcheck's tag.
        tag: String,
        #[command(flatten)]
        target: Target,
    },
    /// Force a breaker (`product/env/app/action`) open or closed, or
    /// release it.
    Force {
        /// The breaker key, as provider state shows it.
        breaker: String,
        /// open, closed or release.
        #[arg(value_parser = ["open", "closed", "release"])]
        state: String,
        #[command(flatten)]
        target: Target,
    },
    /// Take a provider out of every quota and fallback of a product.
    Drain {
        /// Product.
        product: String,
        /// The provider name options use.
        provider: String,
        #[command(flatten)]
        target: Target,
    },
    /// Put a drained provider back.
    Restore {
        /// Product.
        product: String,
        /// The provider name options use.
        provider: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print the operator actions, newest first.
    Audit {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        target: Target,
    },
}

/// Path-segment encoding for names a user typed.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(cmd: OpCommand) -> Result<(), Exit> {
    let (method, path, body, target) = match cmd {
        OpCommand::Check {
            product,
            env,
            tag,
            target,
        } => (
            "POST",
            format!(
                "/v1/{}/{}/healthchecks/{}/check",
                seg(&product),
                seg(&env),
                seg(&tag)
            ),
            None,
            target,
        ),
        OpCommand::Force {
            breaker,
            state,
            target,
        } => (
            "POST",
            "/v1/admin/breakers/force".to_string(),
            Some(serde_json::json!({"breaker": breaker, "state": state}).to_string()),
            target,
        ),
        OpCommand::Drain {
            product,
            provider,
            target,
        } => (
            "POST",
            format!("/v1/{}/providers/{}/drain", seg(&product), seg(&provider)),
            None,
            target,
        ),
        OpCommand::Restore {
            product,
            provider,
            target,
        } => (
            "POST",
            format!("/v1/{}/providers/{}/restore", seg(&product), seg(&provider)),
            None,
            target,
        ),
        OpCommand::Audit { limit, target } => (
            "GET",
            format!("/v1/admin/audit?limit={limit}"),
            None,
            target,
        ),
    };
    let v = request(method, &path, body, &target).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&v).map_err(|e| usage(e.to_string()))?
    );
    Ok(())
}

/// One request to `target` with its token, as the CLI's: the JSON answer,
/// or an exit naming the status and the server's message.
pub(super) async fn request(
    method: &str,
    path: &str,
    body: Option<String>,
    target: &Target,
) -> Result<serde_json::Value, Exit> {
    let token = std::env::var(&target.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let uri = format!("{}{path}", target.server.trim_end_matches('/'));
    let (status, text) =
        http_with(method, &uri, token.as_deref(), body, target.ca.as_deref()).await?;
    let v =
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::String(text));
    if status == 401 {
        return Err(usage(format!(
            "{uri}: 401: set {} to a token this server knows ({})",
            target.token_env,
            v["message"].as_str().unwrap_or_default()
        )));
    }
    if status >= 300 {
        return Err(Exit {
            code: 1,
            message: format!(
                "{method} {uri} answered {status}: {}",
                v["message"]
                    .as_str()
                    .map_or_else(|| v.to_string(), str::to_string)
            ),
        });
    }
    Ok(v)
}
