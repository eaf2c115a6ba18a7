//! A real browser for the dashboard's tests: Debian's `chromedriver` on a free loopback port,
//! driving headless `chromium` with a fresh profile, through the few W3C WebDriver commands the
//! tests need (open a page, find elements, read their text, click, type, run a line of script,
//! run a script in every new page before its own, take a screenshot).
//!
//! The client is these hundred lines over the hyper client the tests already link rather than
//! fantoccini or thirtyfour: they would bring a second HTTP stack and more to compile on every
//! test build, for the same eight commands.
//!
//! chromedriver runs in a process group of its own, so dropping the [`Browser`] ends the session
//! (which closes chromium) and then kills that group by its id, chromium included, even when the
//! test failed half-way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long a wait for the page gives it: generous, for a loaded two-core machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    client: HyperClient<HttpConnector, Full<Bytes>>,
    profile: tempfile::TempDir,
}

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on (bound and released; chromedriver, or a restarted
/// daemon, takes it next).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Browser {
    /// Starts chromedriver and a headless chromium session with a `width` x `height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let install = "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)";
        let chromium = on_path(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("`chromium` must be installed {install}"));
        let chromedriver = on_path(&["chromedriver"])
            .unwrap_or_else(|| panic!("`chromedriver` must be installed {install}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).expect("log");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut browser = Self {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            client: HyperClient::builder(TokioExecutor::new()).build_http(),
            profile,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(status) = browser.command("GET", "/status", None).await
                && status["ready"] == true
            {
                break;
            }
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("chromedriver exited with {exit}:\n{}", browser.driver_log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready in {WAIT:?}:\n{}",
                browser.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let user_data = browser.profile.path().join("profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", user_data.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let created = browser
            .command("POST", "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", browser.driver_log()));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// One WebDriver command; the answer's `value`, or the driver's error.
    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .expect("request");
        let failed = |e: String| format!("{method} {path}: {e}");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let ok = response.status().is_success();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            // The W3C error code (`no such element`, ...) and the driver's message.
            Err(failed(format!("{}: {}", value["error"], value["message"])))
        }
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = (method != "GET").then_some(body);
        self.command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url }))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.session(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await
        .expect("resize the window");
    }

    /// The element `css` selects now, if any.
    async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .session(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The rendered text of the element `css` selects ("" when hidden), if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css).await?;
        let text = self
            .session("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .ok()?;
        text.as_str().map(str::to_owned)
    }

    /// Tries `attempt` every 100ms until it gives `Some`, for at most [`WAIT`].
    pub async fn poll<T>(mut attempt: impl AsyncFnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(done) = attempt().await {
                return Some(done);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` satisfies `done`; panics naming `what` (with what the
    /// page showed and the page's error notices) after [`WAIT`].
    pub async fn wait_text(&self, css: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut last = None;
        let found = Self::poll(async || {
            last = self.text(css).await;
            last.clone().filter(|text| done(text))
        })
        .await;
        if let Some(text) = found {
            return text;
        }
        // Enough of what it showed to see why, not a page of it.
        let last: Option<String> = last.map(|t| t.chars().take(2000).collect());
        let notice = self.text("#notice").await.unwrap_or_default();
        let error = self.text("#act-error").await.unwrap_or_default();
        panic!(
            "not {what} after {WAIT:?}: `{css}` shows {last:?}\nnotice: {notice}\ndialog error: {error}"
        );
    }

    /// A command on the element `css` selects, once it is there.
    async fn on_element(&self, css: &str, command: &str, body: Value) -> Option<Value> {
        let id = self.find(css).await?;
        self.session("POST", &format!("/element/{id}/{command}"), body)
            .await
            .ok()
    }

    /// Whether the element `css` selects is shown and enabled.
    async fn usable(&self, css: &str) -> bool {
        let Some(id) = self.find(css).await else {
            return false;
        };
        for state in ["enabled", "displayed"] {
            let answer = self
                .session("GET", &format!("/element/{id}/{state}"), Value::Null)
                .await;
            if answer != Ok(Value::Bool(true)) {
                return false;
            }
        }
        true
    }

    /// Waits until `css` is there, shown and enabled, then clicks it.
    pub async fn click(&self, css: &str) {
        let clicked = Self::poll(async || {
            if !self.usable(css).await {
                return None;
            }
            self.on_element(css, "click", json!({})).await
        })
        .await;
        assert!(
            clicked.is_some(),
            "`{css}` was not there to click (shown and enabled) after {WAIT:?}"
        );
    }

    /// Clears the input `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let typed = Self::poll(async || {
            self.on_element(css, "clear", json!({})).await?;
            self.on_element(css, "value", json!({ "text": text })).await
        })
        .await;
        assert!(
            typed.is_some(),
            "no input `{css}` to type into after {WAIT:?}"
        );
    }

    /// Runs `body` (a function body: `return ...`) in the page and returns its value.
    pub async fn script(&self, body: &str) -> Value {
        self.session("POST", "/execute/sync", json!({"script": body, "args": []}))
            .await
            .unwrap_or_else(|e| panic!("script `{body}`: {e}"))
    }

    /// Runs `source` in every page opened from now on, before the page's own scripts (Chrome's
    /// `Page.addScriptToEvaluateOnNewDocument`, through chromedriver's DevTools command): what a
    /// test needs to see a page from its first moment, such as what it shows before it has data.
    pub async fn on_new_document(&self, source: &str) {
        self.session(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}),
        )
        .await
        .unwrap_or_else(|e| panic!("add a script to new documents: {e}"));
    }

    /// What the page wrote to the console (errors include CSP violations), as chromedriver's
    /// log endpoint returns it.
    pub async fn console(&self) -> Vec<Value> {
        self.session("POST", "/se/log", json!({"type": "browser"}))
            .await
            .map(|v| v.as_array().cloned().unwrap_or_default())
            .unwrap_or_else(|e| panic!("read the browser console: {e}"))
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self
            .session("GET", "/screenshot", Value::Null)
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("base64 text"))
            .expect("a base64 PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (chromium closes), blocking for a moment: Drop cannot await.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.addr
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        // Then chromedriver and whatever is left in its process group, by the group's id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
