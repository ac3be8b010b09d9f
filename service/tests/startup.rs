//! idlinkd refuses to start on configurations that would make strict validation impossible,
//! naming the key and why. (Also makes `cargo test` build the binary the e2e crash test runs.)

use std::process::Command;

fn start_with(kind_block: &str, extra: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let config = dir.path().join("idlink.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[store]\npath = {:?}\n[auth]\naudience = \"api://idlink\"\nallowed_tenants = [\"3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01\"]\n{kind_block}\n{extra}",
        dir.path().join("data")
    );
    std::fs::write(&config, text).unwrap_or_else(|e| unreachable!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_idlinkd")).arg("--config").arg(&config).output().unwrap_or_else(|e| unreachable!("{e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn kind(authority: &str) -> String {
    format!(
        "[kinds.partner_university]\nauthority = \"{authority}\"\nclient_id = \"c\"\nclient_secret = \"s\"\nredirect_uris = [\"https://partner.example/cb\"]\n"
    )
}

#[test]
fn multi_tenant_authorities_are_refused() {
    for alias in ["common", "organizations", "consumers", "{tenantid}"] {
        let (ok, stderr) = start_with(&kind(&format!("https://login.microsoftonline.com/{alias}/v2.0")), "");
        assert!(!ok, "{alias} accepted");
        assert!(stderr.contains("kinds.partner_university") && stderr.contains("multi-tenant alias"), "{alias}: {stderr}");
    }
}

#[test]
fn http_authorities_need_the_development_switch() {
    let (ok, stderr) = start_with(&kind("http://127.0.0.1:9/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"), "");
    assert!(!ok);
    assert!(stderr.contains("dev.allow_insecure_http"), "{stderr}");
}

#[test]
fn unknown_keys_and_missing_secrets_are_named() {
    let (ok, stderr) = start_with("", "[auth2]\nx = 1\n");
    assert!(!ok && stderr.contains("auth2"), "{stderr}");
    let no_secret =
        kind("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0").replace("client_secret = \"s\"\n", "");
    let (ok, stderr) = start_with(&no_secret, "");
    assert!(!ok && stderr.contains("client_secret"), "{stderr}");
}

#[test]
fn redirect_uris_must_be_https_outside_development() {
    let block = kind("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0")
        .replace("https://partner.example/cb", "http://partner.example/cb");
    let (ok, stderr) = start_with(&block, "");
    assert!(!ok);
    assert!(stderr.contains("kinds.partner_university.redirect_uris") && stderr.contains("https"), "{stderr}");
}

#[test]
fn print_config_masks_secrets_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let config = dir.path().join("idlink.toml");
    let text = format!(
        "listen = \"127.0.0.1:1\"\n[auth]\naudience = \"api://idlink\"\nallowed_tenants = []\n{}",
        kind("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0").replace("\"s\"", "\"file-secret-value\"")
    );
    std::fs::write(&config, text).unwrap_or_else(|e| unreachable!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_idlinkd"))
        .args(["--print-config", "--listen", "127.0.0.1:7777", "--config"])
        .arg(&config)
        .env("IDLINK_FLOWS__TTL_SECONDS", "120")
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("127.0.0.1:7777"), "the flag wins: {stdout}");
    assert!(stdout.contains("ttl_seconds: 120"), "the environment overrides the file: {stdout}");
    assert!(!stdout.contains("file-secret-value"), "secrets are masked: {stdout}");
}

#[test]
fn the_documented_example_configuration_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../idlink.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_idlinkd"))
        .args(["--print-config", "--config", example])
        .env("IDLINK_KINDS__PARTNER_UNIVERSITY__CLIENT_SECRET", "x")
        .env("IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET", "y")
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs idlinkd with `args` for at most a few seconds: its exit status (None when it was still
/// running, and was killed) and what it wrote to stderr.
fn run_briefly(args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlinkd"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut status = None;
    for _ in 0..100 {
        if let Some(exited) = child.try_wait().unwrap_or_else(|e| unreachable!("{e}")) {
            status = Some(exited);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
    (status, stderr)
}

#[test]
fn development_listens_on_loopback_only() {
    for (flag, value) in [("--dev-listen", "0.0.0.0:0"), ("--dev-idp-listen", "0.0.0.0:0"), ("--dev-listen", "[::]:0")] {
        let (status, stderr) = run_briefly(&["--dev", flag, value, "--print-config"]);
        assert!(status.is_some_and(|s| !s.success()), "{flag} {value} was accepted");
        assert!(stderr.contains(flag) && stderr.contains("loopback"), "{flag}: {stderr}");
    }
}

#[test]
fn development_on_redis_never_uses_the_production_prefix() {
    let (status, stderr) = run_briefly(&["--dev", "--dev-redis", "redis://127.0.0.1:1", "--dev-prefix", "idlink", "--print-config"]);
    assert!(status.is_some_and(|s| !s.success()), "the production prefix was accepted");
    assert!(stderr.contains("--dev-prefix idlink"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_idlinkd"))
        .args(["--dev", "--dev-idp", "http://127.0.0.1:1", "--dev-redis", "redis://127.0.0.1:1", "--print-config"])
        .output()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("key_prefix: \"idlink-dev\""), "{stdout}");
}

/// Starts idlinkd briefly on a configuration file holding `text`.
fn run_config(text: &str) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let config = dir.path().join("idlink.toml");
    std::fs::write(&config, text.replace("DATA", &format!("{:?}", dir.path().join("data")))).unwrap_or_else(|e| unreachable!("{e}"));
    run_briefly(&["--config", config.to_str().unwrap_or_default()])
}

const AUTH: &str = "[auth]\naudience = \"api://idlink\"\nallowed_tenants = [\"3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01\"]\n";

#[test]
fn an_http_issuer_template_needs_the_development_switch() {
    let (status, stderr) = run_config(&format!(
        "listen = \"127.0.0.1:0\"\n[store]\npath = DATA\n{AUTH}issuer_template = \"http://127.0.0.1:9/{{tid}}/v2.0\"\n"
    ));
    assert!(status.is_some_and(|s| !s.success()), "an http issuer template was accepted");
    assert!(stderr.contains("auth.issuer_template") && stderr.contains("dev.allow_insecure_http"), "{stderr}");
}

#[test]
fn a_redis_url_that_turns_off_certificate_checks_is_refused() {
    let (status, stderr) = run_config(&format!(
        "listen = \"127.0.0.1:0\"\n[store]\nbackend = \"redis\"\nredis_url = \"rediss://127.0.0.1:1/0#insecure\"\n{AUTH}"
    ));
    assert!(status.is_some_and(|s| !s.success()), "#insecure was accepted");
    assert!(stderr.contains("store.redis_url") && stderr.contains("#insecure"), "{stderr}");
}

#[test]
fn plaintext_beyond_loopback_needs_tls_or_an_explicit_mesh_switch() {
    let base = format!("listen = \"0.0.0.0:0\"\n[store]\npath = DATA\n{AUTH}");
    let (status, stderr) = run_config(&base);
    assert!(status.is_some_and(|s| !s.success()), "plaintext on 0.0.0.0 was accepted");
    assert!(stderr.contains("server.tls") && stderr.contains("server.allow_plaintext"), "{stderr}");
    // A mesh terminates TLS in front of it: said explicitly, it starts (and keeps running).
    let (status, stderr) = run_config(&format!("{base}[server]\nallow_plaintext = true\n"));
    assert!(status.is_none(), "allow_plaintext = true did not start: {stderr}");
    // A TLS key that is not there is named.
    let (status, stderr) =
        run_config(&format!("{base}[server.tls]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = \"/nonexistent/tls.key\"\n"));
    assert!(status.is_some_and(|s| !s.success()) && stderr.contains("server.tls.cert_file"), "{stderr}");
}
