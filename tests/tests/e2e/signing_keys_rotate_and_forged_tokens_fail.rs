//! Invariant 5's signature check against a live provider: a rotated key is picked up by one
//! JWKS refetch; a key the provider never published fails closed, and unknown kids cannot
//! make idlink hammer the provider.

use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_rotated_between_two_flows_still_links() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    // Blair's access token is minted before the rotation, so only the association flow
    // meets the new key.
    let blair = app.client_for("blair@contoso.example").await;
    let (_, dana) = app.new_work_user("dana@contoso.example").await;
    link(&alex, ML, "jordan@outlook.example").await.unwrap();

    let old_kid = app.idp.active_kid();
    app.idp.rotate_signing_key().await.unwrap();
    assert_ne!(app.idp.active_kid(), old_kid);
    let fetches = app.idp.jwks_fetches();
    link(&blair, ML, "sam@outlook.example").await.unwrap();
    assert_eq!(app.idp.jwks_fetches(), fetches + 1, "one refetch on the unknown kid");
    // The next flow of the same kind uses the cached new key: no further fetch.
    app.new_personal("kim@outlook.example");
    link(&dana, ML, "kim@outlook.example").await.unwrap();
    assert_eq!(app.idp.jwks_fetches(), fetches + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_by_a_foreign_key_fails_closed_and_refetches_at_most_once() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    client.get_links().await.unwrap(); // the caller's issuer keys are fetched on first use
    app.idp.misbehave(Misbehaviour::ForeignKey).await.unwrap();
    let fetches = app.idp.jwks_fetches();
    for _ in 0..3 {
        assert_refused(link(&client, ML, "jordan@outlook.example").await, Code::PermissionDenied, "ID_TOKEN_INVALID");
    }
    assert_eq!(app.idp.jwks_fetches(), fetches + 1, "unknown kids are rate limited");
    assert!(client.get_links().await.unwrap().is_empty());
    assert_eq!(app.integrity().await.active_links, 0);
}
