//! The reference portal, really served, and a real headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromedriver`, which `.ci/run` installs) to click through it.

use std::{path::PathBuf, process::Stdio, time::Duration};

use thirtyfour::{ChromiumLikeCapabilities, DesiredCapabilities, WebDriver, prelude::*};

use crate::TestApp;

/// idlinkd, its development provider and the portal, wired together on loopback.
pub struct PortalApp {
    pub app: TestApp,
    /// Where the browser reaches the portal, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for PortalApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl PortalApp {
    pub async fn spawn(adjust: impl FnOnce(&mut idlink_service::config::Settings)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = TestApp::spawn_for_portal(&url, adjust).await;
        let mut config = idlink_portal::dev_config(&app.endpoint(), app.idp.base_url(), &url);
        config.client_secret = secrecy::SecretString::from(app.portal_client.client_secret.clone());
        config.training_url = format!("{url}/training-placeholder");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = idlink_portal::serve(listener, config, async move {
                let _ = rx.await;
            })
            .await
            {
                panic!("the portal stopped: {e:#}");
            }
        });
        Self { app, url, shutdown: Some(tx) }
    }
}

/// One browser (its own profile: cookies, storage) through its own chromedriver.
pub struct Browser {
    pub driver: WebDriver,
    chromedriver: tokio::process::Child,
}

impl Browser {
    /// A headless Chromium whose `Accept-Language` is `languages` (e.g. "fr-FR,fr"). Without
    /// Chromium and chromedriver installed: `None`, said as SKIPPED (a failure under CI=true).
    pub async fn start(languages: &str) -> Option<Self> {
        if !std::path::Path::new(&chromium()).exists() || !std::path::Path::new(&chromedriver()).exists() {
            return idlink_service::test_support::unavailable(&format!(
                "no {} and {} (apt-get install chromium chromium-driver)",
                chromium(),
                chromedriver()
            ));
        }
        let port = crate::daemon::free_port();
        let chromedriver = tokio::process::Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is installed");
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&chromium()).unwrap();
        for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1000"] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--lang={}", languages.split(',').next().unwrap_or("en-US"))).unwrap();
        caps.add_experimental_option("prefs", serde_json::json!({ "intl.accept_languages": languages })).unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match WebDriver::new(&endpoint, caps.clone()).await {
                Ok(driver) => return Some(Self { driver, chromedriver }),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver on {endpoint} never started a session: {last:?}");
    }

    pub async fn quit(mut self) {
        let _ = self.driver.clone().quit().await;
        let _ = self.chromedriver.kill().await;
    }

    pub async fn open(&self, url: &str) {
        self.driver.goto(url).await.unwrap();
    }

    /// Clicks the button or link whose text is `text`, exactly, and waits for the page it leads
    /// to (every control of the panel navigates).
    pub async fn click(&self, text: &str) {
        let xpath = control(text);
        let element = self.driver.find(By::XPath(xpath)).await.unwrap_or_else(|e| panic!("no button {text:?}: {e}"));
        self.navigating(element).await;
    }

    /// Clicks `element`, then waits until its page is gone and the next one has loaded.
    async fn navigating(&self, element: WebElement) {
        let page = self.driver.find(By::Tag("html")).await.unwrap();
        element.click().await.unwrap();
        for _ in 0..200 {
            if !page.is_present().await.unwrap_or(false) {
                let ready = self.driver.execute("return document.readyState", Vec::new()).await.unwrap();
                if ready.json().as_str() == Some("complete") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the click led nowhere within 5 s");
    }

    /// Clicks the button `text` inside the section `id` (a box of the panel).
    pub async fn click_in(&self, id: &str, text: &str) {
        let xpath = format!("//section[@id={}]//button[normalize-space()={}]", xpath_literal(id), xpath_literal(text));
        let element = self.driver.find(By::XPath(xpath)).await.unwrap_or_else(|e| panic!("no button {text:?} in #{id}: {e}"));
        self.navigating(element).await;
    }

    /// The visible text of the element `id` (a box of the panel).
    pub async fn text_of(&self, id: &str) -> String {
        self.driver.find(By::Id(id)).await.unwrap().text().await.unwrap()
    }

    pub async fn has_button(&self, text: &str) -> bool {
        let xpath = control(text);
        !self.driver.find_all(By::XPath(xpath)).await.unwrap().is_empty()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.driver.find(By::Tag("body")).await.unwrap().text().await.unwrap()
    }

    pub async fn url(&self) -> url::Url {
        self.driver.current_url().await.unwrap()
    }

    /// What the page keeps in `localStorage` (nothing, ever).
    pub async fn local_storage_len(&self) -> u64 {
        self.driver.execute("return window.localStorage.length", Vec::new()).await.unwrap().json().as_u64().unwrap()
    }

    /// Writes a screenshot to `target/browser/<name>.png`, for whoever looks at a failure.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        self.driver.screenshot(&path).await.unwrap();
        path
    }

    /// The work sign-in as `login`, picked on the development provider's own page.
    pub async fn sign_in(&self, portal: &str, login: &str) {
        self.open(&format!("{portal}/profile")).await;
        self.click(&self.sign_in_label().await).await;
        self.click(login).await;
        assert_eq!(self.url().await.path(), "/profile", "back on the panel after signing in");
    }

    async fn sign_in_label(&self) -> String {
        self.driver.find(By::Id("sign-in")).await.unwrap().text().await.unwrap()
    }
}

/// The XPath of a button or link whose text is `text`, exactly.
fn control(text: &str) -> String {
    format!("//*[(self::button or self::a) and normalize-space()={}]", xpath_literal(text))
}

fn xpath_literal(text: &str) -> String {
    if text.contains('\'') { format!("\"{text}\"") } else { format!("'{text}'") }
}

fn chromium() -> String {
    std::env::var("IDLINK_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("IDLINK_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}
