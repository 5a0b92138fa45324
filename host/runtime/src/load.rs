//! Loading an app: compile (or reuse the cached artifact), check the world,
//! link, build its egress from the grant, and call `describe`.

use crate::bindings::AdapterPre;
use crate::bindings::exchange_world::ExchangeAdapterPre;
use crate::egress::{AppEgress, CredentialError, EgressPolicy, PolicyError};
use crate::error::LoadError;
use crate::grant::Grant;
use crate::world::World;
use std::sync::Arc;
use std::time::Instant;
use switchyard_engine::AppInfo;

/// Interval of the epoch ticker: the granularity of CPU deadlines.
use crate::app::App;
use crate::instance::{AppInner, InstanceStats, Pre};
use crate::runtime::{ComponentSource, Runtime};

impl Runtime {
    /// Load `source` as app `name` with `grant`: compile (or reuse the
    /// cached artifact), check the world, link, and call `describe`.
    pub async fn load(
        &self,
        name: &str,
        source: impl Into<ComponentSource>,
        grant: Grant,
    ) -> Result<App, LoadError> {
        let started = Instant::now();
        let (component, mut report) = self.compile(&source.into()).await?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let pre = match report.world {
            World::Adapter => Pre::Adapter(
                AdapterPre::new(pre)
                    .and_then(crate::instance::ProviderPre::new)
                    .map_err(link)?,
            ),
            World::ExchangeAdapter => Pre::Exchange(
                ExchangeAdapterPre::new(pre)
                    .and_then(crate::exchange::ExchangePre::new)
                    .map_err(link)?,
            ),
        };

        let grant_error = |reason: String| LoadError::Grant {
            app: name.to_string(),
            reason,
        };
        let policy = EgressPolicy::new(&grant.allow, &grant.private_networks)
            .map_err(|e: PolicyError| grant_error(e.to_string()))?;
        let egress = AppEgress::new(name, policy, grant.credentials, self.inner.limits.egress)
            .map_err(|e: CredentialError| grant_error(format!("credentials: {e}")))?
            .with_host_bytes(self.inner.host_bytes.clone());

        let mut app = AppInner {
            name: name.into(),
            info: AppInfo {
                name: String::new(),
                version: String::new(),
                actions: Vec::new(),
            },
            pre,
            runtime: self.clone(),
            egress: Arc::new(egress),
            config: Arc::new(grant.config),
            report,
            instances: InstanceStats::default(),
            host_reads: Default::default(),
        };
        (app.info, app.host_reads) = app.describe().await?;
        report.total = started.elapsed();
        app.report = report;
        Ok(App {
            inner: Arc::new(app),
        })
    }
}
