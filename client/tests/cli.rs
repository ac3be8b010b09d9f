//! The `idlink` binary explains itself and says what to do when it cannot proceed. (Also makes
//! `cargo test` build the binary, which the end-to-end import test runs.)

use std::process::Command;

fn idlink(args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_idlink")).args(args).env_remove("IDLINK_TOKEN").output().unwrap_or_else(|e| unreachable!("{e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_lists_the_batch_commands() {
    let (ok, stdout, _) = idlink(&["--help"]);
    assert!(ok);
    for command in ["link", "demo", "orgs", "certs", "credit", "events", "resolve", "token"] {
        assert!(stdout.contains(command), "{command} missing from --help");
    }
}

#[test]
fn missing_credentials_and_missing_files_are_explained() {
    let (ok, _, stderr) = idlink(&["--endpoint", "http://127.0.0.1:9", "credit", "show", "x"]);
    assert!(!ok && stderr.contains("no credentials"), "{stderr}");
    let (ok, _, stderr) = idlink(&["--token", "t", "--endpoint", "http://127.0.0.1:9", "credit", "recalc"]);
    assert!(!ok && stderr.contains("--all"), "{stderr}");
}
