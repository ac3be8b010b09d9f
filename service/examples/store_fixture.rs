//! Writes a small sled store through the store API — links of both kinds, a tombstone, a
//! transfer, achievements (one expired), an MCID, an organisation, credit, associations,
//! events, a pending flow, an answered idempotent request, a secret — and dumps every record
//! of every tree, as the running code encoded it, one JSON line each (`tree`, `key` and
//! `value` in hex). A store test loads such a dump into an empty store and checks that the
//! code of the day reads every record back: a change of record format that cannot read the
//! stores already out there fails it.
//!
//!     cargo run -p idlink-service --features test-support --example store_fixture -- OUT.jsonl
//!
//! `service/fixtures/sled-json-records.jsonl` was written so by the code of before the
//! compact record format (JSON values).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a fixture tool fails loudly")]

use std::{io::Write, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use idlink_service::{
    domain::{
        AccountKey, CONSUMER_TENANT, Catalog, Certification, CertificationId, Flow, FlowSecret, LearningProfile, LinkKind, LinkMode,
        NewLink, Organization, PartnerId, PersonalProfile, StateHash, TenantId,
    },
    store::{CreditStore, FlowStore, LinkStore, RequestLog, RequestQuota, Store, StoredOutcome, sled::SledStore},
};

const TENANT: &str = "3b1d6a6e-5a3c-4f0a-9c7e-2f6b8e1d4c01";

fn work(n: u32) -> AccountKey {
    AccountKey::parse(TENANT, &format!("00000000-0000-4000-8000-{n:012x}")).unwrap()
}

fn personal(n: u32) -> AccountKey {
    AccountKey::parse(CONSUMER_TENANT, &format!("00000000-0000-4000-9000-{n:012x}")).unwrap()
}

fn request(kind: LinkKind, w: u32, p: u32) -> NewLink {
    NewLink {
        kind,
        work: work(w),
        work_upn: format!("user{w}@contoso.example"),
        personal: personal(p),
        personal_sub: format!("pairwise-sub-{p}"),
        profile: PersonalProfile { email: format!("person{p}@outlook.example"), name: format!("Person {p}") },
    }
}

fn achievement(
    catalog: &Catalog,
    p: u32,
    source: LinkKind,
    id: &str,
    earned: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
) -> Certification {
    Certification::parse(catalog, personal(p), source, CertificationId::parse(id).unwrap(), earned, expires).unwrap()
}

#[tokio::main]
async fn main() {
    let out = std::env::args().nth(1).expect("usage: store_fixture OUT.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::default_catalog());
    // Times with nanoseconds: a format that rounds them fails the read-back.
    let now = DateTime::parse_from_rfc3339("2026-11-30T09:15:42.123456789Z").unwrap().to_utc();
    {
        let store = SledStore::open(dir.path(), catalog.clone()).unwrap();
        for w in 1..=4 {
            store.link(request(LinkKind::MicrosoftLearning, w, w), LinkMode::default(), now).await.unwrap();
            store.link(request(LinkKind::PartnerUniversity, w, 10 + w), LinkMode::default(), now).await.unwrap();
        }
        let by = work(1);
        store.remove(LinkKind::PartnerUniversity, &work(4), &by, "left the programme", None, now + Duration::minutes(1)).await.unwrap();
        // Person 3's Learning account moves from work user 3 to work user 5.
        let transfer = LinkMode { transfer: true, ..LinkMode::default() };
        store.link(request(LinkKind::MicrosoftLearning, 5, 3), transfer, now + Duration::minutes(2)).await.unwrap();
        let certs = [
            achievement(
                &catalog,
                1,
                LinkKind::MicrosoftLearning,
                "azure-administrator-associate",
                now - Duration::days(30),
                Some(now + Duration::days(335)),
            ),
            achievement(&catalog, 1, LinkKind::MicrosoftLearning, "azure-fundamentals", now - Duration::days(400), None),
            achievement(
                &catalog,
                2,
                LinkKind::MicrosoftLearning,
                "azure-developer-associate",
                now - Duration::days(800),
                Some(now - Duration::days(70)),
            ),
            achievement(
                &catalog,
                3,
                LinkKind::MicrosoftLearning,
                "azure-ai-engineer-associate",
                now - Duration::days(3),
                Some(now + Duration::days(362)),
            ),
            achievement(&catalog, 11, LinkKind::PartnerUniversity, "pu-azure-ai-bootcamp", now - Duration::days(12), None),
        ];
        store.record_certifications(&certs, now).await.unwrap();
        store.record_learning_profiles(&[LearningProfile::parse(personal(1), "987654321").unwrap()]).await.unwrap();
        let organization = Organization {
            tenant: TenantId::parse(TENANT).unwrap(),
            partner_id: PartnerId::parse("4812345").unwrap(),
            name: "Contoso Ltd".into(),
            updated_at: now,
        };
        store.upsert_organization(&organization).await.unwrap();
        let flow = Flow {
            kind: LinkKind::MicrosoftLearning,
            owner: work(6),
            owner_upn: "user6@contoso.example".into(),
            redirect_uri: "https://partner.example/cb".into(),
            pkce_verifier: FlowSecret::new("v".repeat(86)),
            nonce: FlowSecret::new("n".repeat(43)),
            mode: LinkMode::default(),
            created_at: now,
            expires_at: now + Duration::minutes(10),
        };
        let state = "fixture-state";
        store.put_flow(&StateHash::of(state), &flow.seal(state).unwrap()).await.unwrap();
        let quota = RequestQuota { caller: "app:fixture", per_day: 100 };
        store.reserve_request("fixture-request", "fingerprint", quota, now, now - Duration::hours(1)).await.unwrap();
        let outcome = StoredOutcome { code: 0, message: String::new(), body: vec![8, 1, 18, 3] };
        store.finish_request("fixture-request", "app:fixture", Some(outcome)).await.unwrap();
        store.secret("page-token").await.unwrap();
        store.flush().unwrap();
    }
    let db = sled::open(dir.path()).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    let mut records = 0;
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            let line = serde_json::json!({"tree": String::from_utf8_lossy(&name), "key": hex(&key), "value": hex(&value)});
            writeln!(file, "{line}").unwrap();
            records += 1;
        }
    }
    file.flush().unwrap();
    println!("{records} records written to {out}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
