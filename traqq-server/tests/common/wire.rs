//! One request, either wire: a test written once against [`Session`] runs over TCP JSON-lines
//! and over HTTP, so the two transports cannot drift apart.
//!
//! Requests are written in the TCP form (`{"cmd":"find","days":2,...}`); over HTTP they become
//! `POST /v1/events` (record, record_batch) or `GET /v1/query` / `GET /v1/find` with the same
//! fields as parameters. Replies have the same JSON shape on both wires; HTTP adds a status.

use std::net::SocketAddr;

use serde_json::Value;
use traqq_server::client::http_request;
use traqq_server::{Client, RunningServer};

/// Which transport a [`Session`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Tcp,
    Http,
}

/// A reply: the JSON body (same shape on both wires) and, over HTTP, the status code.
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    pub http_status: Option<u16>,
}

impl Answer {
    /// Asserts a success and returns `data` (`Value::Null` when the reply has none).
    pub fn ok(self) -> Value {
        assert_eq!(self.body["success"], Value::Bool(true), "{self:?}");
        if let Some(status) = self.http_status {
            assert_eq!(status, 200, "{self:?}");
        }
        self.body.get("data").cloned().unwrap_or(Value::Null)
    }

    /// Asserts a failure whose message contains `want` and, over HTTP, whose status is
    /// `status`.
    pub fn fails(&self, status: u16, want: &str) {
        assert_eq!(self.body["success"], Value::Bool(false), "{self:?}");
        let error = self.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "got:  {error}\nwant: {want}");
        if let Some(got) = self.http_status {
            assert_eq!(got, status, "{error}");
        }
    }
}

/// A client of `server` over one wire, optionally presenting a token (TCP: an `auth` request
/// on connect; HTTP: `Authorization: Bearer`).
pub struct Session {
    wire: Wire,
    http: Option<SocketAddr>,
    tcp: Option<Client>,
    bearer: Option<String>,
}

impl Session {
    pub fn open(server: &RunningServer, wire: Wire, token: Option<&str>) -> Session {
        match wire {
            Wire::Tcp => {
                let mut client = Client::connect(server.tcp_addr().unwrap()).unwrap();
                if let Some(token) = token {
                    let reply = client
                        .call(&serde_json::json!({"cmd": "auth", "token": token}))
                        .ok();
                    // A wrong token is the test's business: its later requests fail.
                    drop(reply);
                }
                Session {
                    wire,
                    http: None,
                    tcp: Some(client),
                    bearer: None,
                }
            }
            Wire::Http => Session {
                wire,
                http: Some(server.http_addr().unwrap()),
                tcp: None,
                bearer: token.map(|t| format!("Bearer {t}")),
            },
        }
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Sends `request` (TCP form) and returns the reply.
    pub fn send(&mut self, request: &Value) -> Answer {
        if let Some(client) = &mut self.tcp {
            client.send_json(request).unwrap();
            return Answer {
                body: client.receive().unwrap(),
                http_status: None,
            };
        }
        let addr = self.http.unwrap();
        let (method, path, body) = as_http(request);
        let headers: Vec<(&str, &str)> = match &self.bearer {
            Some(value) => vec![("Authorization", value.as_str())],
            None => Vec::new(),
        };
        let reply = http_request(addr, method, &path, &headers, body.as_bytes()).unwrap();
        let body = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {:?}", reply.body));
        Answer {
            body,
            http_status: Some(reply.status),
        }
    }

    /// How often `name` was counted under `add:event` on `ts`'s day.
    pub fn event_count(&mut self, ts: i64, name: &str) -> i64 {
        let data = self
            .send(&serde_json::json!({
                "cmd": "find", "min": ts, "max": ts, "metric_type": "add", "key": "event", "merge": true
            }))
            .ok();
        data[0]["result"]["Hash"][name].as_i64().unwrap_or(0)
    }
}

/// The HTTP request for a TCP-form request: method, path with parameters, body.
fn as_http(request: &Value) -> (&'static str, String, String) {
    let cmd = request["cmd"].as_str().unwrap_or_default();
    match cmd {
        "record" => ("POST", "/v1/events".into(), request["event"].to_string()),
        "record_batch" => ("POST", "/v1/events".into(), request["events"].to_string()),
        "query" | "query_days" | "find" => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in request.as_object().into_iter().flatten() {
                match value {
                    _ if name == "cmd" => {}
                    Value::Array(items) => {
                        for item in items {
                            query.append_pair(name, &parameter(item));
                        }
                    }
                    other => {
                        query.append_pair(name, &parameter(other));
                    }
                }
            }
            let route = if cmd == "find" { "find" } else { "query" };
            ("GET", format!("/v1/{route}?{}", query.finish()), String::new())
        }
        other => panic!("no HTTP form for cmd {other:?}"),
    }
}

/// A JSON value as a query parameter: strings bare, everything else as JSON text.
fn parameter(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Defines `mod tcp` and `mod http`, each holding one `#[test]` per listed function, which
/// runs it with that [`Wire`].
#[macro_export]
macro_rules! over_both_wires {
    ($($test:ident),* $(,)?) => {
        mod tcp {
            $(#[test] fn $test() { super::$test($crate::common::wire::Wire::Tcp) })*
        }
        mod http {
            $(#[test] fn $test() { super::$test($crate::common::wire::Wire::Http) })*
        }
    };
}
