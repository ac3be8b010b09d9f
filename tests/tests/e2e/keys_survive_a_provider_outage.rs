//! JWKS cache: while the identity provider is down, cached keys keep validating; a key idlink
//! has never seen fails closed; an issuer never discovered is UNAVAILABLE, not a bypass.

use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_validate_during_an_outage_and_unknown_keys_fail_closed() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    alex.get_links().await.unwrap(); // Contoso's keys are now cached

    app.idp.set_down(true);
    alex.get_links().await.unwrap();
    alex.begin_link(begin_request(ML, "jordan@outlook.example")).await.unwrap();

    app.idp.rotate_signing_key().await.unwrap();
    let blair = app.client_for("blair@contoso.example").await; // signed with the new key
    assert_refused(blair.get_links().await, Code::Unauthenticated, "INVALID_TOKEN");
    // Fabrikam's issuer was never discovered: its metadata cannot be fetched. The failure is
    // remembered: a flood of calls naming it costs one discovery, not one each (invariant 12).
    let casey = app.client_for("casey@fabrikam.example").await;
    let before = app.idp.discovery_requests();
    for _ in 0..20 {
        assert_refused(casey.get_links().await, Code::Unavailable, "IDENTITY_PROVIDER_UNAVAILABLE");
    }
    assert_eq!(app.idp.discovery_requests() - before, 1, "one discovery for twenty calls");

    // Back up: the old keys still work for tokens signed before.
    app.idp.set_down(false);
    alex.get_links().await.unwrap();
    // Fabrikam is tried again once the remembered failure is old enough, not before.
    assert_refused(casey.get_links().await, Code::Unavailable, "IDENTITY_PROVIDER_UNAVAILABLE");
    assert_eq!(app.idp.discovery_requests() - before, 1);
    app.clock.advance(idlink_service::oidc::inbound::DISCOVERY_RETRY_AFTER);
    // A fresh token: the clock moved, and the old one's signing key was rotated away meanwhile.
    let casey = app.client_for("casey@fabrikam.example").await;
    casey.get_links().await.unwrap();
    assert_eq!(app.idp.discovery_requests() - before, 2);
}
