//! Precompiled components on disk, keyed by the component's content hash
//! and the engine's compatibility hash, so a second load never recompiles
//! (Python and JavaScript components take 13-15 s to compile).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load compiled or reused an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded the precompiled artifact.
    Hit,
    /// Compiled, and stored the artifact for next time.
    Miss,
    /// Compiled; no cache is configured.
    Disabled,
}

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// Feeds `Hash` into SHA-256, so the engine's compatibility hash gives a
/// stable file name.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only finalized through the digest")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$SWITCHYARD_CACHE_DIR`, else `$XDG_CACHE_HOME/switchyard`, else
    /// `$HOME/.cache/switchyard`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("SWITCHYARD_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(d).join("switchyard"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("switchyard"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, engine: &Engine, sha256: &[u8; 32]) -> PathBuf {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = hex::encode(&h.0.finalize()[..8]);
        let content = hex::encode(&sha256[..16]);
        self.dir.join(format!("{content}-{engine_hash}.cwasm"))
    }

    /// Load `bytes` (whose SHA-256 is `sha256`), from the cache when
    /// possible.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &[u8; 32],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path_for(engine, sha256);
        // Read rather than mmap: a cache file truncated by someone else
        // while mapped would kill the process with SIGBUS.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: files in the cache dir are written only by `store`
            // below from `Engine::precompile_component` output, and named by
            // this engine's compatibility hash; wasmtime checks the header.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached component");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = store(&path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "could not store precompiled component");
        }
        // SAFETY: `compiled` was produced by this engine just above.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheOutcome::Miss))
    }
}

/// Write atomically: a crash never leaves a truncated artifact behind.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
