//! Invariants 1 and 2 under concurrency: of N racing completions exactly one wins, the
//! others get ALREADY_EXISTS without learning who holds the account, and the indexes agree.
//! Partner University links, which refuse an account linked elsewhere (a Learning completion
//! moves it instead: `on_linked_elsewhere`).

use futures_util::future::join_all;
use idlink_client::{ClientError, pb};
use idlink_tests::*;
use tonic::Code;

const RACERS: usize = 64;
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_work_users_racing_for_one_personal_account() {
    let app = TestApp::spawn().await;
    for round in 0..ROUNDS {
        let personal_login = format!("contested{round}@outlook.example");
        let personal = app.new_personal(&personal_login);
        // Every racer has begun and signed in; only the completions race.
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let (key, client) = app.new_work_user(&format!("racer{i}.r{round}@contoso.example")).await;
            let complete = begin_and_sign_in(&client, PU, &personal_login).await;
            racers.push((key, client, complete));
        }
        let outcomes = join_all(racers.iter().map(|(_, client, complete)| client.complete_link(complete.clone()))).await;

        let mut winners = Vec::new();
        for ((key, _, _), outcome) in racers.iter().zip(outcomes) {
            match outcome {
                Ok(link) => winners.push((key.clone(), link)),
                Err(ClientError::Rpc { code: Code::AlreadyExists, reason, message, .. }) => {
                    assert_eq!(reason, "ACCOUNT_LINKED_ELSEWHERE");
                    assert!(!message.contains("racer") && !message.contains(&personal.object.as_str()[..8]), "no holder leaks: {message}");
                }
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let (winner, link) = &winners[0];
        let holder =
            app.store.active_link_of_personal(idlink_service::domain::LinkKind::PartnerUniversity, &personal).await.unwrap().unwrap();
        assert_eq!((&holder.work, holder.id.as_str()), (winner, link.id.as_str()));
        let report = app.integrity().await;
        assert_eq!(report.active_links, round + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_work_user_racing_several_personal_accounts_of_one_kind() {
    let app = TestApp::spawn().await;
    for round in 0..ROUNDS {
        let (_, client) = app.new_work_user(&format!("greedy.r{round}@contoso.example")).await;
        let mut completes = Vec::new();
        for i in 0..8 {
            let login = format!("p{i}.r{round}@outlook.example");
            app.new_personal(&login);
            completes.push(begin_and_sign_in(&client, PU, &login).await);
        }
        let outcomes = join_all(completes.into_iter().map(|c| client.complete_link(c))).await;
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}");
        for outcome in outcomes.into_iter().filter(Result::is_err) {
            assert_refused(outcome, Code::AlreadyExists, "ALREADY_LINKED");
        }
        assert_eq!(client.get_links().await.unwrap().len(), 1);
        assert_eq!(app.integrity().await.active_links, round + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_flow_completed_concurrently_links_once() {
    let app = TestApp::spawn().await;
    let client = app.client_for("alex@contoso.example").await;
    let complete = begin_and_sign_in(&client, ML, "jordan@outlook.example").await;
    let outcomes = join_all((0..16).map(|_| client.complete_link(complete.clone()))).await;
    let winners: Vec<pb::Link> = outcomes.iter().filter_map(|o| o.as_ref().ok().cloned()).collect();
    assert_eq!(winners.len(), 1);
    for outcome in outcomes.into_iter().filter(Result::is_err) {
        assert_refused(outcome, Code::NotFound, "FLOW_NOT_FOUND");
    }
    assert_eq!(client.get_links().await.unwrap(), winners, "one link: the winner's");
    assert_eq!(app.integrity().await.active_links, 1);
}

/// Where Learning moves an account linked elsewhere, racing completions each move it in turn:
/// every one is answered, one work user holds it in the end, and the indexes agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_learning_completions_each_move_the_account_and_one_holds_it() {
    let app = TestApp::spawn_with(without_association_limit).await;
    let personal = app.new_personal("moving@outlook.example");
    let mut racers = Vec::new();
    for i in 0..16 {
        let (key, client) = app.new_work_user(&format!("mover{i}@contoso.example")).await;
        let complete = begin_and_sign_in(&client, ML, "moving@outlook.example").await;
        racers.push((key, client, complete));
    }
    let outcomes = join_all(racers.iter().map(|(_, client, complete)| client.complete_link(complete.clone()))).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let holder = app.store.active_link_of_personal(idlink_service::domain::LinkKind::MicrosoftLearning, &personal).await.unwrap().unwrap();
    let holding: Vec<_> = racers.iter().filter(|(key, _, _)| *key == holder.work).collect();
    assert_eq!(holding.len(), 1);
    for (key, client, _) in &racers {
        assert_eq!(client.get_links().await.unwrap().len(), usize::from(*key == holder.work), "only the holder has a link");
    }
    let integrity = app.integrity().await;
    assert_eq!((integrity.active_links, integrity.problems.len()), (1, 0));
}
