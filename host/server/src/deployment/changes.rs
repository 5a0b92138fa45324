//! Changes through the API (create, update, delete, admission), counted
//! and kept, and the metrics text.

use super::state::*;
use crate::metrics::Scrape;
use switchyard_engine::Recover;
use switchyard_engine::{AdmissionConfig, Definition, Kind};

impl Deployment {
    /// How many definitions the engine holds, over the config's products.
    pub fn definition_count(&self) -> usize {
        self.config()
            .file
            .products
            .keys()
            .map(|p| self.yard.fetch_all(p, None).len())
            .sum()
    }

    /// The Prometheus text exposition, with breaker states, admission
    /// state, instance slots and app counters read now.
    pub fn metrics_text(&self) -> String {
        let mut text = self.metrics.render(&Scrape {
            breakers: &self.yard.breaker_states(),
            apps: &self.apps(),
            admission: &self.yard.admission_states(),
            instances: self.runtime.instances(),
        });
        let b = &self.host_bytes;
        text.push_str(&crate::metrics::unlabelled(&[
            (
                "switchyard_host_bytes_held",
                "gauge",
                "Bytes of request bodies and provider answers the host holds now.",
                b.used() as u64,
            ),
            (
                "switchyard_host_bytes_max",
                "gauge",
                "The host's byte budget (server.max_buffered_mb).",
                b.cap() as u64,
            ),
            (
                "switchyard_host_bytes_refused_total",
                "counter",
                "Request bodies refused and provider requests not sent because the byte budget was full.",
                b.refused(),
            ),
            (
                "switchyard_host_bytes_waited_total",
                "counter",
                "Provider answers that waited for room in the byte budget.",
                b.waited(),
            ),
            (
                "switchyard_event_streams",
                "gauge",
                "/v1/events streams open now.",
                self.hub.streams() as u64,
            ),
            (
                "switchyard_api_threads",
                "gauge",
                "Worker threads of the runtime that serves the API and runs the engine (server.api_threads).",
                tokio::runtime::Handle::try_current()
                    .map_or(0, |h| h.metrics().num_workers() as u64),
            ),
            (
                "switchyard_sandbox_threads",
                "gauge",
                "Threads that run plugin calls (runtime.sandbox_threads; 0: the API's threads run them).",
                self.runtime.sandbox_threads() as u64,
            ),
        ]));
        if let Some(c) = &self.cluster {
            text.push_str(&c.metrics());
        }
        text
    }

    /// Set an app's admission limits (engine and store, or neither).
    pub fn set_admission(
        &self,
        product: &str,
        app: &str,
        config: AdmissionConfig,
    ) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let (_, pool) = self.runtime.instances();
        config.validate_within("admission", pool)?;
        if let Some(s) = &self.store {
            s.put_admission(product, app, &config)?;
        }
        self.yard.set_admission(product, app, config)?;
        Ok(())
    }

    /// Create a definition (engine and store, or neither).
    pub fn create(&self, def: Definition) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let m = def.meta().clone();
        if self.yard.fetch(&m.product, def.kind(), &m.tag).is_some() {
            return Err(ChangeError::Exists {
                product: m.product,
                kind: def.kind(),
                tag: m.tag,
            });
        }
        self.yard.create(def.clone())?;
        if let Some(s) = &self.store
            && let Err(e) = s.put(&def)
        {
            let _ = self.yard.delete(&m.product, def.kind(), &m.tag);
            return Err(e.into());
        }
        self.shared_change(&m.product, def.kind(), &m.tag);
        Ok(())
    }

    /// Replace a definition (engine and store, or neither).
    pub fn update(&self, def: Definition) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let m = def.meta().clone();
        let Some(old) = self.yard.fetch(&m.product, def.kind(), &m.tag) else {
            return Err(ChangeError::NotFound {
                product: m.product,
                kind: def.kind(),
                tag: m.tag,
            });
        };
        self.yard.update(def.clone())?;
        if let Some(s) = &self.store
            && let Err(e) = s.put(&def)
        {
            let _ = self.yard.update(old);
            return Err(e.into());
        }
        self.shared_change(&m.product, def.kind(), &m.tag);
        Ok(())
    }

    /// Delete a definition (engine and store, or neither); refused while
    /// another definition uses it.
    pub fn delete(&self, product: &str, kind: Kind, tag: &str) -> Result<Definition, ChangeError> {
        let _w = self.writes.locked();
        if self.yard.fetch(product, kind, tag).is_none() {
            return Err(ChangeError::NotFound {
                product: product.into(),
                kind,
                tag: tag.into(),
            });
        }
        let old = self.yard.delete(product, kind, tag)?;
        if let Some(s) = &self.store
            && let Err(e) = s.delete(product, kind, tag)
        {
            let _ = self.yard.create(old);
            return Err(e.into());
        }
        self.shared_change(product, kind, tag);
        Ok(old)
    }

    pub(crate) fn shared_change(&self, product: &str, kind: Kind, tag: &str) {
        if let Some(c) = &self.cluster {
            c.definition_changed(product, kind, tag);
        }
    }
}
