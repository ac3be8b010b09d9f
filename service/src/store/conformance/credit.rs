//! Conformance: certifications and credit (invariant 8).

use super::*;

pub async fn certifications_count_while_linked_and_unexpired<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let org = work(1).tenant;
    let azure = cert(1, "azure-administrator-associate", now, Some(now + Duration::days(365)));
    // Recorded before any link: idempotent, and counts the moment a link appears.
    assert_eq!(store.record_certifications(&[azure.clone(), azure.clone()], now).await.unwrap(), [Recorded::Accepted, Recorded::Duplicate]);
    assert_eq!(store.credit(&org).await.unwrap(), Credit::default());
    store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    let credit = store.credit(&org).await.unwrap();
    assert_eq!((credit.0["infrastructure-azure"].people, credit.0["infrastructure-azure"].certifications), (1, 1));
    // Partner University links never count.
    store.link(request(LinkKind::PartnerUniversity, 2, 2), LinkMode::default(), now).await.unwrap();
    store.record_certifications(&[cert(2, "security-operations-analyst-associate", now, None)], now).await.unwrap();
    assert!(!store.credit(&org).await.unwrap().0.contains_key("security"));
    // A renewal with a later expiry is accepted; expiry takes it out.
    let renewed = cert(1, "azure-administrator-associate", now, Some(now + Duration::days(730)));
    assert_eq!(store.record_certifications(&[renewed], now).await.unwrap(), [Recorded::Accepted]);
    assert_eq!(store.expire_certifications(now + Duration::days(400)).await.unwrap(), 0, "the renewal moved the expiry");
    assert_eq!(store.expire_certifications(now + Duration::days(731)).await.unwrap(), 1);
    assert_eq!(store.credit(&org).await.unwrap(), Credit::default());
    // Already expired on arrival: recorded, counts for nothing.
    store
        .record_certifications(&[cert(1, "azure-developer-associate", now - Duration::days(800), Some(now - Duration::days(1)))], now)
        .await
        .unwrap();
    assert_eq!(store.credit(&org).await.unwrap(), Credit::default());
    let r = recalculate(store, &org).await;
    assert_eq!(r.stored, r.recomputed);
}

