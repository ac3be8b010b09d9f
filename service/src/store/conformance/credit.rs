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
    // A Partner University link brings Partner University achievements, never Learning's.
    store.link(request(LinkKind::PartnerUniversity, 2, 2), LinkMode::default(), now).await.unwrap();
    store.record_certifications(&[cert(2, "security-operations-analyst-associate", now, None)], now).await.unwrap();
    assert!(!store.credit(&org).await.unwrap().0.contains_key("security"));
    store.record_certifications(&[achievement(2, "pu-security-technical-assessment", now)], now).await.unwrap();
    assert_eq!(store.credit(&org).await.unwrap().0["security"], crate::domain::Tally { people: 1, certifications: 1 });
    // Work user 1 adds a Partner University link: still one person in the area both credit.
    store.record_certifications(&[achievement(3, "pu-infrastructure-technical-assessment", now)], now).await.unwrap();
    store.link(request(LinkKind::PartnerUniversity, 1, 3), LinkMode::default(), now).await.unwrap();
    assert_eq!(store.credit(&org).await.unwrap().0["infrastructure-azure"], crate::domain::Tally { people: 1, certifications: 2 });
    store.remove(LinkKind::PartnerUniversity, &work(1), &work(1), "test", None, now).await.unwrap();
    store.remove(LinkKind::PartnerUniversity, &work(2), &work(2), "test", None, now).await.unwrap();
    assert_eq!(store.credit(&org).await.unwrap().0.keys().collect::<Vec<_>>(), ["infrastructure-azure"]);
    assert_eq!(store.credit(&org).await.unwrap().0["infrastructure-azure"], crate::domain::Tally { people: 1, certifications: 1 });
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

/// A batch as the Learning feed sends it (512 certifications, a person each, every one linked)
/// is one change, and so is the expiry of them all: a backend whose change reads each person's
/// records only after the previous person's must still finish it.
pub async fn a_full_batch_for_as_many_linked_people_records_and_expires_at_once<S: Store + ?Sized>(store: &S) {
    const PEOPLE: u32 = 512;
    let now = Utc::now();
    for p in 0..PEOPLE {
        store.link(request(KIND, 1000 + p, 1000 + p), LinkMode::default(), now).await.unwrap();
    }
    let batch: Vec<Certification> =
        (0..PEOPLE).map(|p| cert(1000 + p, "azure-administrator-associate", now, Some(now + Duration::days(30)))).collect();
    let recorded = store.record_certifications(&batch, now).await.unwrap();
    assert!(recorded.iter().all(|r| *r == Recorded::Accepted), "{recorded:?}");
    let org = work(1000).tenant;
    assert_eq!(
        store.credit(&org).await.unwrap().0["infrastructure-azure"],
        crate::domain::Tally { people: PEOPLE.into(), certifications: PEOPLE.into() }
    );
    assert_eq!(store.expire_certifications(now + Duration::days(31)).await.unwrap(), PEOPLE as usize);
    assert_eq!(store.credit(&org).await.unwrap(), Credit::default());
}

