//! One browser per test: a chromedriver on a free loopback port, a
//! headless Chromium at phone width, and helpers that wait for what a user
//! would wait for.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long a step may take before the test fails (generous: CI machines
/// have two cores and build the apps while the browser runs).
const PATIENCE: Duration = Duration::from_secs(40);

/// Browser tests run one at a time: several Chromiums on two cores make
/// every step slow enough to look like a failure.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    step: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn program(names: &[&str]) -> String {
    for name in names {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = PathBuf::from(dir).join(name);
            if path.exists() {
                return path.to_string_lossy().into_owned();
            }
        }
    }
    panic!(
        "none of {names:?} is installed: run scripts/browser-deps.sh (Debian's chromium and chromium-driver)"
    );
}

impl Browser {
    /// A fresh browser for `test`, at a phone's width.
    pub async fn start(test: &str) -> Browser {
        Browser::sized(test, 390, 844).await
    }

    pub async fn sized(test: &str, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(program(&["chromedriver"]))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": program(&["chromium", "chromium-browser", "google-chrome"]),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"), "--lang=en-GB",
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        let shots = crate::common::repo()
            .join("target/browser-tests")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            driver,
            shots,
            step: 0,
        }
    }

    /// Save a screenshot of this step.
    pub async fn shot(&mut self, name: &str) -> PathBuf {
        self.step += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
    }

    /// Wait until the page's text contains `text`.
    pub async fn wait_text(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let body = self.body_text().await;
            if body.contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {text:?} in:\n{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn body_text(&self) -> String {
        self.js("return document.body.innerText", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Click the first button (or link) whose text contains `label`.
    pub async fn click_text(&self, label: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for element in self
                .client
                .find_all(Locator::Css("button, a"))
                .await
                .unwrap()
            {
                let text = element.text().await.unwrap_or_default();
                if text.contains(label) && element.is_displayed().await.unwrap_or(false) {
                    element.click().await.unwrap();
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no button or link {label:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// End the session (and the browser) and stop chromedriver.
    pub async fn finish(mut self) {
        let _ = self.client.clone().close().await;
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

impl Browser {
    /// Run axe-core on the current page; the serious and critical
    /// violations, one line each.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(crate::common::repo().join("target/axe-core/axe.min.js"))
            .expect("axe-core is fetched by scripts/browser-deps.sh");
        self.js(&format!("{axe}\n;return typeof axe;"), vec![])
            .await;
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }))))
                   .catch((e) => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap();
        result
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                format!(
                    "{} ({}): {} at {}",
                    v["id"], v["impact"], v["help"], v["nodes"]
                )
            })
            .collect()
    }
}
