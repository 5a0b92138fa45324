//! `switchyard token`: make, list, rotate and revoke API tokens on a
//! running server (an `admin` token is needed). A token is printed once.

use super::common::{Exit, usage};
use super::op::{Target, request, seg};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token with a role and a scope; it is printed once.
    Create {
        /// Its name (the audit's actor).
        name: String,
        /// run, read, operate, define or admin.
        #[arg(long, value_parser = ["run", "read", "operate", "define", "admin"])]
        role: String,
        /// A product it may act on (repeat it; `*` for all).
        #[arg(long = "product", required = true)]
        products: Vec<String>,
        /// An env it may act in (repeat it; default all).
        #[arg(long = "env")]
        envs: Vec<String>,
        /// Lifetime: seconds, or a number with s, m, h or d (`30d`).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// List the tokens (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Give a token a new secret; the old one stops working at once.
    Rotate {
        /// Its name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token at once.
    Revoke {
        /// Its name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `90`, `90s`, `15m`, `12h`, `30d` as seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: write a number with s, m, h or d, e.g. 30d"))?;
    let by = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit is s, m, h or d")),
    };
    n.checked_mul(by)
        .ok_or_else(|| format!("`{s}` is too long"))
}

pub async fn run(cmd: TokenCommand) -> Result<(), Exit> {
    let (method, path, body, target) = match cmd {
        TokenCommand::Create {
            name,
            role,
            products,
            envs,
            expires_in,
            target,
        } => {
            let mut body = serde_json::json!({"name": name, "role": role, "products": products});
            if !envs.is_empty() {
                body["envs"] = serde_json::json!(envs);
            }
            if let Some(s) = expires_in {
                body["expires_in_s"] = serde_json::json!(s);
            }
            (
                "POST",
                "/v1/admin/tokens".to_string(),
                Some(body.to_string()),
                target,
            )
        }
        TokenCommand::List { target } => ("GET", "/v1/admin/tokens".to_string(), None, target),
        TokenCommand::Rotate { name, target } => (
            "POST",
            format!("/v1/admin/tokens/{}/rotate", seg(&name)),
            None,
            target,
        ),
        TokenCommand::Revoke { name, target } => (
            "DELETE",
            format!("/v1/admin/tokens/{}", seg(&name)),
            None,
            target,
        ),
    };
    let v = request(method, &path, body, &target).await?;
    if let Some(token) = v.get("token").and_then(|t| t.as_str()) {
        // The secret alone on stdout (for `$(...)`), the rest on stderr.
        eprintln!(
            "token `{}` ({}): shown this once; keep it in a secret store",
            v["name"].as_str().unwrap_or_default(),
            v["role"].as_str().unwrap_or_default()
        );
        println!("{token}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| usage(e.to_string()))?
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_with_units() {
        assert_eq!(super::parse_duration("90"), Ok(90));
        assert_eq!(super::parse_duration("15m"), Ok(900));
        assert_eq!(super::parse_duration("30d"), Ok(2_592_000));
        assert!(super::parse_duration("3w").is_err());
        assert!(super::parse_duration("x").is_err());
    }
}
