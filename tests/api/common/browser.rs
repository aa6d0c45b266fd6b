//! A headless Chromium driven through chromedriver's W3C WebDriver protocol, over plain HTTP.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_chromedriver() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("HOOKRELAY_CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub struct Browser {
    driver: Child,
    session: String,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    /// `None` (with a printed notice) when chromedriver is not installed, unless
    /// HOOKRELAY_REQUIRE_BROWSER=1 makes that a failure.
    pub async fn start() -> Option<Browser> {
        let Some(chromedriver) = find_chromedriver() else {
            if std::env::var("HOOKRELAY_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("HOOKRELAY_REQUIRE_BROWSER=1 but chromedriver is not installed");
            }
            eprintln!("skipped: install chromium and chromium-driver to run the dashboard tests");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("hookrelay-chrome-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("HOOKRELAY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let mut browser = Browser {
            driver,
            session: String::new(),
            base,
            http,
        };
        let created = browser
            .command("POST", "/session", Some(capabilities))
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .expect("a WebDriver session id")
            .to_owned();
        Some(browser)
    }

    async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        match response["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", response["value"]["message"])),
            None => Ok(response["value"].clone()),
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"))
    }

    async fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Finds `css` and runs an element command on it, finding it again when the page replaced
    /// the element in between (the delivery log re-renders while it polls).
    async fn on_element(
        &self,
        css: &str,
        method: &str,
        action: &str,
        body: Option<Value>,
    ) -> Value {
        let mut last_error = String::new();
        for _ in 0..40 {
            let id = self.element(css).await;
            let path = format!("/session/{}/element/{id}{action}", self.session);
            match self.try_command(method, &path, body.clone()).await {
                Ok(value) => return value,
                Err(error) if error.starts_with("stale element reference") => {
                    last_error = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("WebDriver {method} {action} on {css}: {error}"),
            }
        }
        panic!("{css} kept going stale: {last_error}")
    }

    pub async fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.session_command(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits until the expression is truthy in the page, failing the test after 15 s.
    pub async fn wait_until(&self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let script = format!("return Boolean({expression});");
        while self.eval(&script, json!([])).await != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        self.wait_until(&format!("document.querySelector({css:?})"), css)
            .await;
        let found = self
            .session_command(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .expect("an element id")
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, "POST", "/click", None).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "POST", "/clear", None).await;
        self.on_element(css, "POST", "/value", Some(json!({ "text": text })))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let text = self.on_element(css, "GET", "/text", None).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    pub async fn value(&self, css: &str) -> String {
        let value = self.on_element(css, "GET", "/property/value", None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    pub async fn count(&self, css: &str) -> u64 {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or_default()
    }

    /// Saves a PNG under target/screenshots/, for a person to look at.
    pub async fn screenshot(&self, name: &str) {
        let encoded = self.session_command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("valid base64");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
    }

    pub async fn close(mut self) {
        self.session_command("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
