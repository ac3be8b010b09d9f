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

fn exit_code(args: &[&str]) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_idlink")).args(args).env_remove("IDLINK_TOKEN").output().ok()?.status.code()
}

#[test]
fn completions_and_a_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (ok, stdout, stderr) = idlink(&["completions", shell]);
        assert!(ok && stdout.contains("idlink") && stdout.contains("remove"), "{shell}: {stderr}");
    }
    let (ok, man, _) = idlink(&["man"]);
    assert!(ok && man.contains(".TH idlink") && man.contains("Link work accounts"), "{man}");
}

/// Exit codes scripts can rely on: 2 for a wrong command line, 69 for an idlink that cannot be
/// reached, and every option says what it takes (`--kind` lists its values).
#[test]
fn exit_codes_say_what_went_wrong_and_options_their_values() {
    assert_eq!(exit_code(&["link", "remove", "--kind", "exams"]), Some(2), "an unknown kind is a usage error");
    let (_, _, stderr) = idlink(&["link", "remove", "--kind", "exams"]);
    assert!(stderr.contains("partner-university") && stderr.contains("microsoft-learning"), "{stderr}");
    let (_, _, stderr) = idlink(&["lnik"]);
    assert!(stderr.contains("link"), "a suggestion: {stderr}");
    let unreachable = ["--token", "t", "--endpoint", "http://127.0.0.1:9", "--retry-seconds", "0", "link", "list"];
    assert_eq!(exit_code(&unreachable), Some(69));
    let (_, help, _) = idlink(&["link", "remove", "--help"]);
    assert!(help.contains("--etag") && help.contains("[possible values: partner-university, microsoft-learning, pu, ml]"), "{help}");
}
