//! Headless Chromium driven over the DevTools protocol.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::dom::Dom;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The browser process, ended when this drops, also when a test panics half-way. Chromium's
/// own helper processes (renderers, GPU, utilities) exit with it.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // A browser asked to close (see `Chrome`'s drop) gets a moment to exit on its own.
        let started = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium driven over the DevTools protocol: one page, whose own network requests
/// (not the browser's background ones) are recorded from `Network.requestWillBeSent`.
pub(crate) struct Chrome {
    // Fields drop in order: the browser ends before its profile directory is removed.
    _browser: Browser,
    _profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    /// Every URL the page requested since the last [`Chrome::open`].
    pub(crate) requests: Vec<String>,
    loaded: bool,
}

impl Chrome {
    pub(crate) fn launch(exe: &Path) -> Chrome {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let browser = Browser(
            Command::new(exe)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-breakpad",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    // Offline like our users' servers: no name resolves, only loopback is reachable.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--remote-debugging-port=0",
                    "--window-size=1280,1000",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        // Chromium writes its DevTools port and browser path here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().parse::<u16>().unwrap(), path.trim().to_owned());
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "chromium did not open its DevTools port: {}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(("127.0.0.1", endpoint.0)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let url = format!("ws://127.0.0.1:{}{}", endpoint.0, endpoint.1);
        let (ws, _) = tungstenite::client(url, stream).unwrap();
        // From here on, reads return now and then so waits can check their deadlines.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chrome = Chrome {
            _browser: browser,
            _profile: profile,
            ws,
            next_id: 0,
            session: String::new(),
            requests: Vec::new(),
            loaded: false,
        };
        let target = chrome.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = chrome.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        chrome.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Network.enable", "Page.enable", "Runtime.enable"] {
            chrome.call(domain, json!({}));
        }
        chrome
    }

    /// Sends a command (to the page once attached) and returns its result, noting events on the way.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < WAIT, "no answer to {method} within {WAIT:?}");
            let Some(reply) = self.next_message() else {
                continue;
            };
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// One message, or `None` after a short read timeout.
    pub(crate) fn next_message(&mut self) -> Option<Value> {
        let text = match self.ws.read() {
            Ok(Message::Text(text)) => text,
            Ok(_) => return None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("DevTools connection failed: {e}"),
        };
        let msg: Value = serde_json::from_str(text.as_str()).unwrap();
        let ours = msg["sessionId"].as_str() == Some(self.session.as_str());
        match msg["method"].as_str() {
            Some("Network.requestWillBeSent") if ours => {
                self.requests
                    .push(msg["params"]["request"]["url"].as_str().unwrap_or("").to_owned());
            }
            Some("Page.loadEventFired") if ours => self.loaded = true,
            _ => {}
        }
        Some(msg)
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its JSON value.
    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = reply.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        reply["result"]["value"].clone()
    }

    /// Waits until the page's `<body data-state>` is one of `states`; returns it.
    pub(crate) fn wait_state(&mut self, states: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let state = self.eval("document.body ? (document.body.dataset.state || '') : ''");
            if let Some(s) = state.as_str().filter(|s| states.contains(s)) {
                return s.to_owned();
            }
            assert!(
                started.elapsed() < WAIT,
                "page state {state} never became one of {states:?}; status: {}",
                self.eval("(document.getElementById('status') || {}).textContent || ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to a minute) until `done` holds, reading DevTools events meanwhile.
    pub(crate) fn wait_for(&mut self, mut done: impl FnMut(&mut Chrome) -> bool, what: &str) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < WAIT, "gave up waiting for {what}");
            self.next_message();
        }
    }

    /// Loads `url`, waits for its load event and a settled state, and returns the DOM.
    pub(crate) fn open(&mut self, url: &str, states: &[&str]) -> Dom {
        self.requests.clear();
        self.loaded = false;
        self.call("Page.navigate", json!({ "url": url }));
        let started = Instant::now();
        while !self.loaded {
            assert!(started.elapsed() < WAIT, "{url} did not load");
            self.next_message();
        }
        self.wait_state(states);
        self.dom()
    }

    pub(crate) fn dom(&mut self) -> Dom {
        Dom(self
            .eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_owned())
    }

    /// Every request the page made since it was opened went to `origin` (`data:` URLs, such as
    /// the date input's built-in icon, reach no host).
    pub(crate) fn assert_only(&self, origin: &str) {
        assert!(
            !self.requests.is_empty(),
            "no requests recorded: the network log is not working"
        );
        let foreign: Vec<&String> = self
            .requests
            .iter()
            .filter(|u| !u.starts_with(origin) && !u.starts_with("data:"))
            .collect();
        assert!(foreign.is_empty(), "the page requested other hosts: {foreign:?}");
    }

    /// Lays the page out `width` CSS pixels wide (a phone when `mobile`); `None` resets.
    pub(crate) fn set_width(&mut self, width: Option<(u32, bool)>) {
        match width {
            Some((width, mobile)) => self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile }),
            ),
            None => self.call("Emulation.clearDeviceMetricsOverride", json!({})),
        };
    }

    /// A PNG of the whole page.
    pub(crate) fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "bad screenshot ({} bytes)",
            png.len()
        );
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Ask politely first, so the browser ends its own processes (`Browser` then waits).
        let close = json!({ "id": 0, "method": "Browser.close" });
        let _ = self.ws.send(Message::Text(close.to_string().into()));
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
