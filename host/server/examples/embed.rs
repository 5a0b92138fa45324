//! The README's embedding example, compiled so it stays true.
//!
//! `cargo run -p switchyard --example embed -- path/to/http.wasm`

use switchyard_engine::CallRequest;
use switchyard_runtime::{Credential, Secret};
use switchyard_runtime::{Grant, Runtime, RuntimeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plugin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http.wasm".into());
    let runtime = Runtime::new(RuntimeConfig::default())?;
    // What this app may do: reach one origin, with a key the guest never sees.
    let grant = Grant::new()
        .allow("https://api.example.com")
        .credential(Credential::Bearer {
            token: Secret::from_env("EXAMPLE_KEY")?,
        })
        .config("base_url", "https://api.example.com")
        .config(
            "actions",
            r#"[{"name":"send","method":"POST","path":"/v1/messages"}]"#,
        );
    let app = runtime
        .load("example", std::path::Path::new(&plugin), grant)
        .await?;
    let request = CallRequest::new("send", serde_json::json!({"to": "+15550100"}));
    match app.call(request).await {
        Ok(response) => println!("{}", response.output),
        Err(e) => println!("{} ({:?}): {}", e.class, e.kind, e.message),
    }
    Ok(())
}
