//! The Learning feed's batch job: a 100k-line certification file streamed through the
//! `idlink` CLI, counts right, and the credit follows.

use std::io::Write;

use idlink_tests::*;

const CERTS: [&str; 6] = [
    "azure-administrator-associate",
    "azure-solutions-architect-expert",
    "m365-administrator-expert",
    "security-operations-analyst-associate",
    "azure-developer-associate",
    "power-platform-developer-associate",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_line_file_imports_with_the_right_counts() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certifications.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "personal_tenant_id,personal_object_id,certification_id,earned_at,expires_at").unwrap();
    let consumer = jordan.tenant.as_str();
    let (mut lines, mut valid) = (0, Vec::new());
    for person in 0..24_500u64 {
        for k in 0..4 {
            let line = format!(
                "{consumer},00000000-0000-4000-8000-{person:012x},{},2026-01-15T09:00:00Z,2029-01-15T09:00:00Z",
                CERTS[(person as usize + k) % 6]
            );
            writeln!(file, "{line}").unwrap();
            valid.push(line);
            lines += 1;
        }
    }
    writeln!(file, "{consumer},{},azure-administrator-associate,2026-02-01T00:00:00Z,", jordan.object.as_str()).unwrap();
    // The optional sixth column: a Partner University assessment, and a source nobody knows.
    let jordan_object = jordan.object.as_str();
    writeln!(file, "{consumer},{jordan_object},pu-infrastructure-technical-assessment,2026-02-01T00:00:00Z,,partner-university").unwrap();
    writeln!(file, "{consumer},{jordan_object},azure-developer-associate,2026-02-01T00:00:00Z,,exam-vendor").unwrap();
    for i in 0..1000 {
        writeln!(file, "{}", valid[i * 97]).unwrap(); // duplicates
    }
    for i in 0..500 {
        writeln!(file, "{consumer},00000000-0000-4000-8000-{i:012x},retired-exam-{i},2026-01-15T09:00:00Z,").unwrap();
        writeln!(file, "{consumer},not enough fields").unwrap();
    }
    lines += 1 + 2 + 1000 + 1000;
    file.flush().unwrap();
    drop(file);
    assert_eq!(lines, 100_003);

    let output = app.idlink().args(["--as-app", "learning-feed", "--json", "certs", "import"]).arg(&path).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["lines"], 100_004, "{summary}"); // with the header
    assert_eq!(
        (summary["accepted"].as_u64(), summary["duplicates"].as_u64(), summary["rejected"].as_u64()),
        (Some(98_002), Some(1000), Some(1001))
    );
    let reasons: std::collections::BTreeSet<_> =
        summary["rejections"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, ["MALFORMED", "SOURCE_NOT_RECOGNISED", "UNKNOWN_CERTIFICATION"].map(str::to_owned).into());

    // The imported certification counts the moment Jordan's account is linked, the assessment
    // the moment it is linked for Partner University: one person, two achievements.
    let alex = app.client_for("alex@contoso.example").await;
    let infrastructure = |credit: idlink_client::pb::OrganizationCredit| {
        credit.areas.iter().find(|a| a.area_id == "infrastructure-azure").map(|a| (a.people, a.certifications))
    };
    link(&alex, ML, "jordan@outlook.example").await.unwrap();
    assert_eq!(infrastructure(alex.organization_credit(idlink_service::oidc::devidp::CONTOSO_TENANT).await.unwrap()), Some((1, 1)));
    link(&alex, PU, "jordan@outlook.example").await.unwrap();
    assert_eq!(infrastructure(alex.organization_credit(idlink_service::oidc::devidp::CONTOSO_TENANT).await.unwrap()), Some((1, 2)));
}

