//! The permission matrix of docs/design.md ("Who may do what"): every RPC × every kind of caller
//! → allowed, allowed with personal fields empty, or refused with the right code and reason.

use idlink_client::{ClientError, IdlinkClient, pb};
use idlink_service::domain::AccountKey;
use idlink_tests::*;
use serde_json::json;
use tonic::Code;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Allowed; links shown with the personal email.
    Full,
    /// Allowed; links shown without personal email and name.
    Redacted,
    /// Allowed (nothing to show, or the call got past the permission check).
    Allowed,
    Refused(Code, &'static str),
}

use Expect::*;

const NOT_PERMITTED: Expect = Refused(Code::PermissionDenied, "NOT_PERMITTED");
const NOT_A_USER: Expect = Refused(Code::PermissionDenied, "CALLER_NOT_A_USER");
const BAD_TOKEN: Expect = Refused(Code::Unauthenticated, "INVALID_TOKEN");
const NO_TOKEN: Expect = Refused(Code::Unauthenticated, "MISSING_TOKEN");
const GUEST: Expect = Refused(Code::PermissionDenied, "PERSONAL_ACCOUNT_CANNOT_OWN_LINKS");
/// CompleteLink with an unknown state: allowed callers get past the permission check to this.
const PAST_THE_CHECK: Expect = Refused(Code::NotFound, "FLOW_NOT_FOUND");

const RPCS: [&str; 11] = [
    "BeginLink",
    "CompleteLink",
    "GetLinks(own)",
    "GetLinks(alex)",
    "ListLinks(contoso)",
    "Resolve(jordan)",
    "RemoveLink(alex)",
    "MyCertifications(alex)",
    "People(contoso)",
    "LearningProfiles",
    "RemoveWorkUser(leaver)",
];
/// The column run last: it removes the link the others see.
const REMOVAL: usize = 6;
const NP: Expect = NOT_PERMITTED;

#[rustfmt::skip]
fn matrix() -> Vec<(&'static str, [Expect; 11])> {
    vec![
        //                 Begin     Complete        GetOwn   GetAlex   ListLinks Resolve   RemoveAlex MyCerts(alex) People   Profiles RemoveWorkUser
        ("alex (owner)",  [Allowed,  PAST_THE_CHECK, Full,    Full,     NP,       NP,       Full,      Allowed,      NP,      NP,      NP]),
        ("blair (same tenant)", [Allowed, PAST_THE_CHECK, Allowed, NP, NP,     NP,       NP,        NP,           NP,      NP,      NP]),
        ("contoso admin", [Allowed,  PAST_THE_CHECK, Allowed, Redacted, Redacted, NP,       Redacted,  NP,           Allowed, NP,      Allowed]),
        ("fabrikam admin",[Allowed,  PAST_THE_CHECK, Allowed, NP,       NP,       NP,       NP,        NP,           NP,      NP,      NP]),
        ("app Links.Read",[NOT_A_USER, NOT_A_USER,   NP,      NP,       Redacted, Allowed,  NP,        NOT_A_USER,   NP,      NP,      NP]),
        ("app Certifications.Write", [NOT_A_USER, NOT_A_USER, NP, NP,   NP,       NP,       NP,        NOT_A_USER,   NP,      Allowed, NP]),
        ("app Credits.Recalculate",  [NOT_A_USER, NOT_A_USER, NP, NP,   NP,       NP,       NP,        NOT_A_USER,   Allowed, NP,      NP]),
        ("app Organizations.Write",  [NOT_A_USER, NOT_A_USER, NP, NP,   NP,       NP,       NP,        NOT_A_USER,   NP,      NP,      Allowed]),
        ("app without roles",        [NOT_A_USER, NOT_A_USER, NP, NP,   NP,       NP,       NP,        NOT_A_USER,   NP,      NP,      NP]),
        ("consumer-tenant token",    [BAD_TOKEN; 11]),
        ("guest MSA",                [GUEST; 11]),
        ("ID token as bearer",       [BAD_TOKEN; 11]),
        ("no token",                 [NO_TOKEN; 11]),
    ]
}

