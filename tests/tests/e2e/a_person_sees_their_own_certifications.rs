//! "Review MCP and Certifications": each person sees their own achievements — which count for
//! their organisation, in which areas, and why the others do not — and the MCID of their
//! Microsoft Learning account, and nobody else's, admins included. An MCID is an identifier,
//! shown wherever the link is; the personal email never is.

use idlink_client::pb;
use idlink_service::{domain::AccountKey, oidc::devidp::CONTOSO_TENANT};
use idlink_tests::*;

fn account(key: &AccountKey) -> pb::AccountRef {
    pb::AccountRef { tenant_id: key.tenant.as_str().into(), object_id: key.object.as_str().into() }
}

fn achievement(
    app: &TestApp,
    personal: &AccountKey,
    source: pb::AchievementSource,
    id: &str,
    earned_days_ago: i64,
    expires_in_days: Option<i64>,
) -> pb::Certification {
    let now = app.now().timestamp();
    pb::Certification {
        personal_account: Some(account(personal)),
        certification_id: id.into(),
        earned_at: Some(prost_types::Timestamp { seconds: now - earned_days_ago * 86_400, nanos: 0 }),
        expires_at: expires_in_days.map(|d| prost_types::Timestamp { seconds: now + d * 86_400, nanos: 0 }),
        source: source as i32,
    }
}

fn profile(personal: &AccountKey, mcid: &str) -> pb::LearningProfile {
    pb::LearningProfile { personal_account: Some(account(personal)), mcid: mcid.into() }
}

