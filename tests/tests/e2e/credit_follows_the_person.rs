//! Achievement credit end to end: the Learning feed records certifications and Partner
//! University achievements (before or after a link), an organisation's credit follows its
//! linked people — each achievement through the link of its source, each person once —,
//! recalculation repairs drift, and a transfer moves credit to the new employer in one atomic
//! step.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures_util::StreamExt;
use idlink_client::{IdlinkClient, pb};
use idlink_service::{
    domain::{Credit, TenantId},
    oidc::devidp::{CONTOSO_TENANT, FABRIKAM_TENANT},
};
use idlink_tests::*;
use tonic::Code;

fn certification(personal: &idlink_service::domain::AccountKey, id: &str, expires_in_days: Option<i64>) -> pb::Certification {
    let now = chrono::Utc::now();
    pb::Certification {
        personal_account: Some(pb::AccountRef { tenant_id: personal.tenant.as_str().into(), object_id: personal.object.as_str().into() }),
        certification_id: id.into(),
        earned_at: Some(prost_types::Timestamp { seconds: now.timestamp() - 86_400, nanos: 0 }),
        expires_at: expires_in_days.map(|d| prost_types::Timestamp { seconds: now.timestamp() + d * 86_400, nanos: 0 }),
        source: pb::AchievementSource::Unspecified as i32,
    }
}

/// A Partner University assessment or training of `personal`.
fn university(personal: &idlink_service::domain::AccountKey, id: &str) -> pb::Certification {
    pb::Certification { source: pb::AchievementSource::PartnerUniversity as i32, ..certification(personal, id, None) }
}

fn area(credit: &pb::OrganizationCredit, area: &str) -> (i64, i64) {
    credit.areas.iter().find(|a| a.area_id == area).map_or((0, 0), |a| (a.people, a.certifications))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_university_achievements_count_through_the_partner_university_link() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let sam = app.idp.user("sam@outlook.example").unwrap().key;
    let feed = app.app_client("learning-feed").await;
    let batch = vec![
        university(&jordan, "pu-modern-work-technical-assessment"),
        university(&jordan, "pu-modern-work-technical-assessment"),
        // A Learning certification's id is not a Partner University achievement.
        university(&jordan, "m365-administrator-expert"),
        pb::Certification { source: 7, ..university(&jordan, "pu-security-technical-assessment") },
        certification(&sam, "m365-administrator-expert", None),
    ];
    let summary = feed.record_certifications(futures_util::stream::iter(batch)).await.unwrap();
    assert_eq!((summary.accepted, summary.duplicates, summary.rejected), (2, 1, 2));
    let reasons: Vec<_> = summary.rejections.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(reasons, [(2, "UNKNOWN_CERTIFICATION"), (3, "SOURCE_NOT_RECOGNISED")]);

    let alex = app.client_for("alex@contoso.example").await;
    // Through a Learning link, Jordan's assessment is nothing: it is not a Learning achievement.
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(area(&alex.organization_credit(CONTOSO_TENANT).await.unwrap(), "modern-work"), (0, 0));
    alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
    // "All of your achievements earned on your Partner University account will be applied to
    // your organization": the moment the Partner University link is made.
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    assert_eq!(area(&alex.organization_credit(CONTOSO_TENANT).await.unwrap(), "modern-work"), (1, 1));
    // Alex's Learning account (Sam's) adds a certification in the same area: still one person.
    link(&alex, ML, "sam@outlook.example").await.unwrap();
    assert_eq!(area(&alex.organization_credit(CONTOSO_TENANT).await.unwrap(), "modern-work"), (1, 2), "one person, two achievements");
    let job = app.app_client("credit-recalculation").await;
    let (_, summary) = recalculation(&job, Vec::new()).await;
    assert_eq!(summary.drifted, 0, "recalculation agrees");
    // "Remove access" takes exactly the Partner University link's contribution away.
    alex.remove_link(pb::RemoveLinkRequest { kind: PU as i32, ..Default::default() }).await.unwrap();
    assert_eq!(area(&alex.organization_credit(CONTOSO_TENANT).await.unwrap(), "modern-work"), (1, 1));
    alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
    assert!(alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty());
    assert_eq!(recalculation(&job, Vec::new()).await.1.drifted, 0);
}

