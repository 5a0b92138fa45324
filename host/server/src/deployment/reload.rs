//! Reloading: the apps whose plugin or grant changed load again, the
//! definitions whose config copy changed apply as one batch, tokens and
//! admission follow.

use super::state::*;
use crate::config::{Config, FieldPath, Problems};
use crate::metrics::AppHandle;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_engine::Change;
use switchyard_engine::{Recover, RecoverRw};

impl Deployment {
    /// Read the config file again and apply what changed in it, without a
    /// restart: apps whose plugin file or grant changed are loaded again
    /// (runs in flight finish on the old instance), definitions whose
    /// copy in the config changed are created, updated or deleted as one
    /// batch (all or none), admission limits follow the config. What the
    /// config did not change is left as it serves, API edits included.
    /// Breakers, health and retry budgets are keyed by app and action, so
    /// they carry over. On any problem nothing changes and every problem
    /// is returned.
    pub async fn reload(&self) -> Result<ReloadReport, Problems> {
        // One reload at a time; API writes wait only for the part that
        // changes the engine and the store (not while plugins load).
        let _one = self.reloading.lock().await;
        let old = self.config();
        let new = Config::load(&old.path)?;
        let mut report = ReloadReport::default();
        // The config's tokens, resolved before anything changes: a token
        // whose secret is missing refuses the whole reload.
        let tokens = if self.auth.load(std::sync::atomic::Ordering::SeqCst) {
            Some(new.server_tokens()?)
        } else {
            None
        };

        let (fresh, wanted) = self.load_changed_apps(&new, &mut report).await?;
        let (changes, paths) = self.definition_changes(&new, &mut report);

        // Install the apps, apply the batch; undo the apps if it is refused.
        let _w = self.writes.locked();
        let previous: Vec<AppHandle> = self.apps();
        for ((product, tag, env), app, _, _) in &fresh {
            self.yard
                .install_app(product, tag, env, Arc::new(app.clone()));
        }
        let undo_apps = || {
            for ((product, tag, env), _, _, _) in &fresh {
                match previous
                    .iter()
                    .find(|h| (&h.product, &h.app, &h.env) == (product, tag, env))
                {
                    Some(h) => self
                        .yard
                        .install_app(product, tag, env, Arc::new(h.handle.clone())),
                    None => {
                        let _ = self.yard.remove_app_env(product, tag, env);
                    }
                }
            }
        };
        // What puts the engine back if the store refuses the batch.
        let undo: Vec<Change> = changes
            .iter()
            .map(|c| {
                let (product, kind, tag) = c.key();
                match self.yard.fetch(&product, kind, &tag) {
                    Some(d) => Change::Put(Box::new(d)),
                    None => Change::Delete { product, kind, tag },
                }
            })
            .collect();
        let applied: Vec<Change> = changes.clone();
        if let Err(errors) = self.yard.apply(changes) {
            undo_apps();
            return Err(Problems(
                errors
                    .into_iter()
                    .map(|e| problem_in_config(&new, &paths, e))
                    .collect(),
            ));
        }
        if let Some(s) = &self.store
            && let Err(e) = s.apply(&applied)
        {
            // Engine and store, or neither.
            let _ = self.yard.apply(undo);
            undo_apps();
            return Err(Problems(vec![store_problem(&new, e)]));
        }
        if let Some(c) = &self.cluster {
            for change in &applied {
                let (p, kind, t) = change.key();
                c.definition_changed(&p, kind, &t);
            }
        }

        // Apps no longer in the config (their definitions are gone now).
        let mut apps: Vec<AppHandle> = previous
            .into_iter()
            .filter(|h| {
                let key = (h.product.clone(), h.app.clone(), h.env.clone());
                wanted.contains(&key) && !fresh.iter().any(|(k, ..)| *k == key)
            })
            .collect();
        for h in self.apps() {
            let key = (h.product.clone(), h.app.clone(), h.env.clone());
            if !wanted.contains(&key) {
                match self.yard.remove_app_env(&h.product, &h.app, &h.env) {
                    Ok(()) => report
                        .apps
                        .push(format!("- app {}/{}@{} removed", h.product, h.app, h.env)),
                    Err(e) => {
                        // Still used by a definition made through the API:
                        // it keeps serving until that changes.
                        report
                            .apps
                            .push(format!("! app {}/{}@{} kept: {e}", h.product, h.app, h.env));
                        apps.push(h.clone());
                        continue;
                    }
                }
            }
        }
        let mut loaded = self.loaded.locked();
        loaded.retain(|k, _| wanted.contains(k));
        for (key, app, print, grant) in fresh {
            apps.push(AppHandle {
                product: key.0.clone(),
                app: key.1.clone(),
                env: key.2.clone(),
                handle: app,
            });
            loaded.insert(key, (print, grant));
        }
        drop(loaded);
        *self.apps.writing() = apps;

        // Admission limits written in the config.
        for spec in &new.apps {
            let was = old
                .apps
                .iter()
                .find(|a| a.product == spec.product && a.tag == spec.tag)
                .and_then(|a| a.admission);
            if spec.admission != was {
                let a = spec.admission.unwrap_or(new.file.engine.admission);
                if self.yard.set_admission(&spec.product, &spec.tag, a).is_ok() {
                    report
                        .admission
                        .push(format!("~ admission of {}/{} set", spec.product, spec.tag));
                }
            }
        }
        // Tokens and the TLS files apply at reload; the rest of [server]
        // at a restart.
        let reloadable = |s: &crate::config::ServerConfig| {
            let mut s = s.clone();
            s.tokens.clear();
            s.tls = None;
            format!("{s:?}")
        };
        if let Some(tokens) = tokens {
            let before: Vec<String> = self.config_tokens.locked().clone();
            let after = crate::access::marks(&tokens);
            if before != after {
                report.access.push(format!(
                    "~ {} tokens from the config (was {})",
                    after.len(),
                    before.len()
                ));
            }
            self.tokens.replace_config(&tokens);
            *self.config_tokens.locked() = after;
        }
        for (section, a, b) in [
            (
                "server",
                reloadable(&old.file.server),
                reloadable(&new.file.server),
            ),
            (
                "engine",
                format!("{:?}", old.file.engine),
                format!("{:?}", new.file.engine),
            ),
            (
                "runtime",
                format!("{:?}", old.file.runtime),
                format!("{:?}", new.file.runtime),
            ),
        ] {
            if a != b {
                report.needs_restart.push(section.to_string());
            }
        }
        *self.baseline.locked() = new
            .definitions()
            .into_iter()
            .map(|(_, d)| (d.key(), d))
            .collect();
        *self.config.writing() = Arc::new(new);
        Ok(report)
    }