/// The randomized model test: thousands of random operations across organisations, on links
/// of both kinds and achievements of both sources; after each, every organisation's
/// incremental credit equals an independent model's, and recalculation finds no drift. Then stored credit is corrupted on purpose and exactly that
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
    const ACHIEVEMENTS: [&str; 4] = [
        "pu-infrastructure-technical-assessment",
        "pu-azure-migration-bootcamp",
        "pu-modern-work-technical-assessment",
        "pu-security-technical-assessment",
    ];
    let seed = std::env::var("IDLINK_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261121u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let catalog = Catalog::default_catalog();
    let worker = |n: u32| AccountKey::parse(TENANTS[(n % 4) as usize], &format!("00000000-0000-0000-0000-{n:012x}")).unwrap();
    let mut now = Utc::now();
    // The model: (kind, personal) → work user holding it, and achievements.
    let mut holder: HashMap<(LinkKind, u32), AccountKey> = HashMap::new();
    let mut certs: HashMap<u32, Vec<Certification>> = HashMap::new();
    let mut ever_linked: std::collections::HashSet<(LinkKind, AccountKey)> = std::collections::HashSet::new();
    const PARTNERS: [&str; 2] = ["4512345", "4599999"];
    let mut enrolled: HashMap<&str, &str> = HashMap::new();
    let mut mcids: HashMap<u32, crate::domain::Mcid> = HashMap::new();

    for step in 0..2000 {
        let (w, p) = (rng.gen_range(0..24u32), rng.gen_range(0..16u32));
        let kind = [LinkKind::MicrosoftLearning, LinkKind::PartnerUniversity][rng.gen_range(0..2)];
        match rng.gen_range(0..10) {
            0..=3 => {
                let mode = LinkMode { transfer: rng.gen_bool(0.5), replace_existing: rng.gen_bool(0.5), ..LinkMode::default() };
                let new = NewLink { work: worker(w), ..request(kind, 0, p) };
                // The model's prediction, in the rules' order: the pair already linked, the
                // personal account held elsewhere, the work user holding another.
                let holds_other = holder.iter().any(|((k, held), by)| *k == kind && *by == worker(w) && *held != p);
                let expected = match holder.get(&(kind, p)) {
                    Some(by) if *by == worker(w) => Ok(()),
                    Some(_) if !mode.transfer => Err(DomainError::LinkedElsewhere { kind }),
                    _ if holds_other && !mode.replace_existing => Err(DomainError::AlreadyLinked { kind }),
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
                    // Transferred or replaced.
                    holder.retain(|(k, held), by| *k != kind || !(*held == p || *by == worker(w)));
                    holder.insert((kind, p), worker(w));
                    ever_linked.insert((kind, worker(w)));
                }
            }
            4 if rng.gen_bool(0.3) => {
                // The work account is deleted: every link of it goes, in one step.
                let held = holder.values().filter(|by| **by == worker(w)).count();
                let removed = store.remove_work_user(&worker(w), &worker(w), now).await.unwrap();
                assert_eq!(removed.len(), held, "seed {seed}, step {step}: the deleted account's links");
                assert!(removed.iter().all(|l| l.work == worker(w) && !l.is_active()), "seed {seed}, step {step}");
                holder.retain(|_, by| *by != worker(w));
            }
            4 => {
                // Idempotent for anyone who ever had a link (the last tombstone), refused for
                // anyone who never had one.
                let outcome = store.remove(kind, &worker(w), &worker(w), "model", None, now).await;
                match (ever_linked.contains(&(kind, worker(w))), outcome) {
                    (true, Ok(tombstone)) => assert_eq!(tombstone.work, worker(w), "seed {seed}, step {step}"),
                    (false, Err(StoreError::Domain(DomainError::LinkNotFound { .. }))) => {}
                    (ever, got) => panic!("seed {seed}, step {step}: ever linked {ever}, the store answered {got:?}"),
                }
                holder.retain(|(k, _), by| *k != kind || *by != worker(w));
            }
            5..=7 => {
                let expires = rng.gen_bool(0.7).then(|| now + Duration::days(rng.gen_range(1..40)));
                let c = match kind {
                    LinkKind::MicrosoftLearning => cert(p, CERTS[rng.gen_range(0..CERTS.len())], now, expires),
                    LinkKind::PartnerUniversity => {
                        Certification { expires_at: expires, ..achievement(p, ACHIEVEMENTS[rng.gen_range(0..ACHIEVEMENTS.len())], now) }
                    }
                };
                if store.record_certifications(std::slice::from_ref(&c), now).await.unwrap() == [Recorded::Accepted] {
                    let list = certs.entry(p).or_default();
                    list.retain(|x| (x.source, &x.id) != (c.source, &c.id));
                    list.push(c);
                }
            }
            8 if rng.gen_bool(0.3) => {
                // A Learning profile: a later MCID replaces the earlier, the same one is a duplicate.
                let mcid = crate::domain::Mcid::parse(&format!("99000000{}", rng.gen_range(0..3))).unwrap();
                let profile = crate::domain::LearningProfile { personal: personal(p), mcid: mcid.clone() };
                let expected = if mcids.get(&p) == Some(&mcid) { Recorded::Duplicate } else { Recorded::Accepted };
                assert_eq!(store.record_learning_profiles(&[profile]).await.unwrap(), [expected], "seed {seed}, step {step}");
                mcids.insert(p, mcid);
                let known: Vec<u32> = mcids.keys().copied().collect();
                let stored = store.mcids(&known.iter().map(|p| personal(*p)).collect::<Vec<_>>()).await.unwrap();
                assert_eq!(stored, known.iter().map(|p| mcids.get(p).cloned()).collect::<Vec<_>>(), "seed {seed}, step {step}");
            }
            8 => {
                now += Duration::days(rng.gen_range(1..5));
                store.expire_certifications(now).await.unwrap();
                for c in certs.values_mut().flatten() {
                    c.expired |= c.is_past_expiry(now);
                }
            }
            _ => {
                // Attach a tenant to one of two organisations (moving it out of the other).
                let (tenant, partner) = (TENANTS[rng.gen_range(0..4)], PARTNERS[rng.gen_range(0..2)]);
                store.upsert_organization(&enrolment(tenant, partner)).await.unwrap();
                enrolled.insert(tenant, partner);
            }
        }
        let mut modelled: HashMap<TenantId, Credit> = HashMap::new();
        for tenant in TENANTS {
            let tenant = TenantId::parse(tenant).unwrap();
            // Each work user: the unexpired achievements of each linked account, of that
            // link's source; then one person per area they reach, and every achievement.
            let mut reached: HashMap<&AccountKey, Vec<&Certification>> = HashMap::new();
            for ((kind, p), by) in holder.iter().filter(|(_, by)| by.tenant == tenant) {
                let theirs = certs.get(p).into_iter().flatten().filter(|c| c.source == *kind && !c.expired);
                reached.entry(by).or_default().extend(theirs);
            }
            let mut expected = Credit::default();
            for achievements in reached.values() {
                let mut areas = std::collections::BTreeSet::new();
                for c in achievements {
                    for area in catalog.areas_of(c.source, &c.id) {
                        expected.0.entry(area.clone()).or_default().certifications += 1;
                        areas.insert(area.clone());
                    }
                }
                for area in areas {
                    expected.0.entry(area).or_default().people += 1;
                }
            }
            assert_eq!(store.credit(&tenant).await.unwrap(), expected, "seed {seed}, step {step}, {}", tenant.as_str());
            modelled.insert(tenant.clone(), expected);
            if step % 97 == 0 {
                let r = recalculate(store, &tenant).await;
                assert_eq!(r.stored, r.recomputed, "seed {seed}, step {step}: drift");
            }
        }
        // Each organisation's credit is its tenants', read together: the model's sum.
        for partner in PARTNERS {
            let tenants = store.partner_tenants(&crate::domain::PartnerId::parse(partner).unwrap(), 10).await.unwrap();
            let mut model: Vec<TenantId> =
                enrolled.iter().filter(|(_, p)| **p == partner).map(|(t, _)| TenantId::parse(t).unwrap()).collect();
            model.sort();
            assert_eq!(tenants, model, "seed {seed}, step {step}: the tenants of {partner}");
            let (mut sum, mut expected) = (Credit::default(), Credit::default());
            for (tenant, credit) in tenants.iter().zip(store.credits(&tenants).await.unwrap()) {
                sum.add(&credit, 1);
                expected.add(&modelled[tenant], 1);
            }
            assert_eq!(sum, expected, "seed {seed}, step {step}: organisation {partner}");
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

fn enrolment(tenant: &str, partner: &str) -> crate::domain::Organization {
    crate::domain::Organization {
        tenant: TenantId::parse(tenant).unwrap(),
        partner_id: crate::domain::PartnerId::parse(partner).unwrap(),
        name: format!("partner {partner}"),
        updated_at: Utc::now(),
    }
}

/// An organisation holds several tenants and a tenant one organisation: enrolling it under
/// another PartnerID moves it. A person moving between two tenants of one organisation, again
/// and again, counts once in the organisation at every read (each move is one transaction; the
/// tenants' credit is read in one sled transaction or one Redis MGET — a read between two
/// separate reads is too rare a race for this test to be the proof of that).
pub async fn an_organisation_holds_several_tenants_and_a_person_counts_once_in_it<S: Store + ?Sized>(store: Arc<S>) {
    const A: &str = "aaaaaaaa-0000-4000-8000-000000000000";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000000";
    let partner = crate::domain::PartnerId::parse("4512345").unwrap();
    let other = crate::domain::PartnerId::parse("4599999").unwrap();
    store.upsert_organization(&enrolment(A, "4512345")).await.unwrap();
    store.upsert_organization(&enrolment(B, "4599999")).await.unwrap();
    assert_eq!(store.partner_tenants(&partner, 10).await.unwrap(), [TenantId::parse(A).unwrap()]);
    // Moving B: out of 4599999, into 4512345.
    store.upsert_organization(&enrolment(B, "4512345")).await.unwrap();
    let tenants = [TenantId::parse(A).unwrap(), TenantId::parse(B).unwrap()];
    assert_eq!(store.partner_tenants(&partner, 10).await.unwrap(), tenants);
    assert!(store.partner_tenants(&other, 10).await.unwrap().is_empty());
    assert_eq!(store.partner_tenants(&partner, 1).await.unwrap().len(), 1, "bounded by the limit");
    assert_eq!(store.organization(&tenants[1]).await.unwrap().unwrap().partner_id, partner);

    let now = Utc::now();
    let in_tenant = |t: &str| AccountKey::parse(t, "00000000-0000-0000-0000-0000000000aa").unwrap();
    store.record_certifications(&[cert(7, "azure-administrator-associate", now, None)], now).await.unwrap();
    store.link(NewLink { work: in_tenant(A), ..request(KIND, 0, 7) }, LinkMode::default(), now).await.unwrap();
    const MOVES: u32 = 20;
    let moves = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mover = {
        let (store, moves) = (store.clone(), moves.clone());
        tokio::spawn(async move {
            for n in 0..MOVES {
                let to = if n % 2 == 0 { B } else { A };
                let mode = LinkMode { transfer: true, ..LinkMode::default() };
                store.link(NewLink { work: in_tenant(to), ..request(KIND, 0, 7) }, mode, Utc::now()).await.unwrap();
                moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let mut reads = 0u32;
    while moves.load(std::sync::atomic::Ordering::Relaxed) < MOVES {
        let mut total = Credit::default();
        for credit in store.credits(&tenants).await.unwrap() {
            total.add(&credit, 1);
        }
        assert_eq!(total.0["infrastructure-azure"].people, 1, "read {reads}: the person once, wherever they are");
        reads += 1;
        tokio::task::yield_now().await;
    }
    mover.await.unwrap();
    assert!(reads > MOVES, "the organisation was read while the person moved ({reads} reads)");
}