/// The randomized model test: thousands of random operations across organisations; after
/// each, every organisation's incremental credit equals an independent model's, and
/// recalculation finds no drift. Then stored credit is corrupted on purpose and exactly that
/// is found and repaired.
pub async fn credit_always_equals_a_recomputation<S: Store + ?Sized>(store: &S) {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::collections::HashMap;

    const TENANTS: [&str; 4] = [
        "11111111-1111-1111-1111-111111111111",
        "22222222-2222-2222-2222-222222222222",
        "33333333-3333-3333-3333-333333333333",
        "44444444-4444-4444-4444-444444444444",
    ];
    const CERTS: [&str; 6] = [
        "azure-administrator-associate",
        "azure-solutions-architect-expert",
        "m365-administrator-expert",
        "security-operations-analyst-associate",
        "azure-developer-associate",
        "azure-data-engineer-associate",
    ];
    let seed = std::env::var("IDLINK_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261121u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let catalog = Catalog::default_catalog();
    let worker = |n: u32| AccountKey::parse(TENANTS[(n % 4) as usize], &format!("00000000-0000-0000-0000-{n:012x}")).unwrap();
    let mut now = Utc::now();
    // The model: personal → work user holding it (Microsoft Learning), and certifications.
    let mut holder: HashMap<u32, AccountKey> = HashMap::new();
    let mut certs: HashMap<u32, Vec<Certification>> = HashMap::new();
    let mut ever_linked: std::collections::HashSet<AccountKey> = std::collections::HashSet::new();

    for step in 0..2000 {
        let (w, p) = (rng.gen_range(0..24u32), rng.gen_range(0..16u32));
        match rng.gen_range(0..10) {
            0..=3 => {
                let mode = LinkMode { transfer: rng.gen_bool(0.5), replace_existing: rng.gen_bool(0.5) };
                let new = NewLink { work: worker(w), ..request(KIND, 0, p) };
                // The model's prediction, in the rules' order: the pair already linked, the
                // personal account held elsewhere, the work user holding another.
                let holds_other = holder.iter().any(|(held, by)| *by == worker(w) && *held != p);
                let expected = match holder.get(&p) {
                    Some(by) if *by == worker(w) => Ok(()),
                    Some(_) if !mode.transfer => Err(DomainError::LinkedElsewhere { kind: KIND }),
                    _ if holds_other && !mode.replace_existing => Err(DomainError::AlreadyLinked { kind: KIND }),
                    _ => Ok(()),
                };
                let outcome = store.link(new, mode, now).await;
                match (&expected, outcome) {
                    (Ok(()), Ok(link)) => {
                        assert_eq!((link.personal, link.work.clone()), (personal(p), worker(w)), "seed {seed}, step {step}")
                    }
                    (Err(want), Err(StoreError::Domain(got))) => assert_eq!(&got, want, "seed {seed}, step {step}"),
                    (want, got) => panic!("seed {seed}, step {step}: the model expected {want:?}, the store answered {got:?}"),
                }
                if expected.is_ok() {
                    holder.retain(|held, by| !(*held == p || *by == worker(w))); // transferred or replaced
                    holder.insert(p, worker(w));
                    ever_linked.insert(worker(w));
                }
            }
            4 => {
                // Idempotent for anyone who ever had a link (the last tombstone), refused for
                // anyone who never had one.
                let outcome = store.remove(KIND, &worker(w), &worker(w), "model", None, now).await;
                match (ever_linked.contains(&worker(w)), outcome) {
                    (true, Ok(tombstone)) => assert_eq!(tombstone.work, worker(w), "seed {seed}, step {step}"),
                    (false, Err(StoreError::Domain(DomainError::LinkNotFound { .. }))) => {}
                    (ever, got) => panic!("seed {seed}, step {step}: ever linked {ever}, the store answered {got:?}"),
                }
                holder.retain(|_, by| *by != worker(w));
            }
            5..=7 => {
                let id = CERTS[rng.gen_range(0..CERTS.len())];
                let expires = rng.gen_bool(0.7).then(|| now + Duration::days(rng.gen_range(1..40)));
                let c = Certification { personal: personal(p), ..cert(p, id, now, expires) };
                if store.record_certifications(std::slice::from_ref(&c), now).await.unwrap() == [Recorded::Accepted] {
                    let list = certs.entry(p).or_default();
                    list.retain(|x| x.id != c.id);
                    list.push(c);
                }
            }
            _ => {
                now += Duration::days(rng.gen_range(1..5));
                store.expire_certifications(now).await.unwrap();
                for c in certs.values_mut().flatten() {
                    c.expired |= c.is_past_expiry(now);
                }
            }
        }
        for tenant in TENANTS {
            let tenant = TenantId::parse(tenant).unwrap();
            let mut expected = Credit::default();
            for (p, by) in &holder {
                if by.tenant == tenant {
                    expected.add(&Credit::of_person(&catalog, certs.get(p).map(Vec::as_slice).unwrap_or_default()), 1);
                }
            }
            assert_eq!(store.credit(&tenant).await.unwrap(), expected, "seed {seed}, step {step}, {}", tenant.as_str());
            if step % 97 == 0 {
                let r = recalculate(store, &tenant).await;
                assert_eq!(r.stored, r.recomputed, "seed {seed}, step {step}: drift");
            }
        }
        // The one-pass recomputation of every organisation agrees with the model too.
        if step % 97 == 0
            && let Some(all) = store.recompute_all().await.unwrap()
        {
            for tenant in TENANTS.map(|t| TenantId::parse(t).unwrap()) {
                let (r, credit) = (all.get(&tenant).cloned().unwrap_or_default(), store.credit(&tenant).await.unwrap());
                assert_eq!((&r.stored, &r.recomputed), (&credit, &credit), "seed {seed}, step {step}: the pass, {}", tenant.as_str());
            }
        }
    }
    assert_consistent_links(store).await;

    // Corrupt one organisation's stored credit: recalculation finds exactly that, and repairs it.
    let victim = TenantId::parse(TENANTS[2]).unwrap();
    let truth = store.credit(&victim).await.unwrap();
    let mut wrong = truth.clone();
    wrong.add(&Credit::of_person(&catalog, &[cert(0, "m365-administrator-expert", now, None)]), 1);
    store.overwrite_credit(&victim, &wrong).await.unwrap();
    if let Some(all) = store.recompute_all().await.unwrap() {
        let drifted: Vec<_> = all.iter().filter(|(_, r)| r.stored != r.recomputed).collect();
        assert_eq!(drifted.len(), 1, "the pass finds exactly the corrupted organisation");
        assert_eq!((drifted[0].0, &drifted[0].1.stored, &drifted[0].1.recomputed), (&victim, &wrong, &truth));
    }
    let mut drifted = Vec::new();
    let mut after = None;
    loop {
        let page = store.credit_tenants(after.as_ref(), 3).await.unwrap();
        let Some(last) = page.last().cloned() else { break };
        for tenant in page {
            let r = recalculate(store, &tenant).await;
            if r.stored != r.recomputed {
                drifted.push((tenant, r));
            }
        }
        after = Some(last);
    }
    assert_eq!(drifted.len(), 1, "exactly the corrupted organisation drifted");
    assert_eq!((&drifted[0].0, &drifted[0].1.stored, &drifted[0].1.recomputed), (&victim, &wrong, &truth));
    assert_eq!(store.credit(&victim).await.unwrap(), truth, "repaired");
}

/// A recomputation is committed only if nothing changed the organisation's credit since it
/// was read: a stale one, from either path, is refused and writes nothing.
pub async fn a_stale_recomputation_is_not_committed<S: Store + ?Sized>(store: &S) {
    let now = Utc::now();
    let org = work(1).tenant;
    store.link(request(KIND, 1, 1), LinkMode::default(), now).await.unwrap();
    store.record_certifications(&[cert(1, "azure-administrator-associate", now, None)], now).await.unwrap();
    let stale = store.recompute(&org).await.unwrap();
    let pass = store.recompute_all().await.unwrap();
    // A change to the organisation's credit after both were read.
    store.record_certifications(&[cert(1, "azure-developer-associate", now, None)], now).await.unwrap();
    let truth = store.credit(&org).await.unwrap();
    assert_ne!(truth, stale.recomputed);
    assert!(!store.commit_recomputed(&org, &stale).await.unwrap());
    if let Some(mut pass) = pass {
        let from_pass = pass.remove(&org).unwrap();
        assert_eq!(from_pass, stale, "the pass and the organisation's own recomputation agree");
        assert!(!store.commit_recomputed(&org, &from_pass).await.unwrap());
    }
    assert_eq!(store.credit(&org).await.unwrap(), truth, "nothing stale was written");
    let fresh = store.recompute(&org).await.unwrap();
    assert_eq!(fresh.recomputed, truth);
    assert!(store.commit_recomputed(&org, &fresh).await.unwrap());
}
