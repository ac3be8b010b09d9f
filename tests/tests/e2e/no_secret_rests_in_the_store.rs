//! Invariants 5 and 10 at rest: after flows begun, completed, cancelled, replayed and left
//! pending — with and without request ids — nothing in the store's files (sled) or in any of
//! the deployment's keys (Redis) holds a state, a code, a PKCE verifier, a nonce, a request id
//! or a token the run used. Flows are stored under the hash of their state and sealed with it;
//! remembered answers under the hash of their request id and sealed with it.

use idlink_client::{browser, pb};
use idlink_tests::*;

/// Every byte the store holds: sled's files, or every key of the deployment on Redis, read
/// value by value (a `DUMP` LZF-compresses long strings, which would hide what it holds) and
/// dumped too.
async fn everything_at_rest(app: &TestApp) -> Vec<u8> {
    match app.redis() {
        None => {
            let mut bytes = Vec::new();
            let mut dirs = vec![app.data_dir()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        bytes.extend(std::fs::read(path).unwrap());
                    }
                }
            }
            bytes
        }
        Some((url, prefix)) => {
            let mut conn = ::redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(&mut conn).await.unwrap();
            assert!(!keys.is_empty());
            let mut bytes = Vec::new();
            for key in keys {
                bytes.extend(&key);
                let kind: String = ::redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
                let value: ::redis::Value = match kind.as_str() {
                    "string" => ::redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap(),
                    "hash" => ::redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
                    "zset" => ::redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query_async(&mut conn).await.unwrap(),
                    "stream" => ::redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut conn).await.unwrap(),
                    other => panic!("a key of type {other}"),
                };
                flatten(&value, &mut bytes);
                let dumped: Vec<u8> = ::redis::cmd("DUMP").arg(&key).query_async(&mut conn).await.unwrap();
                bytes.extend(dumped);
            }
            bytes
        }
    }
}

fn flatten(value: &::redis::Value, out: &mut Vec<u8>) {
    match value {
        ::redis::Value::BulkString(bytes) => out.extend(bytes),
        ::redis::Value::SimpleString(s) => out.extend(s.as_bytes()),
        ::redis::Value::Array(items) | ::redis::Value::Set(items) => items.iter().for_each(|v| flatten(v, out)),
        ::redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out)
        }),
        other => out.extend(format!("{other:?}").as_bytes()),
    }
}

/// `at_rest` with what its encodings hide decoded beside it: base64 runs (how sealed and
/// binary fields are written) and JSON arrays of bytes (how a `Vec<u8>` serialises), so a
/// secret kept merely encoded is found like one kept raw.
fn decoded(at_rest: &[u8]) -> Vec<u8> {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD},
    };
    let mut out = at_rest.to_vec();
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b"+/-_".contains(&b);
    for run in at_rest.split(|b| !b64(*b)).filter(|r| r.len() >= 16) {
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            for start in 0..4 {
                let body = &run[start.min(run.len())..];
                let body = &body[..body.len() - body.len() % 4];
                if let Ok(bytes) = engine.decode(body) {
                    out.extend(bytes);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(at_rest);
    for array in text.split('[').skip(1).filter_map(|rest| rest.split(']').next()) {
        let bytes: Option<Vec<u8>> = array.split(',').map(|n| n.trim().parse().ok()).collect();
        out.extend(bytes.unwrap_or_default());
    }
    out
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_code_verifier_nonce_or_request_id_is_at_rest() {
    let app = TestApp::spawn().await;
    let alex = app.client_for("alex@contoso.example").await;
    let blair = app.client_for("blair@contoso.example").await;
    let mut secrets: Vec<String> = Vec::new();
    let note = |begun: &pb::BeginLinkResponse, secrets: &mut Vec<String>| {
        secrets.extend([
            begun.state.clone(),
            query_param(&begun.authorization_url, "nonce"),
            query_param(&begun.authorization_url, "code_challenge"),
        ]);
    };

    // Completed, with request ids on both steps (their answers are remembered).
    let mut begin = begin_request(ML, "jordan@outlook.example");
    begin.request_id = "begin-completed-0001".into();
    let begun = alex.begin_link(begin.clone()).await.unwrap();
    assert_eq!(alex.begin_link(begin).await.unwrap(), begun, "a replay opens the sealed answer");
    note(&begun, &mut secrets);
    let mut complete = browser::follow_authorization(&begun.authorization_url).await.unwrap().into_complete_request();
    complete.request_id = "complete-0001".into();
    secrets.push(complete.code.clone());
    let linked = alex.complete_link(complete.clone()).await.unwrap();
    assert_eq!(alex.complete_link(complete).await.unwrap(), linked);
    // Pending: begun with a request id and never followed; followed and never completed.
    let mut begin = begin_request(PU, "jordan@outlook.example");
    begin.request_id = "begin-pending-0002".into();
    let pending = alex.begin_link(begin).await.unwrap();
    note(&pending, &mut secrets);
    let waiting = blair.begin_link(begin_request(ML, "sam@outlook.example")).await.unwrap();
    note(&waiting, &mut secrets);
    let unused = browser::follow_authorization(&waiting.authorization_url).await.unwrap();
    secrets.push(unused.code.clone().unwrap());
    // Cancelled at the provider.
    let cancelled = blair.begin_link(begin_request(PU, "sam@outlook.example")).await.unwrap();
    note(&cancelled, &mut secrets);
    let error = pb::CompleteLinkRequest { state: cancelled.state.clone(), error: Some("access_denied".into()), ..Default::default() };
    assert!(blair.complete_link(error).await.is_err());
    // A durable write last: sled flushes everything written before it.
    let tombstone = alex
        .remove_link(pb::RemoveLinkRequest {
            kind: ML as i32,
            reason: "done".into(),
            request_id: "remove-0003".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    secrets.extend(app.idp.secrets_seen()); // codes, verifiers, nonces, tokens it handed out or received
    secrets.extend(["begin-completed-0001", "complete-0001", "begin-pending-0002", "remove-0003"].map(String::from));
    let at_rest = decoded(&everything_at_rest(&app).await);
    // The scan sees the store's contents: the link and its tombstone are there.
    let found = |needle: &str| at_rest.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(found(&linked.id) && found(&tombstone.id), "the scan reads what the store holds");
    assert!(secrets.len() > 20, "{} secrets to look for", secrets.len());
    let kept = secrets_in(&at_rest, &secrets);
    assert!(kept.is_empty(), "secrets starting {:?} are at rest", kept.iter().map(|s| &s[..6]).collect::<Vec<_>>());
}
