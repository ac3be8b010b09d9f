//! The skills report (ListOrganizationPeople): per work user of an organisation — every tenant
//! of it — whether they are associated for Partner University and for Learning, their MCID, and
//! per area the achievements that count; sealed pages; for the organisation's admins and the
//! credit job alone; never a personal email or name.

use idlink_client::{IdlinkClient, pb};
use idlink_service::oidc::devidp::{AccountType, CONTOSO_TENANT};
use idlink_tests::*;
use tonic::Code;

async fn enrol(app: &TestApp, tenant: &str, partner: &str) {
    let request =
        pb::UpsertOrganizationRequest { tenant_id: tenant.into(), partner_id: partner.into(), name: "org".into(), ..Default::default() };
    app.app_client("enrolment").await.upsert_organization(request).await.unwrap();
}

fn by_partner(partner: &str, page_size: i32) -> pb::ListOrganizationPeopleRequest {
    pb::ListOrganizationPeopleRequest { partner_id: partner.into(), page_size, ..Default::default() }
}

/// Every page, following the tokens; the number of pages too.
async fn all_people(client: &IdlinkClient, mut request: pb::ListOrganizationPeopleRequest) -> (Vec<pb::OrganizationPerson>, usize) {
    let (mut people, mut pages) = (Vec::new(), 0);
    loop {
        let page = client.list_organization_people(request.clone()).await.unwrap();
        pages += 1;
        people.extend(page.people);
        if page.next_page_token.is_empty() {
            return (people, pages);
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_pages_through_every_tenant_and_shows_only_ids_and_achievements() {
    let app = TestApp::spawn().await;
    enrol(&app, CONTOSO_TENANT, "4512345").await;
    enrol(&app, FABRIKAM_TENANT, "4599999").await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let feed = app.app_client("learning-feed").await;
    let account = pb::AccountRef { tenant_id: jordan.tenant.as_str().into(), object_id: jordan.object.as_str().into() };
    let earned = Some(prost_types::Timestamp { seconds: app.now().timestamp() - 86_400, nanos: 0 });
    let achievements = vec![
        pb::Certification {
            personal_account: Some(account.clone()),
            certification_id: "azure-administrator-associate".into(),
            earned_at: earned,
            ..Default::default()
        },
        pb::Certification {
            personal_account: Some(account.clone()),
            certification_id: "pu-infrastructure-technical-assessment".into(),
            earned_at: earned,
            source: pb::AchievementSource::PartnerUniversity as i32,
            ..Default::default()
        },
    ];
    feed.record_certifications(futures_util::stream::iter(achievements)).await.unwrap();
    let profile = pb::LearningProfile { personal_account: Some(account), mcid: "990123456".into() };
    feed.record_learning_profiles(futures_util::stream::iter(vec![profile])).await.unwrap();

    // Alex: both links to Jordan's account; Blair: Partner University only; Casey (Fabrikam):
    // Learning; five more Contoso people with a Learning link each.
    let alex = app.client_for("alex@contoso.example").await;
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    link(&app.client_for("blair@contoso.example").await, PU, "sam@outlook.example").await.unwrap();
    app.idp.add_user(idlink_service::domain::CONSUMER_TENANT, "casey@outlook.example", AccountType::Personal);
    link(&app.client_for("casey@fabrikam.example").await, ML, "casey@outlook.example").await.unwrap();
    for n in 0..5 {
        let (_, worker) = app.new_work_user(&format!("worker{n}@contoso.example")).await;
        app.new_personal(&format!("worker{n}@outlook.example"));
        link(&worker, ML, &format!("worker{n}@outlook.example")).await.unwrap();
    }

    // Fabrikam is another organisation: its admin may not see Contoso's people.
    let fabrikam_admin = app.client_for("admin@fabrikam.example").await;
    assert_refused(fabrikam_admin.list_organization_people(by_partner("4512345", 0)).await, Code::PermissionDenied, "NOT_PERMITTED");
    for refused in [alex.clone(), app.app_client("partner-university").await] {
        assert_refused(refused.list_organization_people(by_partner("4512345", 0)).await, Code::PermissionDenied, "NOT_PERMITTED");
    }
    // Once Fabrikam's tenant joins the organisation, its admin sees everyone of it.
    enrol(&app, FABRIKAM_TENANT, "4512345").await;
    let contoso_admin = app.client_for("admin@contoso.example").await;
    let (people, pages) = all_people(&contoso_admin, by_partner("4512345", 2)).await;
    assert!(pages >= 4, "pages of two: {pages}");
    let mut upns: Vec<_> = people.iter().map(|p| p.work_user.as_ref().unwrap().user_principal_name.clone()).collect();
    upns.sort();
    let mut expected: Vec<String> = ["alex@contoso.example", "blair@contoso.example", "casey@fabrikam.example"].map(String::from).to_vec();
    expected.extend((0..5).map(|n| format!("worker{n}@contoso.example")));
    expected.sort();
    assert_eq!(upns, expected, "every person once, across both tenants and both kinds");
    for viewer in [&fabrikam_admin, &app.app_client("credit-recalculation").await] {
        assert_eq!(all_people(viewer, by_partner("4512345", 500)).await.0, people, "the same report for every allowed reader");
    }

    let row = |upn: &str| people.iter().find(|p| p.work_user.as_ref().unwrap().user_principal_name == upn).unwrap();
    let alex_row = row("alex@contoso.example");
    assert_eq!((alex_row.partner_university_linked, alex_row.microsoft_learning_linked, alex_row.mcid.as_str()), (true, true, "990123456"));
    let areas: Vec<_> = alex_row.areas.iter().map(|a| (a.area_id.as_str(), a.certification_ids.clone())).collect();
    assert_eq!(
        areas,
        [("infrastructure-azure", vec!["azure-administrator-associate".to_owned(), "pu-infrastructure-technical-assessment".to_owned()])]
    );
    let blair_row = row("blair@contoso.example");
    assert_eq!((blair_row.partner_university_linked, blair_row.microsoft_learning_linked, blair_row.mcid.as_str()), (true, false, ""));
    // Never a personal email or name (the development provider names Jordan's account
    // "jordan", Sam's "sam"), on any page.
    let everything = format!("{people:?}");
    for personal in ["@outlook.example", "jordan", "sam"] {
        assert!(!everything.contains(personal), "the report names {personal}");
    }

    // Tokens are sealed to the organisation as named: tampered, or reused by tenant id, refused.
    let first = contoso_admin.list_organization_people(by_partner("4512345", 2)).await.unwrap();
    let token = first.next_page_token;
    let mut tampered = token.clone().into_bytes();
    tampered[5] ^= 1;
    let tampered = pb::ListOrganizationPeopleRequest { page_token: String::from_utf8_lossy(&tampered).into(), ..by_partner("4512345", 2) };
    assert_refused(contoso_admin.list_organization_people(tampered).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let by_tenant = pb::ListOrganizationPeopleRequest { organization_id: CONTOSO_TENANT.into(), page_token: token, ..Default::default() };
    assert_refused(contoso_admin.list_organization_people(by_tenant).await, Code::InvalidArgument, "INVALID_ARGUMENT");

    // The CLI streams it to CSV, one row per person and area.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skills.csv");
    let output = app
        .idlink()
        .args(["--as-app", "credit-recalculation"])
        .args(["report", "skills", "--org", "4512345", "--page-size", "3", "--csv"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let csv = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user_principal_name,tenant_id,object_id,partner_university,microsoft_learning,mcid,area_id,achievements");
    assert_eq!(lines.len(), 1 + 8, "a row per person (each in one area or none)");
    assert!(
        lines.iter().any(|l| l.starts_with("alex@contoso.example,")
            && l.ends_with(",yes,yes,990123456,infrastructure-azure,azure-administrator-associate;pu-infrastructure-technical-assessment")),
        "{csv}"
    );
}
