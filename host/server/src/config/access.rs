//! `[[server.tokens]]` and `[server.tls]`: who may call the API, and the
//! listener's certificate.

use super::FieldPath;
use super::file::Config;
use super::problem::{Problem, Problems};
use crate::access::{ConfigToken, Role, Scope, Tokens, check_token_name};

impl Config {
    /// The shape of `[[server.tokens]]`: names, roles' scopes naming the
    /// config's products and envs, secrets given as references.
    pub(super) fn check_tokens(&self, problems: &mut Vec<Problem>) {
        let products = &self.file.products;
        for (i, t) in self.file.server.tokens.iter().enumerate() {
            let at = FieldPath::keys(["server", "tokens"]).index(i);
            if let Err(e) = check_token_name(&t.name) {
                problems.push(self.problem(&at.clone().key("name"), e));
            }
            if self.file.server.tokens[..i]
                .iter()
                .any(|o| o.name == t.name)
            {
                problems.push(self.problem(
                    &at.clone().key("name"),
                    format!("`{}` names two tokens; names must differ", t.name),
                ));
            }
            if t.products.is_empty() {
                problems.push(self.problem(
                    &at.clone().key("products"),
                    "name the products this token may act on, or `[\"*\"]` for all",
                ));
            }
            for (j, p) in t.products.iter().enumerate() {
                if p != "*" && !products.contains_key(p) {
                    problems.push(self.problem(
                        &at.clone().key("products").index(j),
                        format!(
                            "no product `{p}`; products: {:?}",
                            products.keys().collect::<Vec<_>>()
                        ),
                    ));
                }
            }
            for (j, e) in t.envs.iter().flatten().enumerate() {
                if e != "*" && !products.values().any(|p| p.envs.contains(e)) {
                    problems.push(self.problem(
                        &at.clone().key("envs").index(j),
                        format!("`{e}` is not an env of any product"),
                    ));
                }
            }
            if !t.token.is_table() {
                problems.push(self.problem(
                    &at.clone().key("token"),
                    "a secret written inline; reference it instead: `{ env = \"VAR\" }` (an environment variable) or `{ secret = \"name\" }` (from `secrets_file`)",
                ));
            }
        }
    }

    /// Every token `serve` honours, secrets resolved: `[[server.tokens]]`
    /// and, when `server.token_env`'s variable is set, the `admin` token
    /// `default`. Empty when `server.auth = false`. The errors name the
    /// field, never a secret.
    pub fn server_tokens(&self) -> Result<Vec<ConfigToken>, Problems> {
        let server = &self.file.server;
        if !server.auth {
            return Ok(Vec::new());
        }
        let secrets = self.secrets().map_err(|p| Problems(vec![p]))?;
        let mut problems = Vec::new();
        let mut out = Vec::new();
        for (i, t) in server.tokens.iter().enumerate() {
            let at = FieldPath::keys(["server", "tokens"]).index(i).key("token");
            let secret = match &t.token {
                toml::Value::Table(r) => secrets.reference(r),
                _ => Err("a secret written inline; reference it instead".into()),
            };
            match secret {
                Ok(secret) => out.push(ConfigToken {
                    name: t.name.clone(),
                    role: t.role,
                    products: Scope::from(t.products.clone()),
                    envs: t.envs.clone().map_or(Scope::All, Scope::from),
                    secret,
                }),
                Err(e) => problems.push(self.problem(&at, e)),
            }
        }
        if let Err(e) = Tokens::check_config(&out) {
            problems.push(Problem {
                file: self.path.clone(),
                line: None,
                path: None,
                message: e,
            });
        }
        // The token of `token_env` keeps today's rules (any length).
        if let Ok(secret) = std::env::var(&server.token_env)
            && !secret.is_empty()
        {
            if let Some(t) = out.iter().find(|t| t.secret == secret) {
                problems.push(self.problem(
                    &FieldPath::keys(["server", "tokens"]),
                    format!(
                        "token `{}` is the same secret as `{}`; give each its own",
                        t.name, server.token_env
                    ),
                ));
            }
            if out.iter().any(|t| t.name == "default") {
                problems.push(self.problem(
                    &FieldPath::keys(["server", "tokens"]),
                    format!(
                        "a token is named `default`, the name of the token from `{}`; rename it",
                        server.token_env
                    ),
                ));
            }
            out.push(ConfigToken {
                name: "default".into(),
                role: Role::Admin,
                products: Scope::All,
                envs: Scope::All,
                secret,
            });
        }
        if out.is_empty() && problems.is_empty() {
            problems.push(self.problem(
                &FieldPath::keys(["server", "token_env"]),
                format!(
                    "environment variable `{0}` is not set and `[[server.tokens]]` names none; export an API token (e.g. `export {0}=$(openssl rand -hex 24)`), add `[[server.tokens]]`, or set `server.auth = false` for a loopback-only dev server",
                    server.token_env
                ),
            ));
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(Problems(problems))
        }
    }
}
