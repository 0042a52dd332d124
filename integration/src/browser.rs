//! A real headless Chromium, driven over WebDriver (W3C protocol, plain HTTP to chromedriver), for
//! the dashboard tests: open a page, read and click elements, run a script, take screenshots.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make setup-browser`, a prerequisite of `make
//! test`); `FLEDGE_CHROMEDRIVER` and `FLEDGE_CHROMIUM` override where they are. chromedriver listens on
//! an ephemeral loopback port; the browser runs with a fresh profile and is closed with the session.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn chromedriver_bin() -> PathBuf {
    crate::from_env_or("FLEDGE_CHROMEDRIVER", PathBuf::from("chromedriver"))
}

pub fn chromium_bin() -> PathBuf {
    crate::from_env_or("FLEDGE_CHROMIUM", PathBuf::from("/usr/bin/chromium"))
}

/// Where the tests keep their screenshots: `<target dir>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => crate::workspace_root().join(t),
        None => crate::workspace_root().join("target"),
    };
    target.join("ui-screenshots")
}

pub struct Browser {
    driver: Option<Child>,
    addr: SocketAddr,
    session: Option<String>,
    http: reqwest::Client,
    width: u32,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose window is `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let bin = chromedriver_bin();
        let mut driver = Command::new(&bin)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} (run `make setup-browser`)", bin.display()))?;
        let mut stdout = driver.stdout.take().context("no stdout")?;
        // "ChromeDriver was started successfully on port 39637." — possibly without a newline yet.
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            let mut seen = String::new();
            let mut buf = [0u8; 512];
            loop {
                let n = stdout.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "chromedriver exited: {seen}");
                seen.push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or_default()));
                if let Some(rest) = seen.split("started successfully on port ").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if rest.len() > digits.len() {
                        return digits.parse::<u16>().context("chromedriver's port");
                    }
                }
            }
        })
        .await
        .context("chromedriver did not start within 20 s")??;
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink).await;
        });
        let mut b = Browser { driver: Some(driver), addr: SocketAddr::from(([127, 0, 0, 1], port)), session: None, http: reqwest::Client::new(), width };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_bin(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                         "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-GB",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let created = b.command(reqwest::Method::POST, "/session", Some(caps)).await?;
        let id = created["sessionId"].as_str().context("no sessionId in the new session")?;
        b.session = Some(id.to_string());
        Ok(b)
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("http://{}{}", self.addr, path);
        let resp = self.http.request(method.clone(), &url).json(&body.unwrap_or_else(|| json!({}))).send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.with_context(|| format!("{method} {path}: not JSON"))?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {}: {}", v["value"]["error"], v["value"]["message"]);
        Ok(v["value"].clone())
    }

    async fn session_cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let id = self.session.as_deref().context("no session")?;
        self.command(method, &format!("/session/{id}{path}"), body).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.session_cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await.map(|_| ())
    }

    async fn element(&self, css: &str) -> anyhow::Result<String> {
        let v = self.session_cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await?;
        v[ELEMENT].as_str().map(str::to_string).with_context(|| format!("no element for {css:?}: {v}"))
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        let v = self.session_cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await?;
        Ok(v.as_array().is_some_and(|a| !a.is_empty()))
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let e = self.element(css).await?;
        let v = self.session_cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.session_cmd(reqwest::Method::POST, &format!("/element/{e}/click"), None).await.map(|_| ())
    }

    /// Empties an input.
    pub async fn clear(&self, css: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.session_cmd(reqwest::Method::POST, &format!("/element/{e}/clear"), None).await.map(|_| ())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.session_cmd(reqwest::Method::POST, &format!("/element/{e}/value"), Some(json!({ "text": text }))).await.map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.session_cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// A PNG of the whole page (the window is stretched to the page's height first), written to
    /// `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let height = self.execute("return Math.ceil(document.documentElement.scrollHeight);", json!([])).await?.as_u64().unwrap_or(1200);
        let height = height.clamp(600, 6000);
        self.session_cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": self.width, "height": height}))).await?;
        let png = self.session_cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().context("screenshot is not a string")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// Ends the session (closing the browser) and chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if self.session.is_some() {
            self.session_cmd(reqwest::Method::DELETE, "", None).await?;
            self.session = None;
        }
        if let Some(mut d) = self.driver.take() {
            d.kill().await?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    /// A test that failed half-way still closes its browser: the session is deleted with a plain
    /// blocking request (chromedriver then ends Chromium), before chromedriver itself is killed.
    fn drop(&mut self) {
        let Some(id) = self.session.take() else { return };
        if let Ok(mut conn) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!("DELETE /session/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.addr);
            if conn.write_all(req.as_bytes()).is_ok() {
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink);
            }
        }
    }
}
