//! The `traqq serve` child process the soak runs against, and its config.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use traqq_bench::mapping::{ADD, ADD_VALUE, BITMAP, DISTRIBUTION, TOP};

use crate::{MAX_BODY_BYTES, MAX_LINE_BYTES};

/// The running server: its child process and addresses.
#[derive(Debug)]
pub(crate) struct Serve {
    child: Child,
    pub(crate) tcp: String,
    pub(crate) http: String,
}

impl Serve {
    pub(crate) fn start(traqq: &Path, config: &Path, dir: &Path) -> anyhow::Result<Serve> {
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let mut child = Command::new(traqq)
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(dir)
            .env_remove("TRAQQ_CONFIG")
            .env_remove("TRAQQ_REDIS_URL")
            .env_remove("TRAQQ_DATA")
            .env_remove("TRAQQ_ADDR")
            .env_remove("TRAQQ_AUTH_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("{}: {e}", traqq.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (mut tcp, mut http) = (None, None);
        while tcp.is_none() || http.is_none() {
            let Some(line) = lines.next() else {
                anyhow::bail!(
                    "traqq serve exited before listening; its log:\n{}",
                    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
                );
            };
            let line = line?;
            if let Some(a) = line.strip_prefix("listening: tcp ") {
                tcp = a.split_whitespace().next().map(str::to_owned);
            }
            if let Some(a) = line.strip_prefix("listening: http http://") {
                http = Some(a.trim().trim_end_matches('/').to_owned());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Serve {
            child,
            tcp: tcp.expect("set"),
            http: http.expect("set"),
        })
    }

    /// Its exit status, once it has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status (None: still running after 30 s, then killed).
    pub(crate) fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The soak config: the standard mapping plus its distribution, ephemeral loopback ports.
pub(crate) fn config_text(storage: &str) -> String {
    format!(
        r#"[mapping]
bitmap = {bitmap}
add = {add}
add_value = [{{ key = "{avk}", add_key = "{ava}" }}]
top = {top}
distribution = [{{ key = "{dk}", value_key = "{dv}" }}]

{storage}

[server]
tcp = "127.0.0.1:0"
http = "127.0.0.1:0"
max_line_bytes = {MAX_LINE_BYTES}
max_body_bytes = {MAX_BODY_BYTES}
"#,
        bitmap = toml_list(&BITMAP),
        add = toml_list(&ADD),
        avk = ADD_VALUE.0,
        ava = ADD_VALUE.1,
        top = toml_list(&TOP),
        dk = DISTRIBUTION.0,
        dv = DISTRIBUTION.1,
    )
}
