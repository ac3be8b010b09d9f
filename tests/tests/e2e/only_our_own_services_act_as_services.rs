//! Invariant 11: app roles count only for the apps idlink's operators named, in the tenant
//! they named (`auth.service_tenant`, `auth.service_apps`). An admin of any partner tenant can
//! register an app of their own, request idlink's application roles and consent to them:
//! Entra then issues it genuinely signed app-only tokens carrying those roles. They get
//! nothing, on any RPC, and every refusal is audited.

use idlink_service::{
    domain::TenantId,
    oidc::devidp::{CONTOSO_TENANT, FABRIKAM_TENANT, SERVICES_TENANT},
};
use idlink_tests::*;
use tonic::Code;

const ALL_ROLES: [&str; 4] = ["Links.Read", "Certifications.Write", "Credits.Recalculate", "Organizations.Write"];

async fn assert_app_refused(app: &TestApp, tenant: &str, client_id: &str, case: &str) {
    let token = app.idp.app_token_of(tenant, client_id, &ALL_ROLES);
    let request_id = format!("app-{}", rand::random::<u32>());
    app.next_refusal_window();
    let client = app.client_with_request_id(Some(token), Some(&request_id)).await;
    assert_every_rpc_refused(&client, Code::PermissionDenied, "APP_NOT_ALLOWED", case).await;
    assert_audited(&request_id, "APP_NOT_ALLOWED");
    assert!(audit_lines(&request_id).iter().any(|l| l.contains(client_id) && l.contains(tenant)), "{case}: the audit names the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_a_partner_tenant_gets_nothing_whatever_roles_it_holds() {
    let app = TestApp::spawn().await;
    link(&app.client_for("alex@contoso.example").await, ML, "jordan@outlook.example").await.unwrap();
    // Fabrikam is an allowed partner tenant; its admin registered an app named like ours.
    assert_app_refused(&app, FABRIKAM_TENANT, "fabrikam-shadow-service", "a second partner tenant's app").await;
    assert_app_refused(&app, FABRIKAM_TENANT, "learning-feed", "a partner tenant's app named like one of ours").await;
    assert_app_refused(&app, CONTOSO_TENANT, "partner-university", "the linked organisation's own app").await;
    // Nothing it tried was done: no certification recorded, no organisation enrolled.
    assert_eq!(app.store.organization(&TenantId::parse("0e2e0e2e-0000-4000-8000-000000000000").unwrap()).await.unwrap(), None);
    assert_eq!(app.integrity().await.active_links, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_the_service_tenant_counts_only_when_it_is_listed() {
    let app = TestApp::spawn().await;
    assert_app_refused(&app, SERVICES_TENANT, "an-unlisted-service", "an unlisted app of the service tenant").await;
    // The same roles on a listed app of the service tenant do count.
    let listed = app.client_with_token(Some(app.idp.app_token_of(SERVICES_TENANT, "partner-university", &ALL_ROLES))).await;
    listed.list_links(idlink_client::pb::ListLinksRequest { organization_id: CONTOSO_TENANT.into(), ..Default::default() }).await.unwrap();
    listed.organization_credit(CONTOSO_TENANT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_user_of_the_service_tenant_is_no_work_user() {
    let app = TestApp::spawn().await;
    app.idp.add_user(SERVICES_TENANT, "operator@services.example", idlink_service::oidc::devidp::AccountType::Work);
    let client = app.client_with_token(Some(app.idp.access_token("operator@services.example").unwrap())).await;
    assert_every_rpc_refused(&client, Code::Unauthenticated, "INVALID_TOKEN", "a user of the service tenant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_service_named_no_app_may_call() {
    let app = TestApp::spawn_with(|settings| {
        settings.auth.service_tenant = None;
        settings.auth.service_apps.clear();
    })
    .await;
    for client_id in ["partner-university", "learning-feed", "credit-recalculation", "enrolment"] {
        let client = app.client_with_token(Some(app.idp.app_token(client_id).unwrap())).await;
        // The service tenant is no longer trusted at all: its tokens are not even validated.
        assert_every_rpc_refused(&client, Code::Unauthenticated, "INVALID_TOKEN", client_id).await;
    }
    let client = app.client_with_token(Some(app.idp.app_token_of(CONTOSO_TENANT, "partner-university", &ALL_ROLES))).await;
    assert_every_rpc_refused(&client, Code::PermissionDenied, "APP_NOT_ALLOWED", "a partner tenant's app").await;
    assert!(captured_logs().contains("no app may call idlink"), "start-up says so");
}
