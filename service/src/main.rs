//! idlinkd: settings (the file and the environment, or `--dev`) → telemetry →
//! Application::build → run_until_stopped.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use idlink_service::{
    app::{Application, StartupError},
    clock::SystemClock,
    config::Settings,
    dev::{DevArgs, banner, dev_setup},
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
    #[command(flatten)]
    dev_args: DevArgs,
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
    // The development provider, when this process runs one, lives as long as it.
    let (_idp, settings, banner) = if args.dev {
        let (idp, idp_base, settings) = dev_setup(&args.dev_args, clock.clone()).await?;
        (idp, settings, Some(move |addr| banner(addr, &idp_base, &args.dev_args)))
    } else {
        let mut settings = Settings::load(args.config.as_deref(), std::env::vars())?;
        settings.listen = args.listen.unwrap_or(settings.listen);
        (None, settings, None)
    };
    if args.print_config {
        // Debug masks every SecretString.
        println!("{settings:#?}");
        return Ok(());
    }
    let telemetry = telemetry::init(&settings.telemetry)?;
    let app = Application::build(&settings, clock).await?;
    if let Some(banner) = banner {
        println!("{}", banner(app.addr()));
    }
    let result = app.run_until_stopped(shutdown_signal()).await;
    // The exporter is flushed whatever happened.
    telemetry.shutdown();
    result
}
