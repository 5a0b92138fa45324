//! Checks that a file is a component targeting the `switchyard:adapter`
//! world at a version this host supports, before anything runs.

use crate::error::LoadError;
use wasmtime::Engine;
use wasmtime::component::Component;

pub use crate::version::SUPPORTED_RANGE;
/// The export of an `adapter`-world component (any 0.2.x).
const PROVIDER: &str = "switchyard:adapter/provider@";
/// The export of an `exchange-adapter`-world component (any 0.2.x).
const EXCHANGE: &str = "switchyard:adapter/exchange@";

/// Which world a component targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `exchange-adapter`: pure steps; the host performs every request.
    ExchangeAdapter,
    /// `adapter`: the adapter calls `wasi:http` itself.
    Adapter,
}

impl World {
    /// The world's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExchangeAdapter => "exchange-adapter",
            Self::Adapter => "adapter",
        }
    }
}

/// Refuse bytes that are not a WebAssembly component, saying what they are.
pub fn check_encoding(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(LoadError::CoreModule),
        _ => Err(LoadError::UnknownEncoding(u32::from_le_bytes([
            bytes[4], bytes[5], bytes[6], bytes[7],
        ]))),
    }
}

/// Whether `version` (`0.2.3`) is in [`SUPPORTED_RANGE`].
fn supported_adapter_version(version: &str) -> bool {
    let mut parts = version.split('.');
    matches!((parts.next(), parts.next()), (Some("0"), Some("2")))
}

fn supported_wasi_version(version: &str) -> bool {
    let mut parts = version.split('.');
    matches!((parts.next(), parts.next()), (Some("0"), Some("2")))
}

/// Check the component's exports and imports against the worlds; the
/// world it targets (an `exchange` export wins over a `provider` one).
pub fn check_world(engine: &Engine, component: &Component) -> Result<World, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let find = |prefix: &str| {
        exports
            .iter()
            .find(|n| n.starts_with(prefix))
            .map(|n| n[prefix.len()..].to_string())
    };
    let (world, version) = match (find(EXCHANGE), find(PROVIDER)) {
        (Some(v), _) => (World::ExchangeAdapter, v),
        (None, Some(v)) => (World::Adapter, v),
        (None, None) => {
            return Err(LoadError::MissingExport {
                found: exports.clone(),
            });
        }
    };
    if !supported_adapter_version(&version) {
        return Err(LoadError::UnsupportedVersion { found: version });
    }
    let unsupported: Vec<String> = ty
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .filter(|name| !import_supported(name))
        .collect();
    if !unsupported.is_empty() {
        return Err(LoadError::UnsupportedImports(unsupported));
    }
    Ok(world)
}

fn import_supported(name: &str) -> bool {
    let Some((package, version)) = name.split_once('@') else {
        return false;
    };
    if package.starts_with("wasi:") {
        return supported_wasi_version(version);
    }
    matches!(
        package,
        "switchyard:adapter/config"
            | "switchyard:adapter/logging"
            | "switchyard:adapter/adapter-types"
            | "switchyard:adapter/exchange-types"
    ) && supported_adapter_version(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_told_apart() {
        assert!(matches!(
            check_encoding(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_encoding(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_encoding(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions() {
        assert!(supported_adapter_version("0.2.0"));
        assert!(supported_adapter_version("0.2.7"));
        assert!(
            !supported_adapter_version("0.1.0"),
            "0.1 declared a bool, not an idempotency"
        );
        assert!(!supported_adapter_version("0.3.0"));
        assert!(!supported_adapter_version("1.0.0"));
        assert!(import_supported("wasi:http/types@0.2.12"));
        assert!(import_supported("wasi:io/streams@0.2.0"));
        assert!(!import_supported("wasi:http/types@0.3.0"));
        assert!(import_supported("switchyard:adapter/config@0.2.0"));
        assert!(!import_supported("acme:secrets/vault@1.0.0"));
    }
}