fn account_ref(key: &AccountKey) -> pb::AccountRef {
    pb::AccountRef { tenant_id: key.tenant.as_str().into(), object_id: key.object.as_str().into() }
}

async fn token_of(app: &TestApp, caller: &str) -> Option<String> {
    let idp = &app.idp;
    let signed = |claims: serde_json::Value| idp.sign_raw(&json!({"alg": "RS256", "typ": "JWT", "kid": idp.active_kid()}), &claims);
    Some(match caller {
        "alex (owner)" => idp.access_token("alex@contoso.example").unwrap(),
        "blair (same tenant)" => idp.access_token("blair@contoso.example").unwrap(),
        "contoso admin" => idp.access_token("admin@contoso.example").unwrap(),
        "fabrikam admin" => idp.access_token("admin@fabrikam.example").unwrap(),
        "app Links.Read" => idp.app_token("partner-university").unwrap(),
        "app Certifications.Write" => idp.app_token("learning-feed").unwrap(),
        "app Credits.Recalculate" => idp.app_token("credit-recalculation").unwrap(),
        "app Organizations.Write" => idp.app_token("enrolment").unwrap(),
        "app without roles" => idp.app_token("no-roles").unwrap(),
        // Genuinely signed by the provider, for a personal account in the consumer tenant.
        "consumer-tenant token" => signed(idp.access_token_claims("jordan@outlook.example").unwrap()),
        "guest MSA" => idp.access_token("river@outlook.example").unwrap(),
        "ID token as bearer" => {
            let mut claims = idp.access_token_claims("alex@contoso.example").unwrap();
            let obj = claims.as_object_mut().unwrap();
            obj.remove("scp");
            obj.insert("aud".into(), json!("idlink-microsoft-learning"));
            obj.insert("nonce".into(), json!("n0nce-value"));
            signed(claims)
        }
        "no token" => return None,
        other => panic!("unknown caller {other}"),
    })
}

/// Calls one RPC; answers the links it shows (if any).
async fn call(client: &IdlinkClient, rpc: &str, alex: &AccountKey, jordan: &AccountKey) -> Result<Vec<pb::Link>, ClientError> {
    let contoso = alex.tenant.as_str().to_owned();
    match rpc {
        "BeginLink" => client.begin_link(begin_request(PU, "sam@outlook.example")).await.map(|_| vec![]),
        "CompleteLink" => client
            .complete_link(pb::CompleteLinkRequest { state: "x".repeat(43), code: "c".into(), ..Default::default() })
            .await
            .map(|l| vec![l]),
        "GetLinks(own)" => client.get_links().await,
        "GetLinks(alex)" => client.get_links_of(account_ref(alex)).await,
        "ListLinks(contoso)" => client.list_all_links(pb::ListLinksRequest { organization_id: contoso, ..Default::default() }).await,
        "Resolve(jordan)" => client
            .resolve_personal_account(pb::ResolvePersonalAccountRequest { kind: ML as i32, personal_account: Some(account_ref(jordan)) })
            .await
            .map(|r| {
                assert_eq!(r.work_user.unwrap().object_id, alex.object.as_str());
                assert_eq!(r.organization_id, contoso);
                vec![]
            }),
        "RemoveLink(alex)" => client
            .remove_link(pb::RemoveLinkRequest {
                kind: ML as i32,
                user: Some(account_ref(alex)),
                reason: "matrix".into(),
                ..Default::default()
            })
            .await
            .map(|l| vec![l]),
        "MyCertifications(alex)" => client.my_certifications_as(account_ref(alex)).await.map(|_| vec![]),
        "People(contoso)" => client
            .list_organization_people(pb::ListOrganizationPeopleRequest { organization_id: contoso, ..Default::default() })
            .await
            .map(|page| {
                assert_eq!(page.people.len(), 1, "alex");
                vec![]
            }),
        "LearningProfiles" => client.record_learning_profiles(tokio_stream::iter(vec![])).await.map(|_| vec![]),
        // A work account of Contoso that holds no link: allowed callers remove nothing.
        "RemoveWorkUser(leaver)" => client
            .remove_work_user(pb::RemoveWorkUserRequest {
                user: Some(pb::AccountRef { tenant_id: contoso, object_id: "00000000-0000-4000-8000-0000000000ee".into() }),
                ..Default::default()
            })
            .await
            .map(|r| {
                assert!(r.removed.is_empty());
                vec![]
            }),
        other => panic!("unknown rpc {other}"),
    }
}

