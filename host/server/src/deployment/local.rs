//! What the cluster link asks of this replica (`cluster::Local`).

use super::state::*;
use crate::config::SeedMode;
use switchyard_engine::Recover;
use switchyard_engine::{Change, Definition, Kind, Switchyard};

impl crate::cluster::Local for Deployment {
    fn yard(&self) -> &Switchyard {
        &self.yard
    }

    /// Every definition this replica holds, each with whether the config
    /// defines it, and whether the config's copies win
    /// (`server.seed = "overwrite"`): what it offers the cluster's shared
    /// copy when it joins.
    fn cluster_seeds(&self) -> (Vec<(String, Definition, bool)>, bool) {
        let config = self.config();
        let baseline = self.baseline.locked();
        let mut out = Vec::new();
        for product in config.file.products.keys() {
            for def in self.yard.fetch_all(product, None) {
                let (p, kind, tag) = def.key();
                let from_config = baseline.contains_key(&(p.clone(), kind, tag.clone()));
                out.push((crate::cluster::def_key(&p, kind, &tag), def, from_config));
            }
        }
        (out, config.file.server.seed == SeedMode::Overwrite)
    }

    /// Make this replica's copy of a definition the cluster's (`None`: it
    /// was deleted), in the engine and the store, without sharing it back.
    /// A copy this replica cannot serve (an app it does not have) is
    /// reported and skipped; the cluster keeps it.
    fn apply_shared_definition(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
        def: Option<Definition>,
    ) {
        let _w = self.writes.locked();
        let mine = self.yard.fetch(product, kind, tag);
        if mine == def {
            return;
        }
        let becomes = |d: Option<Definition>| match d {
            Some(d) => Change::Put(Box::new(d)),
            None => Change::Delete {
                product: product.into(),
                kind,
                tag: tag.into(),
            },
        };
        let (change, undo) = (becomes(def), becomes(mine));
        if let Err(errors) = self.yard.apply(vec![change.clone()]) {
            for e in errors {
                eprintln!(
                    "cluster: shared {kind} `{product}/{tag}` not applied on this replica: {e}"
                );
            }
            return;
        }
        if let Some(s) = &self.store
            && let Err(e) = s.apply(std::slice::from_ref(&change))
        {
            let _ = self.yard.apply(vec![undo]);
            eprintln!("cluster: shared {kind} `{product}/{tag}` not stored: {e}");
        }
    }

    fn local_tokens(&self) -> Vec<(String, String)> {
        self.tokens
            .stored()
            .into_iter()
            .filter_map(|t| Some((t.name.clone(), serde_json::to_string(&t).ok()?)))
            .collect()
    }

    fn apply_shared_tokens(&self, tokens: Vec<(String, String)>) {
        self.take_shared_tokens(tokens);
    }

    fn apply_shared_force(&self, key: &str, force: switchyard_engine::Force) {
        use switchyard_engine::Force;
        let product = key.split('/').next().unwrap_or_default();
        if !self.config().file.products.contains_key(product) {
            return;
        }
        let forces = self.yard.forces();
        let forced = forces.iter().any(|(k, _)| k == key);
        if force == Force::Release && !forced {
            return; // nothing to release here
        }
        if !forced && forces.len() >= MAX_FORCES {
            eprintln!(
                "cluster: a shared force on `{key}` not applied: {} breakers are forced here already",
                MAX_FORCES
            );
            return;
        }
        self.yard.apply_shared_force(key, force);
        if let Some(s) = &self.store
            && let Err(e) = s.put_operator_state(
                "force",
                product,
                key,
                (force != Force::Release).then_some(force.as_str()),
            )
        {
            eprintln!("cluster: a shared force on `{key}` not stored: {e}");
        }
    }

    fn config_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut defs: Vec<(String, String)> = self
            .config()
            .definitions()
            .into_iter()
            .map(|(_, d)| {
                let (p, kind, tag) = d.key();
                // Through `Value`, whose maps are sorted, so the text does
                // not depend on any map's iteration order.
                let json = serde_json::to_value(&d)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                (crate::cluster::def_key(&p, kind, &tag), json)
            })
            .collect();
        defs.sort();
        let mut h = Sha256::new();
        for (k, json) in defs {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(json.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// Take in a drain or restore another replica's operator made: the
    /// engine and the store follow (the audit entry is the other replica's).
    fn apply_shared_drain(&self, product: &str, provider: &str, drained: bool) {
        if self.config().file.products.contains_key(product) {
            if drained {
                self.yard.drain(product, provider);
            } else {
                self.yard.restore(product, provider);
            }
            if let Some(s) = &self.store
                && let Err(e) =
                    s.put_operator_state("drain", product, provider, drained.then_some("drained"))
            {
                eprintln!("cluster: a shared drain of `{product}/{provider}` not stored: {e}");
            }
        }
    }
}
