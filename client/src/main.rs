//! `idlink`: the command-line client. Human-readable output by default, `--json` for scripts.

use std::process::ExitCode;

use clap::Parser;
use idlink_client::ClientError;
use serde_json::json;

mod cli;
mod commands;
mod credentials;
mod output;

use cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Rpc { code, reason, message, .. }) if cli.json => {
                    println!("{}", json!({"error": {"code": format!("{code:?}"), "reason": reason, "message": message}}));
                }
                Some(ClientError::Rpc { reason, message, .. }) => eprintln!("idlink: {reason}: {message}"),
                _ => eprintln!("idlink: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
