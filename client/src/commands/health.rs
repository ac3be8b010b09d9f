//! `idlink health`: whether idlinkd serves, optionally waiting until it does.

use anyhow::anyhow;
use idlink_client::IdlinkClient;
use serde_json::json;

use crate::cli::Cli;

pub(super) async fn run(cli: &Cli, wait: bool, timeout_seconds: f64) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let tls = crate::credentials::tls(cli)?;
    let started = std::time::Instant::now();
    loop {
        let status = match IdlinkClient::channel_with(&cli.endpoint, &tls).await {
            Ok(channel) => {
                HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok().map(|r| r.into_inner().status)
            }
            Err(_) => None,
        };
        let serving = status == Some(ServingStatus::Serving as i32);
        if serving || !wait || started.elapsed().as_secs_f64() > timeout_seconds {
            let name = status.and_then(|s| ServingStatus::try_from(s).ok()).map_or("UNREACHABLE", |s| s.as_str_name());
            if cli.json {
                println!("{}", json!({"status": name, "waited_ms": started.elapsed().as_millis()}));
            } else {
                println!("{name} (after {} ms)", started.elapsed().as_millis());
            }
            return if serving { Ok(()) } else { Err(anyhow!("not serving")) };
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
