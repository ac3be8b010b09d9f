use idlink_client::pb;
use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_user_links_lists_and_removes_each_kind() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let alex = app.idp.user("alex@contoso.example").unwrap().key;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;

    for kind in [PU, ML] {
        let linked = link(&client, kind, "jordan@outlook.example").await.unwrap();
        assert_eq!(linked.kind, kind as i32);
        assert_eq!(linked.state, pb::LinkState::Active as i32);
        let personal = linked.personal_account.clone().unwrap();
        assert_eq!((personal.tenant_id.as_str(), personal.object_id.as_str()), (jordan.tenant.as_str(), jordan.object.as_str()));
        assert_eq!(personal.email, "jordan@outlook.example", "the owner sees their personal email");
        assert!(!personal.subject.is_empty(), "sub is stored beside the key");
        let work = linked.work_user.clone().unwrap();
        assert_eq!((work.tenant_id.as_str(), work.object_id.as_str()), (alex.tenant.as_str(), alex.object.as_str()));
    }
    // The same personal account serves both kinds.
    let links = client.get_links().await.unwrap();
    assert_eq!(links.len(), 2);

    for kind in [PU, ML] {
        let remove = || {
            client.remove_link(pb::RemoveLinkRequest { kind: kind as i32, user: None, reason: "moving on".into(), ..Default::default() })
        };
        let tombstone = remove().await.unwrap();
        assert_eq!(tombstone.state, pb::LinkState::Removed as i32);
        let removal = tombstone.removal.clone().unwrap();
        assert_eq!(removal.reason, "moving on");
        assert_eq!(removal.removed_by.unwrap().object_id, alex.object.as_str());
        // Idempotent: the same tombstone again, not an error and not a second tombstone.
        assert_eq!(remove().await.unwrap(), tombstone);
    }
    assert!(client.get_links().await.unwrap().is_empty());
    let report = app.integrity().await;
    assert_eq!((report.active_links, report.tombstones), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relinking_needs_replace_existing_and_removing_what_never_existed_is_not_found() {
    let app = TestApp::spawn().await;
    let client = app.client_for("blair@contoso.example").await;
    link(&client, ML, "jordan@outlook.example").await.unwrap();
    // Same pair again: answered with the existing link.
    let again = link(&client, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(client.get_links().await.unwrap(), vec![again.clone()]);

    assert_refused(link(&client, ML, "sam@outlook.example").await, Code::AlreadyExists, "ALREADY_LINKED");
    let mut replace = begin_request(ML, "sam@outlook.example");
    replace.replace_existing = true;
    let complete = begin_with(&client, replace).await;
    let replaced = client.complete_link(complete).await.unwrap();
    assert_eq!(replaced.personal_account.unwrap().email, "sam@outlook.example");
    assert_ne!(replaced.id, again.id);
    assert_eq!(app.integrity().await.active_links, 1);

    let none = client.remove_link(pb::RemoveLinkRequest { kind: PU as i32, user: None, reason: String::new(), ..Default::default() }).await;
    assert_refused(none, Code::NotFound, "LINK_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_kind_or_missing_field_is_invalid_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let bad_kind = client.begin_link(begin_request(pb::LinkKind::Unspecified, "jordan@outlook.example")).await;
    assert_refused(bad_kind, Code::InvalidArgument, "INVALID_ARGUMENT");
    let no_state = client.complete_link(pb::CompleteLinkRequest { code: "x".into(), ..Default::default() }).await;
    assert_refused(no_state, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(app.integrity().await.active_links, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_localized_from_accept_language() {
    let app = TestApp::spawn().await;
    let blair = app.idp.user("blair@contoso.example").unwrap().key;
    let blair = pb::AccountRef { tenant_id: blair.tenant.as_str().into(), object_id: blair.object.as_str().into() };
    // (language, [no link to remove, someone else's links, no token])
    let cases = [
        ("fr-FR,fr;q=0.9", ["Il n'y a aucun compte lié", "Vous n'avez pas l'autorisation", "Votre session n'est pas valide"]),
        ("ko", ["제거할 연결된 계정이 없습니다", "이 작업을 수행할 권한이 없습니다", "세션이 유효하지 않습니다"]),
        ("de-DE", ["There is no linked account", "You don't have permission", "Your session is not valid"]),
    ];
    for (lang, expected) in cases {
        let connect = |token: Option<String>| {
            let mut options = idlink_client::ClientOptions::new(app.endpoint()).accept_language(lang);
            if let Some(token) = token {
                options = options.token(token);
            }
            idlink_client::IdlinkClient::connect(options)
        };
        let alex = connect(Some(app.idp.access_token("alex@contoso.example").unwrap())).await.unwrap();
        let refusals = [
            assert_refused(
                alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, user: None, reason: String::new(), ..Default::default() }).await,
                Code::NotFound,
                "LINK_NOT_FOUND",
            ),
            assert_refused(alex.get_links_of(blair.clone()).await, Code::PermissionDenied, "NOT_PERMITTED"),
            assert_refused(connect(None).await.unwrap().get_links().await, Code::Unauthenticated, "MISSING_TOKEN"),
        ];
        for (message, start) in refusals.iter().zip(expected) {
            assert!(message.starts_with(start), "{lang}: {message}");
        }
    }
}

/// Invariant 4: accounts are (tid, oid); an email is display data that may change or be
/// reused by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_keyed_by_object_id_not_by_email() {
    // Partner University: it refuses an account linked elsewhere (Learning would move it).
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let blair = app.client_for("blair@contoso.example").await;
    let first = link(&alex, PU, "jordan@outlook.example").await.unwrap();

    // Jordan changes their alias: same oid, new email. Still linked to Alex, and nobody else
    // can take it under the new name.
    assert!(app.idp.rename_user("jordan@outlook.example", "jordan.new@outlook.example"));
    assert_refused(link(&blair, PU, "jordan.new@outlook.example").await, Code::AlreadyExists, "ACCOUNT_LINKED_ELSEWHERE");
    let again = link(&alex, PU, "jordan.new@outlook.example").await.unwrap();
    assert_eq!(again.id, first.id, "the same account, whatever its email");

    // A different account that now uses Jordan's old email is a different personal account.
    app.new_personal("morgan@outlook.example");
    assert!(app.idp.rename_user("morgan@outlook.example", "jordan@outlook.example"));
    let other = link(&blair, PU, "jordan@outlook.example").await.unwrap();
    assert_ne!(other.personal_account.unwrap().object_id, first.personal_account.unwrap().object_id);
    assert_eq!(app.integrity().await.active_links, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_asks_its_token_provider_before_every_call() {
    use std::sync::{Arc, Mutex};
    let app = TestApp::spawn().await;
    let current = Arc::new(Mutex::new(None::<String>));
    let provider = {
        let current = current.clone();
        move || current.lock().unwrap().clone()
    };
    let client =
        idlink_client::IdlinkClient::connect(idlink_client::ClientOptions::new(app.endpoint()).token_provider(provider)).await.unwrap();
    assert_refused(client.get_links().await, Code::Unauthenticated, "MISSING_TOKEN");
    *current.lock().unwrap() = Some(app.idp.access_token("alex@contoso.example").unwrap());
    assert!(client.get_links().await.unwrap().is_empty());
}