/// (id, reason, area ids, expiring soon) of each achievement, in the answer's order.
fn summary(mine: &pb::MyCertifications) -> Vec<(String, pb::NotCountingReason, Vec<String>, bool)> {
    mine.certifications
        .iter()
        .map(|c| (c.certification_id.clone(), c.not_counting(), c.credits.iter().map(|a| a.area_id.clone()).collect(), c.expiring_soon))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_achievement_says_what_it_credits_or_why_not_and_only_to_its_owner() {
    use pb::{AchievementSource::*, NotCountingReason as Why};
    let app = TestApp::spawn_with(without_association_limit).await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let feed = app.app_client("learning-feed").await;
    let batch = vec![
        achievement(&app, &jordan, MicrosoftLearning, "azure-administrator-associate", 30, Some(400)),
        achievement(&app, &jordan, MicrosoftLearning, "azure-developer-associate", 300, Some(90)),
        achievement(&app, &jordan, MicrosoftLearning, "azure-fundamentals", 30, None),
        achievement(&app, &jordan, MicrosoftLearning, "m365-administrator-expert", 800, Some(-1)),
        // Jordan's account is linked for Learning only: a Partner University assessment of it
        // counts for nobody until it is linked for Partner University too.
        achievement(&app, &jordan, PartnerUniversity, "pu-security-technical-assessment", 10, None),
    ];
    assert_eq!(feed.record_certifications(futures_util::stream::iter(batch)).await.unwrap().accepted, 5);

    let alex = app.client_for("alex@contoso.example").await;
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    let mine = alex.my_certifications().await.unwrap();
    assert_eq!(
        summary(&mine),
        [
            ("azure-administrator-associate".into(), Why::Unspecified, vec!["infrastructure-azure".into()], false),
            ("azure-developer-associate".into(), Why::Unspecified, vec!["digital-app-innovation-azure".into()], true),
            ("azure-fundamentals".into(), Why::NotInCatalog, vec![], false),
            ("m365-administrator-expert".into(), Why::Expired, vec![], false),
            ("pu-security-technical-assessment".into(), Why::NotLinked, vec![], false),
        ]
    );
    let first = &mine.certifications[0];
    assert_eq!(first.title, "Microsoft Certified: Azure Administrator Associate");
    assert_eq!(first.source(), MicrosoftLearning);
    assert_eq!(mine.certifications[4].source(), PartnerUniversity);
    assert_eq!(first.personal_account.as_ref(), Some(&account(&jordan)));
    assert_eq!((first.credits[0].organization_id.as_str(), first.credits[0].name.as_str()), (CONTOSO_TENANT, "Infrastructure (Azure)"));
    assert_eq!(mine.mcid, "", "no profile recorded yet");

    // Nobody else sees Alex's: not a colleague, not their admin, not a service with every role.
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    for login in ["blair@contoso.example", "admin@contoso.example"] {
        let other = app.client_for(login).await;
        assert_refused(other.my_certifications_as(account(&alex_key)).await, tonic::Code::PermissionDenied, "NOT_PERMITTED");
        assert!(other.my_certifications().await.unwrap().certifications.is_empty(), "{login} sees only their own: none");
    }
    for service in ["credit-recalculation", "partner-university", "learning-feed"] {
        assert_refused(app.app_client(service).await.my_certifications().await, tonic::Code::PermissionDenied, "CALLER_NOT_A_USER");
    }
    assert_eq!(alex.my_certifications_as(account(&alex_key)).await.unwrap(), mine, "naming oneself is the same view");

    // The Partner University link makes the assessment count, in its area.
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    let mine = alex.my_certifications().await.unwrap();
    assert_eq!(summary(&mine)[4], ("pu-security-technical-assessment".into(), Why::Unspecified, vec!["security".into()], false));

    // "Remove access": the achievements stay visible to their owner, and count for nobody.
    for kind in [ML, PU] {
        alex.remove_link(pb::RemoveLinkRequest { kind: kind as i32, ..Default::default() }).await.unwrap();
    }
    let after = alex.my_certifications().await.unwrap();
    let reasons: Vec<_> = summary(&after).into_iter().map(|(id, why, areas, _)| (id, why, areas.len())).collect();
    assert_eq!(
        reasons,
        [
            ("azure-administrator-associate".into(), Why::NotLinked, 0),
            ("azure-developer-associate".into(), Why::NotLinked, 0),
            ("azure-fundamentals".into(), Why::NotInCatalog, 0),
            ("m365-administrator-expert".into(), Why::Expired, 0),
            ("pu-security-technical-assessment".into(), Why::NotLinked, 0),
        ]
    );
    assert!(alex.organization_credit(CONTOSO_TENANT).await.unwrap().areas.is_empty(), "the organisation's credit dropped");

    // Once Blair links the account, its achievements are Blair's to see, no longer Alex's.
    let blair = app.client_for("blair@contoso.example").await;
    link(&blair, ML, "jordan@outlook.example").await.unwrap();
    assert!(alex.my_certifications().await.unwrap().certifications.is_empty());
    assert_eq!(blair.my_certifications().await.unwrap().certifications.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcid_shows_wherever_the_link_does_and_a_later_profile_replaces_it() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    let feed = app.app_client("learning-feed").await;
    let profiles = vec![
        profile(&jordan, "990123456"),
        profile(&jordan, "990123456"),
        profile(&jordan, "99O123456"),
        profile(&alex_key, "990000000"),
        pb::LearningProfile { personal_account: None, mcid: "990000000".into() },
    ];
    let recorded = feed.record_learning_profiles(futures_util::stream::iter(profiles)).await.unwrap();
    assert_eq!((recorded.accepted, recorded.duplicates, recorded.rejected), (1, 1, 3));
    let reasons: Vec<_> = recorded.rejections.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(reasons, [(2, "INVALID_ARGUMENT"), (3, "NOT_A_PERSONAL_ACCOUNT"), (4, "INVALID_ARGUMENT")]);
    // Recording profiles is the Learning feed's alone.
    let refused = app.app_client("partner-university").await.record_learning_profiles(futures_util::stream::iter(vec![])).await;
    assert_refused(refused, tonic::Code::PermissionDenied, "NOT_PERMITTED");

    let alex = app.client_for("alex@contoso.example").await;
    let learning = link(&alex, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(learning.mcid, "990123456", "CompleteLink answers it");
    let university = link(&alex, PU, "jordan@outlook.example").await.unwrap();
    assert_eq!(university.mcid, "", "a Partner University link has no MCID");
    assert_eq!(alex.my_certifications().await.unwrap().mcid, "990123456");

    // A later profile replaces it, everywhere the link is shown.
    let later = feed.record_learning_profiles(futures_util::stream::iter(vec![profile(&jordan, "990999999")])).await.unwrap();
    assert_eq!(later.accepted, 1);
    let owner_view = alex.get_links().await.unwrap();
    let learning = owner_view.iter().find(|l| l.kind() == ML).unwrap();
    assert_eq!(learning.mcid, "990999999");
    assert_eq!(learning.personal_account.as_ref().unwrap().email, "jordan@outlook.example", "the owner sees their email");
    let request = pb::ListLinksRequest { organization_id: CONTOSO_TENANT.into(), ..Default::default() };
    for viewer in [app.client_for("admin@contoso.example").await, app.app_client("partner-university").await] {
        let listed = viewer.list_links(request.clone()).await.unwrap().links;
        let learning = listed.iter().find(|l| l.kind() == ML).unwrap();
        assert_eq!(learning.mcid, "990999999", "an admin and a Links.Read service see the MCID");
        let personal = learning.personal_account.as_ref().unwrap();
        assert_eq!((personal.email.as_str(), personal.display_name.as_str()), ("", ""), "never the email or name");
    }
    assert_eq!(alex.my_certifications().await.unwrap().mcid, "990999999");
}