/// Runs the `idlink` CLI against `app` with `args`, answering its JSON output.
async fn idlink_json(app: &TestApp, args: &[&str]) -> serde_json::Value {
    let output = app.idlink().args(["--json"]).args(args).output().await.unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_profiles_import_by_column_name_and_the_person_reads_their_mcid() {
    let app = TestApp::spawn().await;
    let jordan = app.idp.user("jordan@outlook.example").unwrap().key;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.csv");
    // As spreadsheets write it: a byte-order mark, columns in their own order, quoting, an
    // extra column, and a line that is not a profile.
    let object = jordan.object.as_str();
    let csv = format!(
        "\u{feff}mcid,\"display name\",personal_object_id\r\n990123456,\"Jordan, J.\",{object}\r\n\"99O1\",x,{object}\r\n990123456,\"Jordan\",{object}\r\n"
    );
    std::fs::write(&path, csv).unwrap();
    let summary = idlink_json(&app, &["--as-app", "learning-feed", "learning-feed", "profiles", "import", path.to_str().unwrap()]).await;
    assert_eq!(
        (summary["lines"].as_u64(), summary["accepted"].as_u64(), summary["duplicates"].as_u64()),
        (Some(4), Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["rejections"][0]["line"], 3, "{summary}");
    assert_eq!(summary["rejections"][0]["reason"], "INVALID_ARGUMENT", "{summary}");

    // A header without the columns it needs stops before anything is sent.
    std::fs::write(&path, "object,mcid\nx,990123456\n").unwrap();
    let output = app
        .idlink()
        .args(["--as-app", "learning-feed"])
        .args(["learning-feed", "profiles", "import", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("personal_object_id"), "{}", String::from_utf8_lossy(&output.stderr));

    link(&app.client_for("alex@contoso.example").await, ML, "jordan@outlook.example").await.unwrap();
    app.record_earned("jordan@outlook.example", "azure-administrator-associate").await;
    let mine = idlink_json(&app, &["--user", "alex@contoso.example", "certs", "mine"]).await;
    assert_eq!(mine["mcid"], "990123456", "{mine}");
    assert_eq!(mine["certifications"][0]["title"], "Microsoft Certified: Azure Administrator Associate", "{mine}");
    assert_eq!(mine["certifications"][0]["credits"][0]["area_id"], "infrastructure-azure", "{mine}");
    assert_eq!(mine["certifications"][0]["not_counting"], "", "{mine}");
}

/// A certification file as a spreadsheet writes it — a byte-order mark, CRLF, a header with its
/// columns in its own order (and one more), quoted fields with commas, quotes and a line break —
/// records what the plain file records; a malformed row is reported by its line, the rest go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spreadsheets_certification_file_imports_as_the_plain_one_does() {
    let person = |n: u32| format!("00000000-0000-4000-8000-{n:012x}");
    let consumer = idlink_client::CONSUMER_TENANT;
    let plain = format!(
        "{consumer},{},azure-administrator-associate,2026-01-15T09:00:00Z,2029-01-15T09:00:00Z\n\
         {consumer},{},azure-developer-associate,2026-02-01T00:00:00Z,\n",
        person(1),
        person(2)
    );
    let spreadsheet = format!(
        "\u{feff}certification_id,\"earned_at\",personal_object_id,expires_at,notes\r\n\
         \"azure-administrator-associate\",2026-01-15T09:00:00Z,{},2029-01-15T09:00:00Z,\"said \"\"renew\"\", twice\"\r\n\
         this,is,not,a,row\r\n\
         azure-developer-associate,2026-02-01T00:00:00Z,\"{}\",,\"two\r\nlines\"\r\n",
        person(1),
        person(2)
    );
    let json = |n: u32, id: &str, earned: &str, expires: &str| {
        serde_json::json!({"personal_account": {"tenant_id": consumer, "object_id": person(n)}, "certification_id": id,
                           "earned_at": earned, "expires_at": expires})
        .to_string()
    };
    let lines = format!(
        "{}\n\n{{not json\n{}\n",
        json(1, "azure-administrator-associate", "2026-01-15T09:00:00Z", "2029-01-15T09:00:00Z"),
        json(2, "azure-developer-associate", "2026-02-01T00:00:00Z", "")
    );
    let mut recorded = Vec::new();
    for (name, text) in [("plain.csv", plain), ("spreadsheet.csv", spreadsheet), ("feed.jsonl", lines)] {
        let app = TestApp::spawn().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let summary = idlink_json(&app, &["--as-app", "learning-feed", "certs", "import", path.to_str().unwrap()]).await;
        assert_eq!(summary["accepted"], 2, "{name}: {summary}");
        let mut achievements = Vec::new();
        for n in [1, 2] {
            let key = idlink_service::domain::AccountKey::parse(consumer, &person(n)).unwrap();
            achievements.push(app.store.achievements(&key).await.unwrap());
        }
        recorded.push((achievements, summary));
    }
    assert_eq!(recorded[0].0, recorded[1].0, "the same achievements, however the file was written");
    assert_eq!(recorded[0].0, recorded[2].0, "JSON lines too");
    let jsonl = &recorded[2].1;
    assert_eq!((jsonl["lines"].as_u64(), jsonl["rejections"][0]["line"].as_u64()), (Some(4), Some(3)), "{jsonl}");
    let spreadsheet = &recorded[1].1;
    assert_eq!(spreadsheet["rejected"], 1, "{spreadsheet}");
    assert_eq!(
        (spreadsheet["rejections"][0]["line"].as_u64(), spreadsheet["rejections"][0]["reason"].as_str()),
        (Some(3), Some("MALFORMED"))
    );
    assert_eq!(recorded[0].1["rejected"], 0);
}
