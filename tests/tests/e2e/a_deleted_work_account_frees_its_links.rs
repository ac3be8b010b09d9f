//! A leaver's work account is deleted: RemoveWorkUser tombstones every link of it with its
//! events, the organisation's credit drops in the same step, and the personal accounts are
//! free for the next employer. For the tenant's admins and enrolment alone; idempotent.

use futures_util::StreamExt;
use idlink_client::pb;
use idlink_service::oidc::devidp::{CONTOSO_TENANT, FABRIKAM_TENANT};
use idlink_tests::*;
use tonic::Code;

fn removal(user: &idlink_service::domain::AccountKey) -> pb::RemoveWorkUserRequest {
    let user = pb::AccountRef { tenant_id: user.tenant.as_str().into(), object_id: user.object.as_str().into() };
    pb::RemoveWorkUserRequest { user: Some(user), reason: "left the company".into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_work_account_loses_its_links_and_credit_and_frees_its_accounts() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    app.record_earned("jordan@outlook.example", "azure-administrator-associate").await;
    let alex = app.client_for("alex@contoso.example").await;
    let learning = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let university = link(&alex, PU, "sam@outlook.example").await.unwrap();
    assert!(!alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty());
    let watcher = app.app_client("partner-university").await;
    let mut events = watcher.watch_link_events(0).await.unwrap();
    for _ in 0..2 {
        events.next().await.unwrap().unwrap(); // the two creations
    }

    // Only the tenant's admins and enrolment may say a work account is gone.
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    let blair = app.client_for("blair@contoso.example").await;
    for refused in [app.client_for("admin@fabrikam.example").await, alex.clone(), blair.clone(), watcher.clone()] {
        assert_refused(refused.remove_work_user(removal(&alex_key)).await, Code::PermissionDenied, "NOT_PERMITTED");
    }
    assert_eq!(alex.get_links().await.unwrap().len(), 2, "nothing was removed by the refusals");
    let personal = pb::RemoveWorkUserRequest {
        user: Some(pb::AccountRef { tenant_id: jordan.tenant.as_str().into(), object_id: jordan.object.as_str().into() }),
        ..Default::default()
    };
    assert_refused(app.app_client("enrolment").await.remove_work_user(personal).await, Code::InvalidArgument, "INVALID_ARGUMENT");

    let enrolment = app.app_client("enrolment").await;
    let removed = enrolment.remove_work_user(removal(&alex_key)).await.unwrap().removed;
    let mut ids: Vec<_> = removed.iter().map(|l| (l.id.clone(), l.removal.as_ref().unwrap().reason.clone())).collect();
    ids.sort();
    let mut expected =
        vec![(learning.id.clone(), "work_account_deleted".to_owned()), (university.id.clone(), "work_account_deleted".to_owned())];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(removed.iter().all(|l| l.state() == pb::LinkState::Removed));
    assert!(alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty(), "the credit dropped with the links");
    assert!(alex.get_links().await.unwrap().is_empty());
    for _ in 0..2 {
        let event = events.next().await.unwrap().unwrap();
        assert_eq!(event.r#type, pb::LinkEventType::LinkRemoved as i32);
        assert_eq!(event.link.unwrap().removal.unwrap().reason, "work_account_deleted");
    }
    // Again: nothing changes, nothing is emitted.
    assert!(enrolment.remove_work_user(removal(&alex_key)).await.unwrap().removed.is_empty());
    assert!(app.client_for("admin@contoso.example").await.remove_work_user(removal(&alex_key)).await.unwrap().removed.is_empty());

    // The freed accounts link to the next employer without a transfer, within the limit on
    // associations: Jordan's link to Alex was one a moment ago, so 30 days must pass first.
    let casey = app.client_for("casey@fabrikam.example").await;
    assert_refused(link(&casey, ML, "jordan@outlook.example").await, Code::FailedPrecondition, "ASSOCIATION_LIMITED");
    app.clock.advance(chrono::Duration::days(30));
    let (casey, blair) = (app.client_for("casey@fabrikam.example").await, app.client_for("blair@contoso.example").await);
    link(&casey, ML, "jordan@outlook.example").await.unwrap();
    let credit = casey.organization_credit(FABRIKAM_TENANT).await.unwrap();
    assert_eq!(credit.areas.iter().find(|a| a.area_id == "infrastructure-azure").map(|a| a.people), Some(1));
    let next = events.next().await.unwrap().unwrap();
    assert_eq!(next.r#type, pb::LinkEventType::LinkCreated as i32, "no event between the removals and this link");

    // A leavers' file through the CLI, rerunnable: Blair's link goes, a user without links is
    // no error, a personal account is refused by name.
    link(&blair, PU, "sam@outlook.example").await.unwrap();
    let blair_key = app.idp.user("blair@contoso.example").unwrap().key;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leavers.csv");
    let rows = format!(
        "object_id,tenant_id\n{},{CONTOSO_TENANT}\n{},{CONTOSO_TENANT}\n{},{}\n",
        blair_key.object.as_str(),
        alex_key.object.as_str(),
        jordan.object.as_str(),
        jordan.tenant.as_str()
    );
    std::fs::write(&path, rows).unwrap();
    for (run, links) in [(1, 1), (2, 0)] {
        let output = app
            .idlink()
            .args(["--as-app", "enrolment", "--json"])
            .args(["enrolment", "users", "remove", "--file"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (summary["users"].as_u64(), summary["links_removed"].as_u64(), summary["refused"].as_u64()),
            (Some(3), Some(links), Some(1)),
            "run {run}: {summary}"
        );
        assert_eq!(
            (summary["refusals"][0]["line"].as_u64(), summary["refusals"][0]["reason"].as_str()),
            (Some(4), Some("INVALID_ARGUMENT"))
        );
    }
    assert!(blair.get_links().await.unwrap().is_empty());
}