    /// Load the apps of `new` whose plugin bytes or grant differ from what
    /// is loaded (or that are new); also every app key `new` wants.
    pub(crate) async fn load_changed_apps(
        &self,
        new: &Config,
        report: &mut ReloadReport,
    ) -> Result<(Vec<Fresh>, Vec<AppKey>), Problems> {
        let mut problems = Vec::new();
        let mut fresh = Vec::new();
        let loaded = self.loaded.locked().clone();
        let mut wanted: Vec<AppKey> = Vec::new();
        for spec in &new.apps {
            for (env, grant) in &spec.grants {
                let key = (spec.product.clone(), spec.tag.clone(), env.clone());
                wanted.push(key.clone());
                let at = FieldPath::keys(["products", &spec.product, "apps", &spec.tag, "plugin"]);
                let print = match fingerprint(&spec.source) {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(new.problem(&at, e));
                        continue;
                    }
                };
                let verb = match loaded.get(&key) {
                    Some((p, g)) if *p == print && g == grant => continue,
                    Some((p, _)) if *p != print => "reloaded (plugin changed)",
                    Some(_) => "reloaded (grant changed)",
                    None => "added",
                };
                let name = format!("{}/{}@{env}", spec.product, spec.tag);
                match self
                    .runtime
                    .load(&name, spec.source.clone(), grant.clone())
                    .await
                {
                    Ok(app) => {
                        let line = format!("~ app {name} {verb}");
                        report.apps.push(
                            match super::resident_hint(&self.runtime, &app.load_report()) {
                                Some(hint) => format!("{line} (note: {hint})"),
                                None => line,
                            },
                        );
                        fresh.push((key, app, print, grant.clone()));
                    }
                    Err(e) => problems.push(new.problem(&at, format!("env `{env}`: {e}"))),
                }
            }
        }
        if problems.is_empty() {
            Ok((fresh, wanted))
        } else {
            Err(Problems(problems))
        }
    }

    /// The changes that make the engine serve `new`'s definitions where
    /// the config's copy changed since it was last applied, and where
    /// each one is written in `new`.
    pub(crate) fn definition_changes(
        &self,
        new: &Config,
        report: &mut ReloadReport,
    ) -> (Vec<Change>, HashMap<DefKey, FieldPath>) {
        let before = self.baseline.locked().clone();
        let mut paths = HashMap::new();
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for (path, d) in new.definitions() {
            seen.push(d.key());
            match before.get(&d.key()) {
                Some(b) if *b == d => report.unchanged += 1,
                b => {
                    let verb = if b.is_some() { "updated" } else { "created" };
                    report.definitions.push(format!("~ {path} {verb}"));
                    paths.insert(d.key(), path);
                    changes.push(Change::Put(Box::new(d)));
                }
            }
        }
        for (key, d) in &before {
            if !seen.contains(key) {
                report.definitions.push(format!(
                    "- products.{}.{} deleted (no longer in the config)",
                    d.meta().product,
                    d.path()
                ));
                changes.push(Change::Delete {
                    product: key.0.clone(),
                    kind: key.1,
                    tag: key.2.clone(),
                });
            }
        }
        (changes, paths)
    }
}
