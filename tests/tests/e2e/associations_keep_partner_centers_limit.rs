//! Invariant 17: Partner Center's limit on associations, as `idlinkd --dev` configures it for
//! Microsoft Learning — three a year, 30 days apart, per personal account. Past it a
//! completion is refused `FAILED_PRECONDITION` `ASSOCIATION_LIMITED` naming the date, in the
//! caller's language; its flow is spent and nothing is written. Time is the test's clock.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use idlink_client::{ClientError, pb};
use idlink_service::{api::status::Locale, domain::EventType};
use idlink_tests::*;
use tonic::Code;

const JORDAN: &str = "jordan@outlook.example";

fn remove_learning() -> pb::RemoveLinkRequest {
    pb::RemoveLinkRequest { kind: ML as i32, ..Default::default() }
}

/// The date a refusal names, from its `ErrorInfo.metadata`.
fn named_date(refusal: &Result<pb::Link, ClientError>) -> DateTime<Utc> {
    match refusal {
        Err(ClientError::Rpc { metadata, .. }) => {
            assert_eq!(metadata.get("kind").map(String::as_str), Some("microsoft_learning"), "{metadata:?}");
            metadata["next_association_available_at"].parse().unwrap()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn next_learning_association(links: &pb::GetLinksResponse) -> Option<i64> {
    let learning = links.next_associations.iter().find(|n| n.kind == ML as i32).expect("Learning limits associations");
    learning.next_association_available_at.map(|t| t.seconds)
}

/// Seconds, as the wire carries them (the store keeps microseconds).
fn whole(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relink_waits_thirty_days_and_a_fourth_in_a_year_is_refused() {
    let app = TestApp::spawn().await;
    let t0 = app.now();
    let alex = app.client_for("alex@contoso.example").await;
    link(&alex, ML, JORDAN).await.unwrap();
    // The owner sees the date; an admin looking at Alex's links does not.
    assert_eq!(next_learning_association(&alex.my_links().await.unwrap()), Some((t0 + Duration::days(30)).timestamp()));
    let admin = app.client_for("admin@contoso.example").await;
    let alex_key = app.idp.user("alex@contoso.example").unwrap().key;
    let alex_ref = pb::AccountRef { tenant_id: alex_key.tenant.as_str().into(), object_id: alex_key.object.as_str().into() };
    assert_eq!(admin.get_links_of(alex_ref).await.unwrap().len(), 1);
    alex.remove_link(remove_learning()).await.unwrap();

    // Ten days on, relinking the same account is refused, naming t0 + 30 days.
    app.clock.advance(Duration::days(10));
    let alex = app.client_for("alex@contoso.example").await;
    let events_before = app.store.events_after(0, 1000).await.unwrap().len();
    let complete = begin_and_sign_in(&alex, ML, JORDAN).await;
    let refused = alex.complete_link(complete.clone()).await;
    assert_eq!(named_date(&refused), whole(t0 + Duration::days(30)));
    let message = assert_refused(refused, Code::FailedPrecondition, "ASSOCIATION_LIMITED");
    let date = Locale::En.date(t0 + Duration::days(30));
    assert_eq!(
        message,
        format!(
            "You've attempted to associate with a partner organization. However, we require a period of 30 days between \
             associations. Your next available date for a subsequent association is {date}."
        )
    );
    // Spent, and nothing written: no link, no event, the date unchanged.
    assert_refused(alex.complete_link(complete).await, Code::NotFound, "FLOW_NOT_FOUND");
    let mine = alex.my_links().await.unwrap();
    assert!(mine.links.is_empty());
    assert_eq!(next_learning_association(&mine), Some((t0 + Duration::days(30)).timestamp()), "read from the removed link's account");
    assert_eq!(app.store.events_after(0, 1000).await.unwrap().len(), events_before, "a refusal emits nothing");

    // In French and Korean, the same date as those languages write it.
    for (lang, locale, says) in
        [("fr-FR", Locale::Fr, "un délai de 30 jours est requis"), ("ko-KR", Locale::Ko, "30일의 기간이 필요합니다")]
    {
        let options = idlink_client::ClientOptions::new(app.endpoint())
            .accept_language(lang)
            .token(app.idp.access_token("alex@contoso.example").unwrap());
        let localized = idlink_client::IdlinkClient::connect(options).await.unwrap();
        let message = assert_refused(link(&localized, ML, JORDAN).await, Code::FailedPrecondition, "ASSOCIATION_LIMITED");
        assert!(message.contains(says) && message.contains(&locale.date(t0 + Duration::days(30))), "{lang}: {message}");
    }

    // At t0 + 30 days it is allowed; 30 days later the third; the fourth within 365 days is
    // refused until the first is a year old.
    app.clock.advance(Duration::days(20));
    let alex = app.client_for("alex@contoso.example").await;
    link(&alex, ML, JORDAN).await.unwrap();
    alex.remove_link(remove_learning()).await.unwrap();
    app.clock.advance(Duration::days(30));
    let alex = app.client_for("alex@contoso.example").await;
    link(&alex, ML, JORDAN).await.unwrap();
    alex.remove_link(remove_learning()).await.unwrap();
    app.clock.advance(Duration::days(100));
    let alex = app.client_for("alex@contoso.example").await;
    let refused = link(&alex, ML, JORDAN).await;
    assert_eq!(named_date(&refused), whole(t0 + Duration::days(365)));
    let message = assert_refused(refused, Code::FailedPrecondition, "ASSOCIATION_LIMITED");
    assert!(message.contains("only 3 associations are allowed each year"), "{message}");
    // Another personal account is not held to Jordan's count.
    link(&alex, ML, "sam@outlook.example").await.unwrap();
    app.integrity().await;
}

/// 16 completions at once for one personal account, eight by each of two work users: one
/// association, one holder. The winner's other attempts
/// answer its link; every attempt of the other user is refused by the limit, not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completions_for_one_account_make_one_association() {
    let app = TestApp::spawn().await;
    app.new_personal("racer@outlook.example");
    let (_, first) = app.new_work_user("first@contoso.example").await;
    let (_, second) = app.new_work_user("second@contoso.example").await;
    let mut attempts = Vec::new();
    for n in 0..16 {
        let client = if n % 2 == 0 { first.clone() } else { second.clone() };
        let complete = begin_and_sign_in(&client, ML, "racer@outlook.example").await;
        attempts.push((client, complete));
    }
    let outcomes = join_all(attempts.iter().map(|(client, complete)| client.complete_link(complete.clone()))).await;
    let linked: std::collections::BTreeSet<String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).map(|l| l.id.clone()).collect();
    assert_eq!(linked.len(), 1, "{outcomes:?}");
    let refused: Vec<_> = outcomes.into_iter().filter(Result::is_err).collect();
    assert_eq!(refused.len(), 8, "the other user's eight attempts");
    for refusal in refused {
        assert_refused(refusal, Code::FailedPrecondition, "ASSOCIATION_LIMITED");
    }
    let events = app.store.events_after(0, 1000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.event_type).collect::<Vec<_>>(), [EventType::Created], "no move got through");
    assert_eq!(app.integrity().await.active_links, 1);
}
