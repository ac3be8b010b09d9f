//! Invariant 13: a person who moved employer takes their personal account along (a transfer).
//! The old organisation — its admins, its former user — and the services see that the link
//! moved, never to whom: no tenant, no object id of the new employer. The new owner, the store
//! and the audit log keep the full record.

use idlink_client::pb;
use idlink_service::oidc::devidp::{CONTOSO_TENANT, FABRIKAM_TENANT};
use idlink_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_organisation_sees_a_transfer_but_not_its_destination() {
    let app = TestApp::spawn_with(without_association_limit).await;
    let alex = app.client_for("alex@contoso.example").await;
    let old = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let casey_key = app.idp.user("casey@fabrikam.example").unwrap().key;
    let casey = app.client_with_request_id(Some(app.idp.access_token("casey@fabrikam.example").unwrap()), Some("the-move")).await;
    let mut request = begin_request(ML, "jordan@outlook.example");
    request.transfer = true;
    let moved = casey.complete_link(begin_with(&casey, request).await).await.unwrap();

    let names_the_new_employer = |link: &pb::Link| {
        let shown = format!("{link:?}");
        shown.contains(FABRIKAM_TENANT) || shown.contains(casey_key.object.as_str()) || shown.contains(&moved.id)
    };
    // The old organisation's admin, listing with tombstones.
    let admin = app.client_for("admin@contoso.example").await;
    let listed = admin
        .list_all_links(pb::ListLinksRequest { organization_id: CONTOSO_TENANT.into(), include_removed: true, ..Default::default() })
        .await
        .unwrap();
    let tombstone = listed.iter().find(|l| l.id == old.id).expect("the tombstone is listed");
    // The former user, asking again to remove it (idempotent: the tombstone).
    let again = alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
    // A service listing the old organisation.
    let service = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    let serviced = service
        .list_all_links(pb::ListLinksRequest { organization_id: CONTOSO_TENANT.into(), include_removed: true, ..Default::default() })
        .await
        .unwrap();
    for (viewer, seen) in
        [("the old admin", tombstone), ("the former user", &again), ("a service", serviced.iter().find(|l| l.id == old.id).unwrap())]
    {
        let removal = seen.removal.as_ref().unwrap();
        assert_eq!(removal.reason, "transferred", "{viewer} learns that it moved");
        assert_eq!(removal.removed_by, None, "{viewer} is not told by whom");
        assert!(!names_the_new_employer(seen), "{viewer} sees the new employer: {seen:?}");
    }

    // The full record: the store, and the audit line of the move.
    let page = app
        .store
        .links_of_tenant(
            &idlink_service::domain::TenantId::parse(CONTOSO_TENANT).unwrap(),
            &idlink_service::store::ListQuery { kind: None, include_removed: true, after: None, limit: 10 },
        )
        .await
        .unwrap();
    let stored = page.links.iter().find(|l| l.id.as_str() == old.id).unwrap();
    assert_eq!(stored.removal.as_ref().unwrap().by, casey_key);
    let audited = audit_lines("the-move");
    assert!(
        audited.iter().any(|l| l.contains("link.create") && l.contains(casey_key.object.as_str()) && l.contains(&moved.id)),
        "{audited:?}"
    );
    // Other removals still say who removed them.
    let blair = app.client_for("blair@contoso.example").await;
    link(&blair, ML, "sam@outlook.example").await.unwrap();
    let blair_key = app.idp.user("blair@contoso.example").unwrap().key;
    let by_admin = admin
        .remove_link(pb::RemoveLinkRequest {
            kind: ML as i32,
            user: Some(pb::AccountRef { tenant_id: blair_key.tenant.as_str().into(), object_id: blair_key.object.as_str().into() }),
            reason: "left the team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_admin.removal.unwrap().removed_by.unwrap().object_id, app.idp.user("admin@contoso.example").unwrap().key.object.as_str());
}

/// "Once the user links their MCID with company B, it will automatically be unlinked from
/// company A": a Learning sign-in at the new employer moves the account there without asking
/// for a transfer — one LINK_TRANSFERRED, the credit with it, the old side told only that it
/// moved. Partner University keeps refusing (`on_linked_elsewhere = "refuse"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learning_account_signed_in_at_a_new_employer_moves_there() {
    use futures_util::StreamExt;
    let app = TestApp::spawn_with(without_association_limit).await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    app.record_earned("jordan@outlook.example", "azure-administrator-associate").await;
    let alex = app.client_for("alex@contoso.example").await;
    let old = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    let watcher = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    let mut events = watcher.watch_link_events(0).await.unwrap();
    for _ in 0..2 {
        events.next().await.unwrap().unwrap();
    }
    let people = |credit: pb::OrganizationCredit| credit.areas.iter().find(|a| a.area_id == "infrastructure-azure").map_or(0, |a| a.people);
    assert_eq!(people(alex.organization_credit(CONTOSO_TENANT).await.unwrap()), 1);

    let casey = app.client_for("casey@fabrikam.example").await;
    let moved = link(&casey, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(moved.personal_account.as_ref().unwrap().object_id, jordan.object.as_str());
    let event = events.next().await.unwrap().unwrap();
    assert_eq!(event.r#type, pb::LinkEventType::LinkTransferred as i32, "one transfer");
    assert_eq!((event.link.unwrap().id, event.previous_link_id), (moved.id.clone(), old.id.clone()));
    assert_eq!(people(alex.organization_credit(CONTOSO_TENANT).await.unwrap()), 0, "the credit left Contoso");
    assert_eq!(people(casey.organization_credit(FABRIKAM_TENANT).await.unwrap()), 1, "and reached Fabrikam");
    let admin = app.client_for("admin@contoso.example").await;
    let listed = admin
        .list_all_links(pb::ListLinksRequest { organization_id: CONTOSO_TENANT.into(), include_removed: true, ..Default::default() })
        .await
        .unwrap();
    let tombstone = listed.iter().find(|l| l.id == old.id).unwrap();
    let removal = tombstone.removal.as_ref().unwrap();
    assert_eq!((removal.reason.as_str(), removal.removed_by.as_ref()), ("transferred", None));
    let shown = format!("{tombstone:?}");
    assert!(!shown.contains(FABRIKAM_TENANT) && !shown.contains(&moved.id) && !shown.contains("casey"), "{shown}");

    // Partner University refuses, as before, and nothing moves or is emitted.
    assert_refused(link(&casey, PU, "jordan@outlook.example").await, tonic::Code::AlreadyExists, "ACCOUNT_LINKED_ELSEWHERE");
    assert_eq!(alex.get_links().await.unwrap().iter().map(|l| l.kind()).collect::<Vec<_>>(), [PU]);
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), events.next()).await;
    assert!(quiet.is_err(), "no event for a refusal: {quiet:?}");
}
