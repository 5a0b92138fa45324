//! The README's engine example, compiled so it stays true: a fallback of
//! two SMS providers (the bundled http plugin, pointed at two simulated
//! providers on loopback), the first one failing.
//!
//! `cargo run -p switchyard --example routing`

use serde_json::json;
use std::sync::Arc;
use switchyard::Simulator;
use switchyard_engine::{FieldType, RunOptions, Switchyard};
use switchyard_runtime::{Grant, Runtime, RuntimeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = switchyard::bundled("http").expect("built with bundled plugins");
    let yard = Switchyard::new();
    let (primary, backup) = (Simulator::start().await?, Simulator::start().await?);
    primary.set_failure_rate(1.0); // every request answered 503
    for (tag, sim) in [("primary-sms", &primary), ("backup-sms", &backup)] {
        let grant = Grant::new()
            .allow(sim.url())
            .config("base_url", sim.url())
            .config(
                "actions",
                r#"[{"name":"send","method":"POST","path":"/v1/messages"}]"#,
            );
        let app = runtime.load(tag, plugin.clone(), grant).await?;
        yard.install_app("notify", tag, "prd", Arc::new(app));
    }

    yard.fallback()
        .define("notify", "otp")
        .input("phone", FieldType::String)
        .input("code", FieldType::String)
        .provider("primary")
        .app("primary-sms")
        .action("send")
        .retries(2)
        .map_input(json!({"to": "$Input{phone}", "text": "Your code is $Input{code}"}))
        .map_output(json!({"message_id": "$Response{id}"}))
        .provider("backup")
        .app("backup-sms")
        .action("send")
        .map_input(json!({"to": "$Input{phone}", "text": "Your code is $Input{code}"}))
        .map_output(json!({"message_id": "$Response{id}"}))
        .create()?;

    let input = json!({"phone": "+15550100", "code": "123456"});
    let result = yard
        .fallback()
        .run("notify", "prd", "otp", input, RunOptions::default())
        .await?;
    println!("{} via {:?}", result.output, result.provider);
    print!("{}", result.trace.render());
    Ok(())
}
