//! What the commands share: how they fail ([`Exit`]), a plugin named on
//! the command line and its grant, a runtime, and how a call's outcome is
//! printed.

use crate::bundled::{BUNDLED, bundled};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_engine::AttemptError;
use switchyard_runtime::Grant;
use switchyard_runtime::{App, ComponentSource, Runtime, RuntimeConfig};
use switchyard_runtime::{Credential, Secret};

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct PluginArg {
    /// A component file (`.wasm`).
    pub(super) file: Option<PathBuf>,
    /// A plugin bundled into this binary: `http`, `stripe`, `twilio`, `sns`.
    #[arg(long)]
    pub(super) bundled: Option<String>,
}

/// What a plugin run from the command line may do: its grant.
#[derive(Debug, Args)]
pub(super) struct GrantArgs {
    /// An origin the plugin may reach (repeatable): `https://api.example.com`.
    #[arg(long = "allow")]
    pub(super) allow: Vec<String>,
    /// A non-public network the plugin may reach after DNS (repeatable).
    #[arg(long = "private-network")]
    pub(super) private_networks: Vec<String>,
    /// A plain setting `key=value` (repeatable).
    #[arg(long = "config", value_parser = parse_kv)]
    pub(super) config: Vec<(String, String)>,
    /// Name of an environment variable holding a bearer token the host
    /// adds.
    #[arg(long)]
    pub(super) bearer_env: Option<String>,
    /// `USER:VAR`: HTTP basic auth the host adds, with this user and the
    /// password in environment variable VAR.
    #[arg(long)]
    pub(super) basic_env: Option<String>,
}

impl GrantArgs {
    /// The grant, secrets read from the environment.
    pub(super) fn grant(&self) -> Result<Grant, Exit> {
        let mut grant = Grant {
            allow: self.allow.clone(),
            private_networks: self.private_networks.clone(),
            config: self.config.iter().cloned().collect(),
            credentials: Vec::new(),
        };
        if let Some(var) = &self.bearer_env {
            let token = Secret::from_env(var).map_err(|e| usage(format!("--bearer-env: {e}")))?;
            grant.credentials.push(Credential::Bearer { token }.into());
        }
        if let Some(spec) = &self.basic_env {
            let (user, var) = spec
                .split_once(':')
                .ok_or_else(|| usage("--basic-env: write it as USER:VAR"))?;
            let password = Secret::from_env(var).map_err(|e| usage(format!("--basic-env: {e}")))?;
            grant.credentials.push(
                Credential::Basic {
                    username: user.to_string(),
                    password,
                }
                .into(),
            );
        }
        Ok(grant)
    }
}

pub(super) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// A failure that ends the command, with its exit code.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: i32,
    /// What to print on stderr.
    pub message: String,
}

pub(super) fn usage(message: impl std::fmt::Display) -> Exit {
    Exit {
        code: 2,
        message: message.to_string(),
    }
}

pub(super) fn source(plugin: &PluginArg) -> Result<ComponentSource, Exit> {
    if let Some(file) = &plugin.file {
        return Ok(ComponentSource::File(file.clone()));
    }
    let name = plugin.bundled.as_deref().unwrap_or_default();
    bundled(name).ok_or_else(|| {
        usage(format!(
            "no bundled plugin `{name}`; bundled: {}",
            BUNDLED.join(", ")
        ))
    })
}

pub(super) fn runtime() -> Result<Runtime, Exit> {
    Runtime::new(RuntimeConfig::default()).map_err(usage)
}

pub(super) fn attempt_failed(e: &AttemptError) -> Exit {
    Exit {
        code: 1,
        message: e.to_string(),
    }
}

/// Shared by subcommands that call an app and print one line per outcome.
pub(super) fn outcome_line(
    label: &str,
    app: &App,
    result: &Result<switchyard_engine::CallResponse, AttemptError>,
    took: Duration,
) -> String {
    match result {
        Ok(r) => {
            let mut out = r.output.to_string();
            if out.len() > 80 {
                out.truncate(77);
                out.push_str("...");
            }
            format!(
                "  {label:<34} {:<6} ok      {took:>10.2?}  {out}",
                app.name()
            )
        }
        Err(e) => format!(
            "  {label:<30} {:<7} {:<12} {took:>10.2?}  {:?}: {}",
            app.name(),
            e.class.as_str(),
            e.kind,
            e.message
        ),
    }
}
