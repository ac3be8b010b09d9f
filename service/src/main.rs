//! idlinkd: settings → telemetry → Application::build → run_until_stopped.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use idlink_service::{
    app::{Application, StartupError},
    clock::SystemClock,
    config::Settings,
    dev::{dev_key_prefix, dev_settings, loopback_only, shared_dev_clients},
    limits::LimitSettings,
    oidc::devidp::{DEV_REDIRECT_URI, DevIdp},
    telemetry,
};

#[derive(Parser)]
#[command(name = "idlinkd", about = "Links work accounts to personal Microsoft accounts (gRPC).")]
struct Args {
    /// The TOML configuration file.
    #[arg(long, conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Development: sled under --data and a development identity provider on loopback.
    #[arg(long)]
    dev: bool,
    /// With --dev: where idlinkd listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    dev_listen: SocketAddr,
    /// With --dev: where the development identity provider listens.
    #[arg(long, default_value = "127.0.0.1:50052")]
    dev_idp_listen: SocketAddr,
    /// With --dev: the data directory.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// With --dev: keep links in this Redis (e.g. redis://127.0.0.1:6379) instead of sled.
    #[arg(long, requires = "dev")]
    dev_redis: Option<String>,
    /// With --dev-redis: the key prefix (default idlink-dev; never idlink, production's).
    #[arg(long, requires = "dev_redis")]
    dev_prefix: Option<String>,
    /// With --dev: use the development identity provider another `idlinkd --dev` started at
    /// this URL (e.g. http://127.0.0.1:50052) instead of starting one: a second replica.
    #[arg(long, requires = "dev")]
    dev_idp: Option<String>,
    /// With --dev: no BeginLink rate limits (load tests such as `idlink bench link`, whose
    /// callers begin far more flows than a person would).
    #[arg(long, requires = "dev")]
    dev_no_rate_limits: bool,
    /// Overrides `listen` (flags win over the environment and the file).
    #[arg(long, conflicts_with = "dev")]
    listen: Option<SocketAddr>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "idlinkd stopped");
            eprintln!("idlinkd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

async fn run(args: Args) -> Result<(), StartupError> {
    let clock = Arc::new(SystemClock);
    if args.dev {
        let telemetry = telemetry::init(&Default::default());
        let dev_listen = loopback_only("--dev-listen", args.dev_listen)?;
        let dev_idp_listen = loopback_only("--dev-idp-listen", args.dev_idp_listen)?;
        let clients = shared_dev_clients();
        // The provider lives as long as this process (unless another process's is used).
        let (_idp, idp_base) = match &args.dev_idp {
            Some(base) => (None, base.trim_end_matches('/').to_owned()),
            None => {
                let idp = DevIdp::start(dev_idp_listen, clients.clone(), clock.clone()).await?;
                let base = idp.base_url().to_owned();
                (Some(idp), base)
            }
        };
        let mut settings = dev_settings(&idp_base, &clients, dev_listen, args.data.clone());
        if let Some(url) = &args.dev_redis {
            settings.store.backend = "redis".into();
            settings.store.redis_url = Some(url.clone());
            settings.store.key_prefix = dev_key_prefix(args.dev_prefix.as_deref())?;
        }
        if args.dev_no_rate_limits {
            settings.limits = LimitSettings {
                begin_per_user_burst: u32::MAX,
                begin_per_user_per_minute: u32::MAX,
                begin_global_burst: u32::MAX,
                begin_global_per_second: u32::MAX,
                ..LimitSettings::default()
            };
        }
        if args.print_config {
            println!("{settings:#?}");
            return Ok(());
        }
        let app = Application::build(&settings, clock).await?;
        println!(
            "idlinkd --dev\n  gRPC:              http://{}\n  identity provider: {}\n  data:              {}\n  redirect URI:      {DEV_REDIRECT_URI}\n\
             Try it:  cargo run --bin idlink -- demo\n         cargo run --bin idlink -- token --user alex@contoso.example",
            app.addr(),
            idp_base,
            args.dev_redis.as_deref().unwrap_or(&args.data.display().to_string())
        );
        let result = app.run_until_stopped(shutdown_signal()).await;
        telemetry.shutdown();
        return result;
    }
    let mut settings = Settings::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if args.print_config {
        // Debug masks every SecretString.
        println!("{settings:#?}");
        return Ok(());
    }
    let telemetry = telemetry::init(&settings.telemetry);
    let app = Application::build(&settings, clock).await?;
    let result = app.run_until_stopped(shutdown_signal()).await;
    // The exporter is flushed whatever happened.
    telemetry.shutdown();
    result
}
