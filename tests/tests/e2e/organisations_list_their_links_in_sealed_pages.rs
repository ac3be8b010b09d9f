//! ListLinks: organisation-scoped, filtered, capped pages with opaque page tokens that are
//! tamper-evident — a modified or misapplied token is INVALID_ARGUMENT, never another page.

use idlink_client::pb;
use idlink_service::oidc::devidp::{CONTOSO_TENANT, FABRIKAM_TENANT};
use idlink_tests::*;
use tonic::Code;

async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        let (_, client) = app.new_work_user(&format!("member{i}@contoso.example")).await;
        app.new_personal(&format!("member{i}@outlook.example"));
        link(&client, ML, &format!("member{i}@outlook.example")).await.unwrap();
        if i == 0 {
            link(&client, PU, "member0@outlook.example").await.unwrap();
            client
                .remove_link(pb::RemoveLinkRequest { kind: PU as i32, user: None, reason: String::new(), ..Default::default() })
                .await
                .unwrap();
        }
    }
    link(&app.client_for("casey@fabrikam.example").await, ML, "sam@outlook.example").await.unwrap();
    app
}

fn query(org: &str, kind: pb::LinkKind, include_removed: bool, page_size: i32) -> pb::ListLinksRequest {
    pb::ListLinksRequest { organization_id: org.into(), kind: kind as i32, include_removed, page_size, page_token: String::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_pages_through_their_organisation_redacted() {
    let app = seeded().await;
    let admin = app.client_for("admin@contoso.example").await;
    let mut request = query(CONTOSO_TENANT, ML, false, 2);
    let mut seen = Vec::new();
    loop {
        let page = admin.list_links(request.clone()).await.unwrap();
        assert!(page.links.len() <= 2);
        for link in &page.links {
            assert_eq!(link.work_user.as_ref().unwrap().tenant_id, CONTOSO_TENANT);
            assert_eq!(link.personal_account.as_ref().unwrap().email, "", "an admin never sees personal emails");
        }
        seen.extend(page.links.into_iter().map(|l| l.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    // Filters: all kinds and tombstones.
    let everything = admin.list_all_links(query(CONTOSO_TENANT, pb::LinkKind::Unspecified, true, 0)).await.unwrap();
    assert_eq!(everything.len(), 6);
    assert_eq!(everything.iter().filter(|l| l.state == pb::LinkState::Removed as i32).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_cannot_be_forged_or_moved_to_another_query() {
    let app = seeded().await;
    // A Links.Read service may list any organisation, so only the token can stop it.
    let service = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    let first = service.list_links(query(CONTOSO_TENANT, ML, false, 2)).await.unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());

    let mut tampered = token.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let attempts = [
        ("tampered", pb::ListLinksRequest { page_token: String::from_utf8(tampered).unwrap(), ..query(CONTOSO_TENANT, ML, false, 2) }),
        ("truncated", pb::ListLinksRequest { page_token: token[..token.len() - 3].to_owned(), ..query(CONTOSO_TENANT, ML, false, 2) }),
        ("another organisation", pb::ListLinksRequest { page_token: token.clone(), ..query(FABRIKAM_TENANT, ML, false, 2) }),
        ("another kind", pb::ListLinksRequest { page_token: token.clone(), ..query(CONTOSO_TENANT, PU, false, 2) }),
        ("removed filter changed", pb::ListLinksRequest { page_token: token.clone(), ..query(CONTOSO_TENANT, ML, true, 2) }),
        ("garbage", pb::ListLinksRequest { page_token: "not-a-token".into(), ..query(CONTOSO_TENANT, ML, false, 2) }),
    ];
    for (case, request) in attempts {
        assert_refused_in(case, service.list_links(request).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    // The genuine token still works, and page sizes are validated and capped.
    assert!(
        !service
            .list_links(pb::ListLinksRequest { page_token: token, ..query(CONTOSO_TENANT, ML, false, 2) })
            .await
            .unwrap()
            .links
            .is_empty()
    );
    assert_refused(service.list_links(query(CONTOSO_TENANT, ML, false, -1)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
}

/// More links than the largest page: a page is at most 200, however many are asked for, and
/// the pages together hold every link once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_holds_at_most_two_hundred_links() {
    use idlink_service::domain::{AccountKey, CONSUMER_TENANT, LinkKind, LinkMode, NewLink, PersonalProfile};
    let app = TestApp::spawn().await;
    for n in 0..230u32 {
        let new = NewLink {
            kind: LinkKind::MicrosoftLearning,
            work: AccountKey::parse(CONTOSO_TENANT, &format!("00000000-0000-4000-8000-{n:012x}")).unwrap(),
            work_upn: format!("member{n}@contoso.example"),
            personal: AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-4000-9000-{n:012x}")).unwrap(),
            personal_sub: String::new(),
            profile: PersonalProfile::default(),
        };
        app.store.link(new, LinkMode::default(), app.now()).await.unwrap();
    }
    let service = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    for (asked, got) in [(100_000, 200), (201, 200), (200, 200), (1, 1), (0, 50)] {
        let page = service.list_links(query(CONTOSO_TENANT, ML, false, asked)).await.unwrap();
        assert_eq!(page.links.len(), got, "page size {asked}");
        assert!(!page.next_page_token.is_empty(), "page size {asked}: more follow");
    }
    let all = service.list_all_links(query(CONTOSO_TENANT, ML, false, 100_000)).await.unwrap();
    let unique: std::collections::BTreeSet<_> = all.iter().map(|l| l.id.clone()).collect();
    assert_eq!((all.len(), unique.len()), (230, 230));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_resolves_whose_personal_account_it_is() {
    let app = seeded().await;
    let service = app.client_with_token(Some(app.idp.app_token("partner-university").unwrap())).await;
    let sam = app.idp.user("sam@outlook.example").unwrap().key;
    let casey = app.idp.user("casey@fabrikam.example").unwrap().key;
    let account = pb::AccountRef { tenant_id: sam.tenant.as_str().into(), object_id: sam.object.as_str().into() };
    let resolved = service
        .resolve_personal_account(pb::ResolvePersonalAccountRequest { kind: ML as i32, personal_account: Some(account.clone()) })
        .await
        .unwrap();
    assert_eq!(resolved.organization_id, FABRIKAM_TENANT);
    assert_eq!(resolved.work_user.unwrap().object_id, casey.object.as_str());
    let not_linked =
        service.resolve_personal_account(pb::ResolvePersonalAccountRequest { kind: PU as i32, personal_account: Some(account) }).await;
    assert_refused(not_linked, Code::NotFound, "PERSONAL_ACCOUNT_NOT_LINKED");
}
