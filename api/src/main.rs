//! `delivery-api`: the gateway, and three helpers.
//!
//! ```text
//! delivery-api                                  serve (configuration from the environment)
//! delivery-api token --role operator --sub alice [--role admin] [--ttl 8h]
//! delivery-api openapi                          print the OpenAPI document
//! delivery-api typescript                       print its schemas as TypeScript (web/src/types.ts)
//! ```

use std::time::Duration;

use delivery_api::auth::{Role, TokenKeys};
use delivery_api::config::{DEV_JWT_SECRET, token_policy};
use delivery_api::{ApiConfig, app, connect, serve};
use delivery_platform::telemetry;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => run().await,
        Some("token") => token(&args[1..]),
        Some("openapi") => {
            println!("{}", app::spec_json());
            Ok(())
        }
        Some("typescript") => {
            print!("{}", delivery_api::typescript::web_types());
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; use serve, token, openapi or typescript"
        )),
    };
    if let Err(error) = result {
        eprintln!("delivery-api: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let telemetry = telemetry::init("delivery-api");
    let served = async {
        let config = ApiConfig::from_env()?;
        let state = connect(config, Duration::from_secs(60)).await?;
        serve(state, async {
            delivery_platform::shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await
    }
    .await;
    telemetry.shutdown().await;
    served
}

/// Mints a token signed with `JWT_SECRET` (the development secret when unset).
fn token(args: &[String]) -> anyhow::Result<()> {
    let mut roles = Vec::new();
    let mut sub = None;
    let mut ttl = Duration::from_secs(8 * 3600);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--role" => roles.push(Role::parse(value).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role {value:?}; roles: {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })?),
            "--sub" => sub = Some(value.clone()),
            "--ttl" => {
                ttl = delivery_workflows::duration_text::parse(value)
                    .map_err(|e| anyhow::anyhow!("--ttl: {e}"))?
            }
            other => anyhow::bail!("unknown option {other}; use --role, --sub, --ttl"),
        }
    }
    let sub = sub.ok_or_else(|| anyhow::anyhow!("--sub is required"))?;
    let secret = std::env::var("JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEV_JWT_SECRET.to_owned());
    let policy = token_policy(&delivery_platform::Env::new(|key| std::env::var(key).ok()))?;
    let token = TokenKeys::with_policy(secret.as_bytes(), policy).mint(&sub, &roles, ttl)?;
    println!("{token}");
    Ok(())
}
