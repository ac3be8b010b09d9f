//! TLS on idlinkd's port, with certificates made in the test: a client trusting the CA works,
//! one that does not is refused at the handshake; with client certificates required, only a
//! client holding one of the CA's gets in; a certificate rotated on disk is served to new
//! connections while an open stream carries on.

use std::time::Duration;

use idlink_client::{ClientError, ClientOptions, ClientTls, IdlinkClient};
use idlink_tests::{pki::TestPki, *};

fn trusting(ca: &TestPki) -> ClientTls {
    ClientTls { ca_pem: Some(ca.ca_pem.clone().into_bytes()), identity: None }
}

#[track_caller]
fn refused_at_the_handshake(outcome: Result<IdlinkClient, ClientError>, case: &str) -> String {
    match outcome {
        Err(ClientError::Transport(why)) => why,
        Err(other) => panic!("{case}: refused, but not at the handshake: {other}"),
        Ok(_) => panic!("{case}: connected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_links_and_one_that_does_not_is_refused() {
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |_| {}).await;
    assert!(app.endpoint().starts_with("https://"));
    let alex = app.client_for("alex@contoso.example").await;
    let linked = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(alex.get_links().await.unwrap()[0].id, linked.id);

    let stranger = TestPki::new("another CA");
    let token = app.idp.access_token("alex@contoso.example").unwrap();
    let why = refused_at_the_handshake(
        IdlinkClient::connect(ClientOptions::new(app.endpoint()).tls(trusting(&stranger)).token(token.clone())).await,
        "a CA the server's certificate is not from",
    );
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    // The public web roots do not vouch for a private CA either.
    refused_at_the_handshake(IdlinkClient::connect(ClientOptions::new(app.endpoint()).token(token.clone())).await, "web roots");
    // And plaintext to a TLS port is no gRPC at all.
    let plaintext = IdlinkClient::connect(ClientOptions::new(app.endpoint().replace("https", "http")).token(token)).await;
    assert!(plaintext.is_err() || plaintext.unwrap().get_links().await.is_err(), "plaintext to a TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_only_a_certificate_of_the_ca_gets_in() {
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, true, |_| {}).await;
    // The app's own clients present a client certificate of the CA.
    app.client_for("alex@contoso.example").await.get_links().await.unwrap();
    let token = app.idp.access_token("alex@contoso.example").unwrap();
    let without = IdlinkClient::connect(ClientOptions::new(app.endpoint()).tls(trusting(&pki)).token(token.clone())).await;
    let refused = match without {
        Err(ClientError::Transport(_)) => true,
        Ok(client) => client.get_links().await.is_err(),
        Err(other) => panic!("{other}"),
    };
    assert!(refused, "a client without a certificate got in");
    let other_ca = TestPki::new("another CA");
    let foreign = other_ca.client("intruder.test");
    let tls = ClientTls { identity: Some((foreign.cert_pem.into_bytes(), foreign.key_pem.into_bytes())), ..trusting(&pki) };
    let intruder = match IdlinkClient::connect(ClientOptions::new(app.endpoint()).tls(tls).token(token)).await {
        Err(ClientError::Transport(_)) => true,
        Ok(client) => client.get_links().await.is_err(),
        Err(other) => panic!("{other}"),
    };
    assert!(intruder, "a client certificate of another CA got in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_connections_while_an_open_stream_carries_on() {
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |_| {}).await;
    let watcher = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    let mut events = watcher.watch_link_events(0).await.unwrap();

    // Rotate in place, as Kubernetes does with a mounted Secret: a certificate of a new CA.
    let next = TestPki::new("next CA");
    let issued = next.server();
    std::fs::write(pki.dir().join("server.key"), &issued.key_pem).unwrap();
    std::fs::write(pki.dir().join("server.pem"), &issued.cert_pem).unwrap();
    let token = app.idp.access_token("alex@contoso.example").unwrap();
    let mut rotated = None;
    for _ in 0..100 {
        let options = ClientOptions::new(app.endpoint()).tls(trusting(&next)).token(token.clone());
        if let Ok(client) = IdlinkClient::connect(options).await {
            rotated = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = rotated.expect("a new connection gets the new certificate");
    let linked = link(&rotated, ML, "jordan@outlook.example").await.unwrap();
    // The stream opened before the rotation is still there, and hears of the link.
    let event = tokio::time::timeout(Duration::from_secs(5), events.message()).await.expect("the open stream carries on").unwrap().unwrap();
    assert_eq!(event.link.unwrap().id, linked.id);
    // A new connection trusting only the old CA no longer gets in.
    let old = IdlinkClient::connect(ClientOptions::new(app.endpoint()).tls(trusting(&pki)).token(token)).await;
    refused_at_the_handshake(old, "the old CA after the rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_rotation_keeps_the_last_good_certificate() {
    let pki = TestPki::default();
    let app = TestApp::spawn_tls(&pki, false, |_| {}).await;
    // The certificate changes, its key not yet: the pair does not match.
    std::fs::write(pki.dir().join("server.pem"), TestPki::new("next CA").server().cert_pem).unwrap();
    // Handshakes until one has tried the new pair and said it keeps the old one.
    let mut kept = false;
    for _ in 0..100 {
        app.client_for("alex@contoso.example").await.get_links().await.expect("the last good certificate is served");
        if captured_logs().contains("new TLS certificate files do not load") {
            kept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kept, "the half-written pair was tried and refused");
    app.client_for("alex@contoso.example").await.get_links().await.expect("and the last good certificate is still served");
}