/// Learning links as Partner University's: an account linked elsewhere is refused unless the
/// flow asks for a transfer (the tests of transfers), and no limit on associations.
fn refuse_learning_moves(settings: &mut idlink_service::config::Settings) {
    without_association_limit(settings);
    let learning = settings.kinds.microsoft_learning.as_mut().expect("--dev configures Learning");
    learning.on_linked_elsewhere = Some(idlink_service::domain::OnLinkedElsewhere::Refuse);
}

fn people(credit: &pb::OrganizationCredit, area: &str) -> i64 {
    credit.areas.iter().find(|a| a.area_id == area).map_or(0, |a| a.people)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certifications_count_for_the_organisation_of_the_linked_person() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let alex_work = app.idp.user("alex@contoso.example").unwrap().key;
    let enrolment = app.app_client("enrolment").await;
    let org = enrolment
        .upsert_organization(pb::UpsertOrganizationRequest {
            tenant_id: CONTOSO_TENANT.into(),
            partner_id: "4512345".into(),
            name: "Contoso".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(org.organization_id, CONTOSO_TENANT);
    let bad = enrolment
        .upsert_organization(pb::UpsertOrganizationRequest {
            tenant_id: CONTOSO_TENANT.into(),
            partner_id: "45l2345".into(),
            name: "C".into(),
            ..Default::default()
        })
        .await;
    assert_refused(bad, Code::InvalidArgument, "INVALID_ARGUMENT");

    // The feed runs ahead of the link; one of each kind of bad record.
    let feed = app.app_client("learning-feed").await;
    let batch = vec![
        certification(&jordan, "azure-administrator-associate", Some(365)),
        certification(&jordan, "azure-administrator-associate", Some(365)),
        certification(&jordan, "azure-solutions-architect-expert", None),
        certification(&jordan, "no-such-certification", None),
        certification(&alex_work, "azure-administrator-associate", None),
        pb::Certification { earned_at: None, ..certification(&jordan, "azure-developer-associate", None) },
    ];
    let summary = feed.record_certifications(futures_util::stream::iter(batch)).await.unwrap();
    assert_eq!((summary.accepted, summary.duplicates, summary.rejected), (2, 1, 3));
    let reasons: Vec<_> = summary.rejections.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(reasons, [(3, "UNKNOWN_CERTIFICATION"), (4, "NOT_A_PERSONAL_ACCOUNT"), (5, "INVALID_ARGUMENT")]);

    let alex = app.client_for("alex@contoso.example").await;
    assert!(alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty(), "nothing counts before the link");
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    assert!(
        alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty(),
        "a Partner University link brings no Learning certification"
    );
    link(&alex, ML, "jordan@outlook.example").await.unwrap();

    let credit = app.client_for("blair@contoso.example").await.organization_credit(CONTOSO_TENANT).await.unwrap();
    assert_eq!(credit.partner_id, "4512345");
    let infra = credit.areas.iter().find(|a| a.area_id == "infrastructure-azure").unwrap();
    assert_eq!((infra.name.as_str(), infra.people, infra.certifications), ("Infrastructure (Azure)", 1, 2));
    assert_eq!(people(&credit, "digital-app-innovation-azure"), 1);

    // Who may read it: its own people and the recalculation job, not another organisation.
    assert_refused(
        app.client_for("casey@fabrikam.example").await.organization_credit(CONTOSO_TENANT).await,
        Code::PermissionDenied,
        "NOT_PERMITTED",
    );
    assert_eq!(app.app_client("credit-recalculation").await.organization_credit(CONTOSO_TENANT).await.unwrap(), credit);
    assert_refused(
        app.app_client("partner-university").await.organization_credit(CONTOSO_TENANT).await,
        Code::PermissionDenied,
        "NOT_PERMITTED",
    );
    assert_refused(alex.record_certifications(futures_util::stream::iter(vec![])).await, Code::PermissionDenied, "NOT_PERMITTED");

    alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, reason: "left".into(), ..Default::default() }).await.unwrap();
    assert!(alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty(), "removal takes the credit away");
}

/// Alex (Contoso) and Casey (Fabrikam), each linked to a personal account with one
/// certification.
async fn one_certified_person_in_each_organisation() -> TestApp {
    let app = TestApp::spawn().await;
    let feed = app.app_client("learning-feed").await;
    for (work, personal) in [("alex@contoso.example", "jordan@outlook.example"), ("casey@fabrikam.example", "sam@outlook.example")] {
        let key = app.idp.user(personal).unwrap().key;
        feed.record_certifications(futures_util::stream::iter(vec![certification(&key, "m365-administrator-expert", None)])).await.unwrap();
        link(&app.client_for(work).await, ML, personal).await.unwrap();
    }
    app
}

