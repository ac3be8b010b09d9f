//! `idlink-portal`: the reference "Your learning" panel. `idlink-portal --dev` serves it at
//! <http://localhost:8080> against `idlinkd --dev`.

use std::net::SocketAddr;

use clap::Parser;
use secrecy::SecretString;

#[derive(Parser)]
#[command(version, about = "The reference portal: Partner Center's \"Your learning\" panel over idlink")]
struct Args {
    /// Against `idlinkd --dev` and its development provider, at http://localhost:8080.
    #[arg(long)]
    dev: bool,
    /// Where the portal listens.
    #[arg(long, env = "IDLINK_PORTAL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where browsers reach the portal (its callbacks are under it).
    #[arg(long, env = "IDLINK_PORTAL_PUBLIC_URL")]
    public_url: Option<String>,
    /// idlinkd's gRPC endpoint.
    #[arg(long, env = "IDLINK_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// A private CA for idlinkd's certificate (PEM).
    #[arg(long, env = "IDLINK_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// With --dev: the development provider.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    dev_idp: String,
    /// The work authority, e.g. https://login.microsoftonline.com/organizations/v2.0.
    #[arg(long, env = "IDLINK_PORTAL_AUTHORITY")]
    authority: Option<String>,
    /// The portal's app registration.
    #[arg(long, env = "IDLINK_PORTAL_CLIENT_ID")]
    client_id: Option<String>,
    /// idlink's scope, e.g. api://idlink/Links.Manage.
    #[arg(long, env = "IDLINK_PORTAL_SCOPE", default_value = "api://idlink/Links.Manage")]
    scope: String,
    /// Where "view training" goes.
    #[arg(long, env = "IDLINK_PORTAL_TRAINING_URL", default_value = "https://partner.microsoft.com/training")]
    training_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let (listen, config) = if args.dev {
        let config = idlink_portal::dev_config(&args.endpoint, &args.dev_idp, "http://localhost:8080");
        (args.listen.unwrap_or_else(idlink_portal::dev_listen), config)
    } else {
        let need = |value: Option<String>, flag: &str| value.ok_or_else(|| anyhow::anyhow!("{flag} is required (or --dev)"));
        // The secret only from the environment, never from a flag (it would show in `ps`).
        let secret =
            std::env::var("IDLINK_PORTAL_CLIENT_SECRET").map_err(|_| anyhow::anyhow!("IDLINK_PORTAL_CLIENT_SECRET is required"))?;
        let config = idlink_portal::PortalConfig {
            public_url: need(args.public_url, "--public-url")?,
            idlink_endpoint: args.endpoint,
            idlink_ca_pem: args.ca_file.map(std::fs::read).transpose()?,
            work_authority: need(args.authority, "--authority")?,
            client_id: need(args.client_id, "--client-id")?,
            client_secret: SecretString::from(secret),
            idlink_scope: args.scope,
            training_url: args.training_url,
            development: false,
        };
        (args.listen.ok_or_else(|| anyhow::anyhow!("--listen is required (or --dev)"))?, config)
    };
    if config.development && !listen.ip().is_loopback() {
        anyhow::bail!("--dev listens on loopback addresses only");
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let public = config.public_url.trim_end_matches('/').to_owned();
    // The work authority may still be starting (idlinkd --dev starts its provider): wait for it.
    let app = loop {
        match idlink_portal::router(config.clone()).await {
            Ok(app) => break app,
            Err(e) => {
                eprintln!("idlink-portal: waiting for the work authority {} ({e}); retrying in 2 s", config.work_authority);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    println!("idlink-portal: open {public}/profile");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
