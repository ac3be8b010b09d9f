//! `request_id`: retries — even concurrent ones — get the first answer; a reused id with a
//! different request is refused; ids are per caller.

use futures_util::future::join_all;
use idlink_client::pb;
use idlink_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_completion_link_once_and_all_get_the_link() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let mut complete = begin_and_sign_in(&alex, ML, "jordan@outlook.example").await;
    complete.request_id = "complete-7f3a".into();
    let answers = join_all((0..16).map(|_| alex.complete_link(complete.clone()))).await;
    let first = answers[0].as_ref().unwrap().clone();
    for answer in &answers {
        assert_eq!(answer.as_ref().unwrap(), &first, "every retry gets the first answer");
    }
    // Later retries too, although the flow was consumed by the first attempt.
    assert_eq!(alex.complete_link(complete.clone()).await.unwrap(), first);
    assert_eq!(app.integrity().await.active_links, 1);
    let events = app.store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "one link, one event");

    // The same id with a different request is refused.
    let mut other = complete.clone();
    other.code.push('x');
    assert_refused(alex.complete_link(other).await, Code::InvalidArgument, "INVALID_ARGUMENT");

    // Removal retried concurrently: one tombstone, the same answer everywhere.
    let remove = pb::RemoveLinkRequest { kind: ML as i32, reason: "bye".into(), request_id: "remove-1".into(), ..Default::default() };
    let answers = join_all((0..8).map(|_| alex.remove_link(remove.clone()))).await;
    let tombstone = answers[0].as_ref().unwrap().clone();
    assert!(answers.iter().all(|a| a.as_ref().unwrap() == &tombstone));
    assert_eq!(app.store.events_after(0, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_refusal_is_replayed_and_ids_belong_to_their_caller() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let blair = app.client_for("blair@contoso.example").await;
    let bogus = pb::CompleteLinkRequest { state: "s".repeat(43), code: "c".into(), request_id: "same-id".into(), ..Default::default() };
    assert_refused(alex.complete_link(bogus.clone()).await, Code::NotFound, "FLOW_NOT_FOUND");
    assert_refused(alex.complete_link(bogus).await, Code::NotFound, "FLOW_NOT_FOUND");

    let mut begin = begin_request(ML, "jordan@outlook.example");
    begin.request_id = "same-id".into();
    let a1 = alex.begin_link(begin.clone()).await.unwrap();
    let a2 = alex.begin_link(begin.clone()).await.unwrap();
    assert_eq!(a1, a2, "a retried BeginLink answers the same flow");
    let b = blair.begin_link(begin).await.unwrap();
    assert_ne!(a1.state, b.state, "another caller's id is another key");
    remember_secrets([a1.state, b.state]);

    // Organisation enrolment, retried.
    let enrolment = app.client_with_token(Some(app.idp.app_token("enrolment").unwrap())).await;
    let upsert = pb::UpsertOrganizationRequest {
        tenant_id: idlink_service::oidc::devidp::CONTOSO_TENANT.into(),
        partner_id: "4512345".into(),
        name: "Contoso".into(),
        request_id: "enrol-1".into(),
    };
    let first = enrolment.upsert_organization(upsert.clone()).await.unwrap();
    assert_eq!(enrolment.upsert_organization(upsert.clone()).await.unwrap(), first);
    let changed = pb::UpsertOrganizationRequest { name: "Contoso Ltd".into(), ..upsert };
    assert_refused(enrolment.upsert_organization(changed).await, Code::InvalidArgument, "INVALID_ARGUMENT");
}