/// A whole RecalculateCredits stream: the organisations answered, then the summary that must end it.
async fn recalculation(job: &IdlinkClient, named: Vec<String>) -> (Vec<pb::OrganizationRecalculation>, pb::RecalculationSummary) {
    let mut stream = job.recalculate_credits(named).await.unwrap();
    let (mut organisations, mut summary) = (Vec::new(), None);
    while let Some(item) = stream.next().await {
        match item.unwrap().item.unwrap() {
            pb::recalculate_credits_response::Item::Organization(o) => organisations.push(o),
            pb::recalculate_credits_response::Item::Summary(s) => summary = Some(s),
        }
    }
    (organisations, summary.expect("a summary ends the stream"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalculating_named_organisations_answers_those_in_the_order_named() {
    let app = one_certified_person_in_each_organisation().await;
    let (contoso, fabrikam) = (TenantId::parse(CONTOSO_TENANT).unwrap(), TenantId::parse(FABRIKAM_TENANT).unwrap());
    let truth = app.store.credit(&contoso).await.unwrap();
    app.store.overwrite_credit(&contoso, &Credit::default()).await.unwrap();
    let untouched = app.store.credit(&fabrikam).await.unwrap();

    let job = app.app_client("credit-recalculation").await;
    let (organisations, summary) = recalculation(&job, vec![FABRIKAM_TENANT.into(), CONTOSO_TENANT.into()]).await;
    let answered: Vec<_> = organisations.into_iter().map(|o| (o.credit.unwrap().organization_id, !o.drift.is_empty())).collect();
    assert_eq!(answered, [(FABRIKAM_TENANT.to_owned(), false), (CONTOSO_TENANT.to_owned(), true)]);
    assert_eq!((summary.organizations, summary.drifted), (2, 1));
    assert_eq!(app.store.credit(&contoso).await.unwrap(), truth, "repaired");
    assert_eq!(app.store.credit(&fabrikam).await.unwrap(), untouched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalculation_streams_every_organisation_and_repairs_exactly_the_drift() {
    let app = one_certified_person_in_each_organisation().await;
    let fabrikam = TenantId::parse(FABRIKAM_TENANT).unwrap();
    let truth = app.store.credit(&fabrikam).await.unwrap();
    let mut wrong = truth.clone();
    wrong.add(&truth, 1);
    app.store.overwrite_credit(&fabrikam, &wrong).await.unwrap();

    let job = app.app_client("credit-recalculation").await;
    let (organisations, summary) = recalculation(&job, vec![]).await;
    assert_eq!((summary.organizations, summary.drifted), (2, 1));
    let drifted: Vec<_> = organisations.iter().filter(|o| !o.drift.is_empty()).collect();
    assert_eq!(drifted.len(), 1);
    assert_eq!(drifted[0].credit.as_ref().unwrap().organization_id, FABRIKAM_TENANT);
    assert_eq!(drifted[0].drift[0].stored.as_ref().unwrap().people, 2);
    assert_eq!(drifted[0].drift[0].recomputed.as_ref().unwrap().people, 1);
    assert_eq!(app.store.credit(&fabrikam).await.unwrap(), truth, "repaired");
    assert_ne!(truth, Credit::default());

    // Only the job may run it.
    let refused = app.client_for("admin@contoso.example").await.recalculate_credits(vec![]).await;
    assert_refused(refused, Code::PermissionDenied, "NOT_PERMITTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_moves_the_link_and_its_credit_in_one_step() {
    let app = TestApp::spawn_with(refuse_learning_moves).await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    app.app_client("learning-feed")
        .await
        .record_certifications(futures_util::stream::iter(vec![certification(&jordan, "security-operations-analyst-associate", None)]))
        .await
        .unwrap();
    let alex = app.client_for("alex@contoso.example").await;
    let old = link(&alex, ML, "jordan@outlook.example").await.unwrap();

    // Without transfer: refused, with a hint that a transfer is possible.
    let casey = app.client_for("casey@fabrikam.example").await;
    let message = assert_refused(link(&casey, ML, "jordan@outlook.example").await, Code::AlreadyExists, "ACCOUNT_LINKED_ELSEWHERE");
    assert!(message.contains("transfer"), "{message}");

    // Two readers watch both organisations' credit while the transfer happens. Reading the
    // old organisation first, an atomic move can never show neither; reading the new one
    // first, it can never show both.
    let reader = app.app_client("credit-recalculation").await;
    let done = Arc::new(AtomicBool::new(false));
    let watch = |first: &'static str, second: &'static str, forbidden: (i64, i64)| {
        let (reader, done) = (reader.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) || reads < 10 {
                let a = people(&reader.organization_credit(first).await.unwrap(), "security");
                let b = people(&reader.organization_credit(second).await.unwrap(), "security");
                assert_ne!(
                    (a, b),
                    forbidden,
                    "a reader saw the credit in {} organisations",
                    if forbidden.0 == 0 { "neither" } else { "both" }
                );
                reads += 1;
            }
            reads
        })
    };
    let old_first = watch(CONTOSO_TENANT, FABRIKAM_TENANT, (0, 0));
    let new_first = watch(FABRIKAM_TENANT, CONTOSO_TENANT, (1, 1));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut request = begin_request(ML, "jordan@outlook.example");
    request.transfer = true;
    let complete = begin_with(&casey, request).await;
    let moved = casey.complete_link(complete).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    done.store(true, Ordering::SeqCst);
    assert!(old_first.await.unwrap() >= 10 && new_first.await.unwrap() >= 10);

    assert_eq!(people(&reader.organization_credit(CONTOSO_TENANT).await.unwrap(), "security"), 0);
    assert_eq!(people(&reader.organization_credit(FABRIKAM_TENANT).await.unwrap(), "security"), 1);
    // The old work user sees the tombstone, the new one the link.
    assert!(alex.get_links().await.unwrap().is_empty());
    let tombstone = alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }).await.unwrap();
    assert_eq!((tombstone.id.as_str(), tombstone.removal.unwrap().reason.as_str()), (old.id.as_str(), "transferred"));
    assert_eq!(casey.get_links().await.unwrap(), vec![moved.clone()]);

    // And the feed says so.
    let feed = app.app_client("partner-university").await;
    let mut events = feed.watch_link_events(0).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(events.next().await.unwrap().unwrap());
    }
    assert_eq!(seen[1].r#type, pb::LinkEventType::LinkTransferred as i32);
    assert_eq!((seen[1].link.as_ref().unwrap().id.as_str(), seen[1].previous_link_id.as_str()), (moved.id.as_str(), old.id.as_str()));
    assert_eq!(seen[1].link.as_ref().unwrap().personal_account.as_ref().unwrap().email, "", "no personal email in the feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_etag_cannot_remove_a_link() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let first = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let mut replace = begin_request(ML, "sam@outlook.example");
    replace.replace_existing = true;
    let second = alex.complete_link(begin_with(&alex, replace).await).await.unwrap();
    assert_ne!(first.etag, second.etag);
    let stale = alex.remove_link(pb::RemoveLinkRequest { kind: ML as i32, etag: first.etag.clone(), ..Default::default() }).await;
    assert_refused(stale, Code::FailedPrecondition, "ETAG_MISMATCH");
    assert_eq!(alex.get_links().await.unwrap().len(), 1);

    // The CLI: `link remove --etag`, a refusal in --json with gRPC's code name, exit code 1.
    let remove = |etag: &str| {
        let mut command = app.idlink();
        command.args(["--user", "alex@contoso.example", "--json", "link", "remove", "--kind", "ml", "--etag", etag]);
        command
    };
    let refused = remove(&first.etag).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!((error["error"]["code"].as_str(), error["error"]["reason"].as_str()), (Some("FAILED_PRECONDITION"), Some("ETAG_MISMATCH")));
    let listed = app.idlink().args(["--user", "alex@contoso.example", "--json", "link", "list"]).output().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let etag = listed["links"][0]["etag"].as_str().unwrap().to_owned();
    assert_eq!(etag, second.etag, "link list --json shows the etag");
    let removed = remove(&etag).output().await.unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(alex.get_links().await.unwrap().is_empty());
}

async fn enrol(enrolment: &IdlinkClient, tenant: &str, partner: &str) -> Result<pb::Organization, idlink_client::ClientError> {
    enrolment
        .upsert_organization(pb::UpsertOrganizationRequest {
            tenant_id: tenant.into(),
            partner_id: partner.into(),
            name: format!("partner {partner}"),
            ..Default::default()
        })
        .await
}

fn by_partner(partner: &str) -> pb::GetOrganizationCreditRequest {
    pb::GetOrganizationCreditRequest { partner_id: partner.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_of_several_tenants_counts_its_people_across_them_each_once() {
    let app = TestApp::spawn_with(refuse_learning_moves).await;
    let (jordan, sam) = (app.idp.user("jordan@outlook.example").unwrap().key, app.idp.user("sam@outlook.example").unwrap().key);
    let feed = app.app_client("learning-feed").await;
    let batch =
        vec![certification(&jordan, "azure-administrator-associate", None), certification(&sam, "azure-administrator-associate", None)];
    feed.record_certifications(futures_util::stream::iter(batch)).await.unwrap();
    let (alex, casey) = (app.client_for("alex@contoso.example").await, app.client_for("casey@fabrikam.example").await);
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    link(&casey, ML, "sam@outlook.example").await.unwrap();
    // Two organisations of one tenant each, until Fabrikam's tenant joins Contoso's PartnerID.
    let enrolment = app.app_client("enrolment").await;
    enrol(&enrolment, CONTOSO_TENANT, "4512345").await.unwrap();
    enrol(&enrolment, FABRIKAM_TENANT, "4599999").await.unwrap();
    assert_eq!(area(&alex.organization_credit(CONTOSO_TENANT).await.unwrap(), "infrastructure-azure"), (1, 1));
    enrol(&enrolment, FABRIKAM_TENANT, "4512345").await.unwrap();

    let job = app.app_client("credit-recalculation").await;
    let whole = job.organization_credit_of(by_partner("4512345")).await.unwrap();
    assert_eq!(area(&whole, "infrastructure-azure"), (2, 2), "a person of each tenant");
    let mut tenants = vec![CONTOSO_TENANT.to_owned(), FABRIKAM_TENANT.to_owned()];
    tenants.sort();
    assert_eq!((whole.partner_id.as_str(), &whole.tenant_ids, whole.organization_id.as_str()), ("4512345", &tenants, ""));
    // Asked by either tenant, by anyone in either: the whole organisation, numbers only.
    for (asker, tenant) in [(&alex, CONTOSO_TENANT), (&casey, FABRIKAM_TENANT), (&casey, CONTOSO_TENANT)] {
        let credit = asker.organization_credit(tenant).await.unwrap();
        assert_eq!((area(&credit, "infrastructure-azure"), credit.organization_id.as_str()), ((2, 2), tenant));
    }
    let fabrikam_admin = app.client_for("admin@fabrikam.example").await;
    assert_eq!(area(&fabrikam_admin.organization_credit_of(by_partner("4512345")).await.unwrap(), "infrastructure-azure"), (2, 2));
    assert_refused(fabrikam_admin.organization_credit_of(by_partner("4599999")).await, Code::PermissionDenied, "NOT_PERMITTED");
    assert_refused(job.organization_credit_of(by_partner("4599999")).await, Code::NotFound, "ORGANIZATION_NOT_FOUND");
    let both = pb::GetOrganizationCreditRequest { organization_id: CONTOSO_TENANT.into(), partner_id: "4512345".into() };
    assert_refused(job.organization_credit_of(both).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_refused(
        job.organization_credit_of(pb::GetOrganizationCreditRequest::default()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // The same personal account is one person: held in Contoso's tenant, it cannot be linked
    // in Fabrikam's too; moved there, it counts once still.
    let mut moving = begin_request(ML, "jordan@outlook.example");
    moving.transfer = true;
    app.idp.add_user(FABRIKAM_TENANT, "blair@fabrikam.example", idlink_service::oidc::devidp::AccountType::Work);
    let blair_of_fabrikam = app.client_for("blair@fabrikam.example").await;
    assert_refused(link(&blair_of_fabrikam, ML, "jordan@outlook.example").await, Code::AlreadyExists, "ACCOUNT_LINKED_ELSEWHERE");
    let completed = begin_with(&blair_of_fabrikam, moving).await;
    blair_of_fabrikam.complete_link(completed).await.unwrap();
    assert_eq!(area(&job.organization_credit_of(by_partner("4512345")).await.unwrap(), "infrastructure-azure"), (2, 2));
    let contoso_alone =
        job.organization_credit_of(pb::GetOrganizationCreditRequest { organization_id: CONTOSO_TENANT.into(), ..Default::default() });
    assert_eq!(area(&contoso_alone.await.unwrap(), "infrastructure-azure"), (2, 2), "a tenant answers for its whole organisation");
    assert_eq!(recalculation(&job, Vec::new()).await.1.drifted, 0);
}
