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

/// Exit codes: 0 done; 1 refused (or a file the command could not use); 2 the command line
/// itself is wrong (clap's); 69 (`EX_UNAVAILABLE`) idlink could not be reached or stayed
/// unavailable through the retries.
const REFUSED: u8 = 1;
const UNAVAILABLE: u8 = 69;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let client_error = e.downcast_ref::<ClientError>();
            match client_error {
                Some(ClientError::Rpc { code, reason, message, .. }) if cli.json => {
                    println!("{}", json!({"error": {"code": idlink_proto::code_name(*code), "reason": reason, "message": message}}));
                }
                Some(ClientError::Rpc { reason, message, .. }) => eprintln!("idlink: {reason}: {message}"),
                _ => eprintln!("idlink: {e:#}"),
            }
            match client_error {
                Some(ClientError::Transport(_)) => ExitCode::from(UNAVAILABLE),
                Some(ClientError::Rpc { code: tonic::Code::Unavailable, .. }) => ExitCode::from(UNAVAILABLE),
                _ => ExitCode::from(REFUSED),
            }
        }
    }
}
