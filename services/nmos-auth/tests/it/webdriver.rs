//! Headless Chromium driven through ChromeDriver's W3C WebDriver API (plain HTTP + JSON).
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{ExpectJson, TempDir, free_listener};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Chrome {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
    screenshots: PathBuf,
}

impl Chrome {
    /// Starts ChromeDriver and a headless Chromium; screenshots go to `screenshots`.
    pub async fn start(screenshots: PathBuf) -> Chrome {
        let port = free_listener().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; scripts/test does this)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = TempDir::new("chrome");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1100,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let reply = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().expect_json(200).await;
        let session =
            reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {reply}")).to_owned();
        std::fs::create_dir_all(&screenshots).unwrap();
        Chrome { driver, base, session, http, _profile: profile, screenshots }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap().expect_json(200).await;
        assert!(reply["value"].get("error").is_none(), "WebDriver {path}: {reply}");
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_owned()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap().to_owned()
    }

    /// Waits (up to 15 s) for the page title to become `expected`, as a navigation finishes.
    pub async fn wait_for_title(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let title = self.title().await;
            if title == expected {
                return;
            }
            assert!(Instant::now() < deadline, "page title {title:?}, expected {expected:?}: {}", self.source().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 15 s) for the page to contain `text`.
    pub async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.source().await.contains(text) {
            assert!(Instant::now() < deadline, "the page never showed {text:?}: {}", self.source().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let found =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Saves a screenshot of the page as `<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(self.screenshots.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Closing the session ends Chromium; then ChromeDriver itself.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async { self.http.delete(&url).send().await.map(|_| ()) })
            })
            .join()
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