fn check(caller: &str, rpc: &str, expected: Expect, outcome: Result<Vec<pb::Link>, ClientError>) {
    let context = format!("{caller} × {rpc}");
    match (expected, outcome) {
        (Refused(code, reason), Err(ClientError::Rpc { code: c, reason: r, .. })) => {
            assert_eq!((c, r.as_str()), (code, reason), "{context}")
        }
        (Refused(..), Ok(links)) => panic!("{context}: allowed, showing {} links", links.len()),
        (_, Err(e)) => panic!("{context}: refused: {e}"),
        (Allowed, Ok(_)) => {}
        (Full | Redacted, Ok(links)) => {
            let alex_link = links.iter().find(|l| l.kind == ML as i32).unwrap_or_else(|| panic!("{context}: alex's link not shown"));
            let personal = alex_link.personal_account.clone().unwrap();
            assert!(!personal.object_id.is_empty(), "{context}: ids are always shown");
            if expected == Full {
                assert_eq!(personal.email, "jordan@outlook.example", "{context}");
            } else {
                assert_eq!((personal.email.as_str(), personal.display_name.as_str()), ("", ""), "{context}: personal details leaked");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_times_every_kind_of_caller() {
    let app = TestApp::spawn().await;
    let alex = app.idp.user("alex@contoso.example").unwrap().key;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    link(&app.client_for("alex@contoso.example").await, ML, "jordan@outlook.example").await.unwrap();

    let mut clients = Vec::new();
    for (caller, expectations) in matrix() {
        clients.push((caller, expectations, app.client_with_token(token_of(&app, caller).await).await));
    }
    // Everything but the removal first, so every caller sees the same link.
    for (caller, expectations, client) in &clients {
        for (i, (rpc, expected)) in RPCS.iter().zip(expectations).enumerate() {
            if i != REMOVAL {
                check(caller, rpc, *expected, call(client, rpc, &alex, &jordan).await);
            }
        }
    }
    // Removals: the refused ones, then the admin's (redacted tombstone), then the owner's
    // (idempotent: the same tombstone, with the personal email for its owner).
    let mut removals: Vec<_> = clients.iter().map(|(caller, e, client)| (*caller, e[REMOVAL], client)).collect();
    removals.sort_by_key(|(caller, expected, _)| match (expected, *caller) {
        (Refused(..), _) => 0,
        (_, "contoso admin") => 1,
        _ => 2,
    });
    for (caller, expected, client) in removals {
        check(caller, RPCS[REMOVAL], expected, call(client, RPCS[REMOVAL], &alex, &jordan).await);
    }
    let tombstone = app
        .client_for("alex@contoso.example")
        .await
        .remove_link(pb::RemoveLinkRequest { kind: ML as i32, user: None, reason: String::new(), ..Default::default() })
        .await
        .unwrap();
    let removal = tombstone.removal.unwrap();
    assert_eq!(removal.reason, "matrix");
    assert_eq!(
        removal.removed_by.unwrap().object_id,
        app.idp.user("admin@contoso.example").unwrap().key.object.as_str(),
        "the admin removed it"
    );
}
