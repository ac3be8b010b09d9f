//! "Your learning" in a real browser: a headless Chromium clicks through the reference portal
//! against the real idlinkd and the development provider's own sign-in pages. After every
//! flow the address bar holds no `code` or `state` and `localStorage` is empty; a screenshot
//! of each final state is written under `target/browser/`.

use idlink_client::pb;
use idlink_tests::portal::{Browser, PortalApp};

const ALEX: &str = "alex@contoso.example";
const JORDAN: &str = "jordan@outlook.example";

/// The hygiene every flow ends with: on the panel, nothing secret in the address bar or in
/// the page's storage.
async fn assert_clean(browser: &Browser, screenshot: &str) {
    let url = browser.url().await;
    browser.screenshot(screenshot).await;
    assert_eq!(url.path(), "/profile", "{screenshot}: back on the panel");
    assert!(url.query_pairs().all(|(k, _)| k != "code" && k != "state"), "{screenshot}: {url}");
    assert_eq!(browser.local_storage_len().await, 0, "{screenshot}: localStorage");
    let text = browser.text().await;
    for leak in ["code=", "state=", "eyJ"] {
        assert!(!text.contains(leak), "{screenshot}: the page shows {leak}: {text}");
    }
}

/// Every button and link is reached by Tab and says what it does; the page says its language.
async fn assert_keyboard_reachable_and_labelled(browser: &Browser, lang: &str) {
    let html_lang = browser.driver.execute("return document.documentElement.lang", Vec::new()).await.unwrap();
    assert_eq!(html_lang.json().as_str(), Some(lang));
    let controls = browser
        .driver
        .execute(
            "return Array.from(document.querySelectorAll('button, a[href]')).map(e => (e.getAttribute('aria-label') || e.textContent).trim())",
            Vec::new(),
        )
        .await
        .unwrap();
    let labels: Vec<String> = controls.convert().unwrap();
    assert!(labels.len() >= 5 && labels.iter().all(|l| !l.is_empty()), "{labels:?}");
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..labels.len() + 2 {
        browser.driver.action_chain().send_keys(thirtyfour::Key::Tab).perform().await.unwrap();
        let focused = browser
            .driver
            .execute("return (document.activeElement.getAttribute('aria-label') || document.activeElement.textContent).trim()", Vec::new())
            .await
            .unwrap();
        reached.insert(focused.json().as_str().unwrap_or_default().to_owned());
    }
    for label in &labels {
        assert!(reached.contains(label), "{label:?} is never reached by Tab: {reached:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_user_links_and_removes_both_kinds_by_clicking() {
    let portal = PortalApp::spawn(|_| {}).await;
    let jordan = portal.app.idp.user(JORDAN).unwrap().key;
    portal.app.record_earned(JORDAN, "azure-administrator-associate").await;
    let profile = pb::LearningProfile {
        personal_account: Some(pb::AccountRef { tenant_id: jordan.tenant.as_str().into(), object_id: jordan.object.as_str().into() }),
        mcid: "990123456".into(),
    };
    portal.app.app_client("learning-feed").await.record_learning_profiles(futures_util::stream::iter(vec![profile])).await.unwrap();

    let Some(browser) = Browser::start("en-US,en").await else { return };
    browser.sign_in(&portal.url, ALEX).await;
    let text = browser.text().await;
    for words in [
        "Your learning",
        "Microsoft training & assessments",
        "Connect a Microsoft Account to access Microsoft training and assessments through Partner University.",
        "Microsoft exams and certifications",
        "Associate a Microsoft account that you have used to complete exams and certifications through Microsoft Learning so that we can give credit to your organization.",
    ] {
        assert!(text.contains(words), "{words:?} missing from {text}");
    }
    assert_keyboard_reachable_and_labelled(&browser, "en").await;

    // Partner University: the button, the provider's own page, the personal account.
    browser.click("Get Partner University access").await;
    assert!(browser.text().await.contains("Pick an account"), "the development provider's sign-in page");
    browser.click(JORDAN).await;
    assert_clean(&browser, "pu-linked").await;
    let pu = browser.text_of("pu").await;
    assert!(pu.contains(JORDAN) && pu.contains("view training") && pu.contains("remove access"), "{pu}");

    // Learning by the shortcut: the Partner University account, without picking it again.
    let shortcut = format!("Use {JORDAN} to associate my Microsoft Learning account");
    browser.click(&shortcut).await;
    assert_clean(&browser, "ml-linked").await;
    let ml = browser.text_of("ml").await;
    assert!(ml.contains(JORDAN) && ml.contains("990123456"), "the account and its MCID: {ml}");
    assert!(ml.contains("Azure Administrator Associate") || ml.contains("azure-administrator-associate"), "{ml}");
    assert!(!browser.has_button(&shortcut).await, "no shortcut once Learning is linked");
    browser.screenshot("panel").await;

    // The session cookie: HttpOnly, SameSite=Lax (and Secure outside development).
    let cookies = browser.driver.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name == "idlink_portal").expect("a session cookie");
    assert_eq!(session.http_only, Some(true));
    assert_eq!(session.same_site, Some(thirtyfour::cookie::SameSite::Lax));
    assert_eq!(cookies.len(), 1, "nothing else is kept in the browser: {cookies:?}");

    // A strict Content-Security-Policy and no script at all; a form without the session's
    // CSRF token changes nothing, even sent with the session's cookie.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("idlink_portal={}", session.value);
    let page = http.get(format!("{}/profile", portal.url)).header("cookie", &cookie).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Your learning") && !html.contains("<script"), "the signed-in panel, without script");
    let forged = http.post(format!("{}/profile/remove", portal.url)).header("cookie", &cookie).form(&[("kind", "pu"), ("csrf", "forged")]);
    assert_eq!(forged.send().await.unwrap().status(), reqwest::StatusCode::SEE_OTHER);
    let alex = portal.app.idp.user(ALEX).unwrap().key;
    assert_eq!(portal.app.store.active_links(&alex).await.unwrap().len(), 2, "a forged form removes nothing");

    // "remove access" returns each box to unlinked.
    browser.click_in("pu", "remove access").await;
    assert_clean(&browser, "pu-removed").await;
    assert!(browser.text_of("pu").await.contains("Get Partner University access"));
    browser.click_in("ml", "remove access").await;
    assert_clean(&browser, "ml-removed").await;
    let ml = browser.text_of("ml").await;
    assert!(ml.contains("Associate Microsoft Learning account"), "{ml}");
    assert!(portal.app.store.active_links(&alex).await.unwrap().is_empty());

    // The language switch, kept for the session, over the browser's English.
    browser.click("Français").await;
    assert_clean(&browser, "switched-to-french").await;
    assert!(browser.text().await.contains("Obtenir l'accès à Partner University"));
    browser.open(&format!("{}/profile", portal.url)).await;
    assert_keyboard_reachable_and_labelled(&browser, "fr").await;
    browser.quit().await;
}

/// The callback URL the provider would send the browser to after `login` signs in: the link
/// on its account page, followed one hop without a browser.
async fn callback_for(browser: &Browser, login: &str) -> String {
    let link = browser.driver.find(thirtyfour::By::LinkText(login)).await.unwrap().attr("href").await.unwrap().unwrap();
    let page = browser.url().await;
    let authorize = page.join(&link).unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = http.get(authorize).send().await.unwrap();
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_show_idlinks_words_and_the_next_step() {
    let portal = PortalApp::spawn(|_| {}).await;
    let Some(browser) = Browser::start("fr-FR,fr").await else { return };
    browser.sign_in(&portal.url, ALEX).await;
    assert!(browser.text().await.contains("Votre apprentissage"));

    // A work account chosen on the personal side: idlink's French words, and the way out.
    browser.click("Obtenir l'accès à Partner University").await;
    browser.click(ALEX).await;
    assert_clean(&browser, "not-a-personal-account-fr").await;
    let pu = browser.text_of("pu").await;
    assert!(pu.contains("Il s'agit d'un compte professionnel ou scolaire"), "{pu}");
    assert!(browser.has_button("Se connecter avec votre compte personnel").await);

    // Cancelled at the provider: nothing linked, try again.
    browser.click("Se connecter avec votre compte personnel").await;
    browser.click("Cancel").await;
    assert_clean(&browser, "cancelled").await;
    let pu = browser.text_of("pu").await;
    assert!(pu.contains("La connexion avec votre compte Microsoft personnel a été annulée"), "{pu}");
    assert!(browser.has_button("Réessayer").await);

    // A callback opened in another browser is refused there, and still completes here.
    browser.click("Réessayer").await;
    let callback = callback_for(&browser, JORDAN).await;
    let Some(other) = Browser::start("fr-FR,fr").await else { return };
    other.sign_in(&portal.url, ALEX).await;
    other.open(&callback).await;
    assert_clean(&other, "callback-in-another-browser").await;
    assert!(other.text().await.contains("Cette connexion n'a pas été démarrée dans ce navigateur"), "{}", other.text().await);
    other.quit().await;
    browser.open(&callback).await;
    assert_clean(&browser, "linked-after-the-other-browser").await;
    assert!(browser.text_of("pu").await.contains(JORDAN));

    // The same callback again: idlink's words for a spent flow.
    browser.open(&callback).await;
    assert_clean(&browser, "replayed-callback").await;
    assert!(browser.text().await.contains("Ce lien de connexion n'est plus valide"), "{}", browser.text().await);

    // An expired flow: begun, then eleven minutes at the provider.
    browser.click("Associer un compte Microsoft Learning").await;
    portal.app.clock.advance(chrono::Duration::minutes(11));
    browser.click(JORDAN).await;
    assert_clean(&browser, "flow-expired").await;
    let ml = browser.text_of("ml").await;
    assert!(ml.contains("La connexion a pris trop de temps et a expiré"), "{ml}");
    assert!(browser.has_button("Recommencer").await);

    // The limit on associations: linked, removed, and linked again at once names the date.
    browser.click("Recommencer").await;
    browser.click(JORDAN).await;
    assert!(browser.text_of("ml").await.contains(JORDAN));
    browser.click_in("ml", "supprimer l'accès").await;
    browser.click("Associer un compte Microsoft Learning").await;
    browser.click(JORDAN).await;
    assert_clean(&browser, "association-limited").await;
    let date = idlink_service::api::status::Locale::Fr.date(portal.app.now() + chrono::Duration::days(30));
    let ml = browser.text_of("ml").await;
    assert!(ml.contains(&format!("Votre prochaine date disponible pour une nouvelle association est le {date}")), "{ml}");
    assert!(ml.contains(&format!("Prochaine date disponible pour une nouvelle association : {date}")), "and the box says it: {ml}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_attempts_say_when_to_try_again() {
    let portal = PortalApp::spawn(|settings| {
        settings.limits.begin_per_user_burst = 1;
        settings.limits.begin_per_user_per_minute = 1;
    })
    .await;
    let Some(browser) = Browser::start("ko-KR,ko").await else { return };
    browser.sign_in(&portal.url, ALEX).await;
    browser.click("Partner University 액세스 권한 받기").await;
    browser.click("Cancel").await;
    browser.click("다시 시도").await;
    assert_clean(&browser, "rate-limited-ko").await;
    let pu = browser.text_of("pu").await;
    assert!(pu.contains("로그인 시도가 너무 많습니다"), "idlink's Korean words: {pu}");
    assert!(pu.contains("초 후에 다시 시도할 수 있습니다"), "and the delay: {pu}");
    assert_keyboard_reachable_and_labelled(&browser, "ko").await;
    browser.quit().await;
}
