//! The config file: one TOML document with the server settings, engine
//! defaults, and per product its envs, apps (plugin + grant per env) and
//! definitions. `docs/configuration.md` documents it field by field and
//! `switchyard config schema` prints its JSON Schema.
//!
//! Loading never stops at the first mistake: [`Config::load`] returns every
//! problem it finds, each with the file, line and field path and the fix.
//!
//! `file.rs`: the file's shape and a loaded config; `problem.rs`: what is
//! wrong with one; `check.rs`: loading and checking; `access.rs`: tokens
//! and TLS; `secrets.rs`, `locate.rs`, `unknown.rs`: secret references,
//! lines of field paths, unknown keys.

mod access;
mod check;
mod file;
mod locate;
mod problem;
mod secrets;
mod unknown;

pub use file::*;
pub use locate::{FieldPath, line_of, locate};
pub use problem::{Problem, Problems};
pub use secrets::Secrets;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn load(src: &str) -> Result<Config, Problems> {
        Config::from_source(PathBuf::from("/cfg/sy.toml"), src.to_string())
    }

    #[test]
    fn a_typo_names_the_line_and_the_field() {
        let e = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/cfg/sy.toml:3:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
    }

    #[test]
    fn sandbox_threads_are_bounded() {
        let e = load("[runtime]\nsandbox_threads = 65\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/cfg/sy.toml:2:"), "{s}");
        assert!(s.contains("runtime.sandbox_threads"), "{s}");
        assert!(
            s.contains("between 0 (calls run on the server's threads) and 64"),
            "{s}"
        );
        for ok in ["sandbox_threads = 0", "sandbox_threads = 64"] {
            let c = load(&format!("[runtime]\n{ok}\n")).unwrap();
            assert!(c.file.runtime.sandbox_threads() <= 64, "{ok}");
        }
        let c = load("[runtime]\n").unwrap();
        assert!(c.file.runtime.sandbox_threads() >= 1);
    }

    #[test]
    fn api_threads_are_bounded_and_default_to_half_the_cores() {
        for bad in [0, 65] {
            let e = load(&format!("[server]\napi_threads = {bad}\n")).unwrap_err();
            let s = e.to_string();
            assert!(s.contains("/cfg/sy.toml:2:"), "{s}");
            assert!(s.contains("server.api_threads"), "{s}");
            assert!(
                s.contains(&format!("is {bad}; it must be between 1 and 64")),
                "{s}"
            );
        }
        let c = load("[server]\napi_threads = 3\n").unwrap();
        assert_eq!(c.file.api_threads(), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = load("").unwrap();
        assert_eq!(c.file.runtime.sandbox_threads(), cores.min(64));
        assert_eq!(c.file.api_threads(), (cores / 2).clamp(1, 64));
        let c = load("[runtime]\nsandbox_threads = 3\n").unwrap();
        assert_eq!(c.file.api_threads(), (cores / 2).clamp(1, 64));
        // Calls on the API's threads: all the cores for them.
        let c = load("[runtime]\nsandbox_threads = 0\n").unwrap();
        assert_eq!(c.file.api_threads(), cores.min(64));
    }

    #[test]
    fn keep_resident_fits_the_memory_cap() {
        let e = load("[runtime]\nkeep_resident_mb = 200\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/cfg/sy.toml:2:"), "{s}");
        assert!(s.contains("runtime.keep_resident_mb"), "{s}");
        assert!(s.contains("between 0 and `runtime.memory_mb` (128)"), "{s}");
        let e = load("[runtime]\nmemory_mb = 64\nkeep_resident_mb = 65\n").unwrap_err();
        assert!(e.to_string().contains("(64)"), "{e}");
        for ok in [
            "keep_resident_mb = 0",
            "keep_resident_mb = 128",
            "memory_mb = 256\nkeep_resident_mb = 256",
        ] {
            let c = load(&format!("[runtime]\n{ok}\n"));
            assert!(c.is_ok(), "{ok}: {:?}", c.err().map(|e| e.to_string()));
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_lines() {
        let src = r#"
[products.pay]
envs = ["dev"]

[products.pay.apps.stripe]
plugin = "bundled:nope"

[products.pay.apps.stripe.envs.prd]
allow = ["https://api.stripe.com"]

[products.pay.apps.other]
plugin = "missing.wasm"

[products.pay.apps.other.envs.dev]
credentials = [{ scheme = "bearer", token = "sk_live_inline" }]
"#;
        let e = load(src).unwrap_err();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(e.0.len(), 4, "{lines:#?}");
        assert!(
            lines[0].starts_with("/cfg/sy.toml:12: products.pay.apps.other.plugin"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("credentials[0].token"), "{lines:#?}");
        assert!(lines[1].contains("{ env = "), "{lines:#?}");
        assert!(!lines[1].contains("sk_live_inline"), "{lines:#?}");
        assert!(
            lines[2].starts_with("/cfg/sy.toml:6: products.pay.apps.stripe.plugin"),
            "{lines:#?}"
        );
        assert!(
            lines[3].contains(":8: products.pay.apps.stripe.envs.prd"),
            "{lines:#?}"
        );
    }

    #[test]
    fn every_unknown_field_missing_variable_and_stray_env_at_once() {
        let src = r#"
[products.notify]
envs = ["dev"]

[products.notify.apps.sms]
plugin = "bundled:http"
[products.notify.apps.sms.envs.dev]
alow = ["https://x.example"]
credentials = [{ scheme = "bearer", token = { env = "SWITCHYARD_TEST_UNSET_A" } }]

[products.notify.apps.mail]
plugin = "bundled:http"
[products.notify.apps.mail.envs.dev]
allow = ["https://y.example"]
credentials = [{ scheme = "bearer", token = { env = "SWITCHYARD_TEST_UNSET_B" } }]

[products.notify.healthchecks.up]
app = "sms"
action = "ping"
interval = 5000
input = { prd = {} }

[products.notify.fallbacks.f]
options = [{ provider = "a", app = "sms", event = "send" }]
"#;
        let e = load(src).unwrap_err();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        assert!(
            has(
                ":8: products.notify.apps.sms.envs.dev.alow: unknown field `alow`; did you mean `allow`?"
            ),
            "{lines:#?}"
        );
        assert!(
            has(
                ":20: products.notify.healthchecks.up.interval: unknown field `interval`; did you mean `interval_ms`?"
            ),
            "{lines:#?}"
        );
        assert!(
            has("options[0].event: unknown field `event`; did you mean `action`?"),
            "{lines:#?}"
        );
        assert!(has("SWITCHYARD_TEST_UNSET_A"), "{lines:#?}");
        assert!(has("SWITCHYARD_TEST_UNSET_B"), "{lines:#?}");
        assert!(
            has("healthchecks.up.input.prd: env `prd` is not one of product `notify`'s envs (dev)"),
            "{lines:#?}"
        );
        assert_eq!(e.0.len(), 6, "{lines:#?}");
    }

    #[test]
    fn an_inline_numeric_secret_is_refused_without_echoing_it() {
        let src = "[products.p]\nenvs = [\"dev\"]\n[products.p.apps.a]\nplugin = \"bundled:http\"\n[products.p.apps.a.envs.dev]\nallow = [\"https://x.example\"]\ncredentials = [{ scheme = \"bearer\", token = 8675309123 }]\n";
        let e = load(src).unwrap_err().to_string();
        assert!(e.contains("credentials[0].token"), "{e}");
        assert!(!e.contains("8675309123"), "{e}");
    }

    #[test]
    fn definitions_take_product_and_tag_from_their_table() {
        let src = r#"
[products.pay]
envs = ["dev"]
[products.pay.caches.quick]
ttl_ms = 1000
[products.pay.fallbacks.card]
tag = "other"
options = []
"#;
        let e = load(src).unwrap_err();
        assert!(
            e.to_string()
                .contains(":7: products.pay.fallbacks.card.tag"),
            "{e}"
        );
        let ok =
            load("[products.pay]\nenvs = [\"dev\"]\n[products.pay.caches.quick]\nttl_ms = 5\n")
                .unwrap();
        let defs = ok.definitions();
        assert_eq!(defs[0].0.to_string(), "products.pay.caches.quick");
        assert_eq!(defs[0].1.meta().product, "pay");
        assert_eq!(defs[0].1.meta().tag, "quick");
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let file = include_str!("../../../../docs/switchyard.schema.json");
        let now = serde_json::to_string_pretty(&json_schema()).unwrap();
        assert!(
            file.trim_end() == now,
            "docs/switchyard.schema.json is stale: run `cargo run -p switchyard -- config schema > docs/switchyard.schema.json`"
        );
    }

    #[test]
    fn the_shipped_configs_parse() {
        for (name, text) in [
            (
                "switchyard.toml",
                include_str!("../../../../examples/switchyard.toml"),
            ),
            ("demo.toml", include_str!("../../../../examples/demo.toml")),
        ] {
            let parsed: Result<ConfigFile, _> = toml::from_str(text);
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
    }

    #[test]
    fn the_schema_describes_the_file() {
        let s = json_schema();
        let text = s.to_string();
        for field in [
            "products",
            "server",
            "max_body_bytes",
            "failure_threshold",
            "panic_mode",
        ] {
            assert!(text.contains(field), "{field} missing from the schema");
        }
    }

    proptest::proptest! {
        /// Config text is what an operator types: any edit of a real
        /// config (characters deleted, inserted, replaced) is loaded into a
        /// config or a list of problems, never a panic.
        #[test]
        fn fuzz_config_text(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0u8..3, proptest::sample::select(
                    b"=[]{}\",\n #0123456789-.abcxyz$".to_vec())),
                0..24,
            ),
        ) {
            let mut text: Vec<u8> = include_str!("../../../../examples/demo.toml").as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(text.len().max(1)).min(text.len());
                match op {
                    0 if i < text.len() => { text.remove(i); }
                    1 => text.insert(i, byte),
                    _ if i < text.len() => text[i] = byte,
                    _ => {}
                }
            }
            let _ = load(&String::from_utf8_lossy(&text));
        }

        /// Any number in any numeric field of the config is accepted or
        /// refused with its path, never a panic or an overflow.
        #[test]
        fn fuzz_config_numbers(
            n in proptest::prelude::any::<u64>(),
            field in proptest::sample::select(vec![
                "runtime.max_instances", "runtime.memory_mb", "runtime.exchange_hold_ms",
                "runtime.keep_resident_mb", "runtime.sandbox_threads", "server.api_threads",
                "server.max_body_bytes",
                "server.shutdown_grace_ms", "server.header_read_timeout_ms",
                "server.max_event_streams", "server.max_buffered_mb",
                "engine.budget.min_retries", "engine.budget.window_ms",
                "engine.breaker.minimum_failure_count", "engine.breaker.open_timeout",
                "engine.admission.max_in_flight", "engine.admission.max_queue",
                "engine.admission.queue_timeout_ms", "engine.admission.max_cooldown_ms",
                "engine.idempotency.ttl_s", "engine.idempotency.max_records",
                "cluster.idempotency_ttl_s",
            ]),
        ) {
            let (table, key) = field.rsplit_once('.').unwrap();
            let text = format!("[{table}]\n{key} = {}\n", n.min(i64::MAX as u64));
            if let Err(p) = load(&text) {
                proptest::prop_assert!(p.0.iter().all(|x| x.path.is_some() || x.line.is_some()), "{p}");
            }
        }
    }
}
