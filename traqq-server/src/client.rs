//! A blocking client for the TCP protocol, and a minimal HTTP/1.1 helper.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};
use traqq_core::bucket::Tz;
use traqq_core::group::{Group, GroupResult};
use traqq_core::plan::{QueryOptions, QueryRange};
use traqq_core::result::{DayResult, FindOptions, MetricResult, QueryTotals};

use crate::{Error, Result};

/// What `record_batch` answered (the engine's [`traqq_storage::BatchReport`]).
pub type BatchReply = traqq_storage::BatchReport;

/// A connection to a traqq server's TCP port. Requests can be pipelined with
/// [`Client::send`] + [`Client::receive`]; the typed methods send one request and wait.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    line: String,
    max_reply_bytes: u64,
}

/// The longest reply line a [`Client`] reads by default (a server's answers are capped by its
/// `max_reply_bytes`, 64 MiB by default): a hostile or broken server cannot exhaust the
/// client's memory with an endless line.
pub const DEFAULT_MAX_REPLY_BYTES: u64 = 256 << 20;

impl Client {
    /// Connects (with a 30 s read timeout).
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        let stream = TcpStream::connect(addr).map_err(|e| Error::io("connecting to the traqq server", e))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| Error::io("setting the read timeout", e))?;
        let write_half = stream
            .try_clone()
            .map_err(|e| Error::io("cloning the socket", e))?;
        Ok(Client {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer: BufWriter::with_capacity(64 * 1024, write_half),
            line: String::new(),
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        })
    }

    /// Changes the longest reply line read (a longer one is an error, and the connection is
    /// then unusable).
    pub fn set_max_reply_bytes(&mut self, max: u64) {
        self.max_reply_bytes = max;
    }

    /// Changes the read timeout (`None`: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| Error::io("setting the read timeout", e))
    }

    /// Presents the server's token for the rest of the connection.
    pub fn auth(&mut self, token: &str) -> Result<()> {
        self.call(&json!({"cmd": "auth", "token": token})).map(drop)
    }

    /// Queues one raw request line (a newline is added); call [`Client::flush`] or
    /// [`Client::receive`] to send it.
    pub fn send(&mut self, line: &[u8]) -> Result<()> {
        self.writer
            .write_all(line)
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|e| Error::io("sending a request", e))
    }

    /// Queues one JSON request.
    pub fn send_json(&mut self, request: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.writer, request)
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        self.writer
            .write_all(b"\n")
            .map_err(|e| Error::io("sending a request", e))
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::io("sending requests", e))
    }

    /// Reads the next reply line as JSON (flushing queued requests first), whatever its
    /// `success`.
    pub fn receive(&mut self) -> Result<Value> {
        self.flush()?;
        self.line.clear();
        let max = self.max_reply_bytes;
        let n = (&mut self.reader)
            .take(max.saturating_add(1))
            .read_line(&mut self.line)
            .map_err(|e| Error::io("reading a reply", e))?;
        if n == 0 {
            return Err(Error::Protocol("the server closed the connection".into()));
        }
        if n as u64 > max && !self.line.ends_with('\n') {
            self.line = String::new();
            return Err(Error::Protocol(format!(
                "reply longer than {max} bytes without a newline: not a traqq server, or a broken one"
            )));
        }
        serde_json::from_str(&self.line)
            .map_err(|e| Error::Protocol(format!("reply is not JSON ({e}): {}", self.line.trim_end())))
    }

    /// Sends one request and returns its `data` (`null` when there is none); a
    /// `{"success":false}` reply is [`Error::Server`].
    pub fn call(&mut self, request: &Value) -> Result<Value> {
        self.send_json(request)?;
        let reply = self.receive()?;
        into_data(reply)
    }

    /// `ping`.
    pub fn ping(&mut self) -> Result<()> {
        self.call(&json!({"cmd": "ping"})).map(drop)
    }

    /// Records one event.
    pub fn record(&mut self, event: &Value) -> Result<()> {
        self.call(&json!({"cmd": "record", "event": event})).map(drop)
    }

    /// Records many events as one batch.
    pub fn record_batch(&mut self, events: &[Value]) -> Result<BatchReply> {
        typed(self.call(&json!({"cmd": "record_batch", "events": events}))?)
    }

    /// Daily buckets from the day of `min` to the day of `max`.
    pub fn query(&mut self, min: i64, max: i64) -> Result<Vec<DayResult>> {
        typed(self.call(&json!({"cmd": "query", "min": min, "max": max}))?)
    }

    /// Today and `days` days back.
    pub fn query_days(&mut self, days: u32) -> Result<Vec<DayResult>> {
        typed(self.call(&json!({"cmd": "query_days", "days": days}))?)
    }

    /// Any query or find request (fields as in the protocol), typed.
    pub fn request<T: serde::de::DeserializeOwned>(&mut self, request: &Value) -> Result<T> {
        typed(self.call(request)?)
    }

    /// A query over `range` with the bucket size, limit and filters of `opts` (its
    /// `min`/`max` are not used), in the days of `zone` (`None`: the server's
    /// `time.timezone`): the same request the engine's `Traqq::query_range` (or
    /// `query_in_zone`) answers.
    pub fn query_range(
        &mut self,
        range: QueryRange,
        opts: &QueryOptions,
        zone: Option<Tz>,
    ) -> Result<Vec<DayResult>> {
        self.request(&range_request(range, opts, None, zone))
    }

    /// [`Client::query_range`] with the range's totals (every metric merged over it).
    pub fn query_totals(
        &mut self,
        range: QueryRange,
        opts: &QueryOptions,
        zone: Option<Tz>,
    ) -> Result<QueryTotals> {
        let mut request = range_request(range, opts, None, zone);
        request["totals"] = json!(true);
        self.request(&request)
    }

    /// [`Client::query_range`] grouped into ISO weeks or calendar months (`"group"`).
    pub fn query_groups(
        &mut self,
        range: QueryRange,
        opts: &QueryOptions,
        group: Group,
        zone: Option<Tz>,
    ) -> Result<Vec<GroupResult>> {
        let mut request = range_request(range, opts, None, zone);
        request["group"] = json!(group.as_str());
        self.request(&request)
    }

    /// A `find` over `range` with `opts`, selecting and merging as `find` says.
    pub fn find_range(
        &mut self,
        range: QueryRange,
        opts: &QueryOptions,
        find: &FindOptions,
        zone: Option<Tz>,
    ) -> Result<Vec<MetricResult>> {
        self.request(&range_request(range, opts, Some(find), zone))
    }

    /// `find` over the last `days` days.
    pub fn find_days(
        &mut self,
        days: u32,
        metric_type: &str,
        key: &str,
        add_key: Option<&str>,
        merge: bool,
    ) -> Result<Vec<MetricResult>> {
        self.request(&json!({"cmd": "find", "days": days, "metric_type": metric_type,
            "key": key, "add_key": add_key, "merge": merge}))
    }
}

/// The protocol request for a query (`find` given: a find) over `range` with `opts`, in the
/// days of `zone` when given.
fn range_request(
    range: QueryRange,
    opts: &QueryOptions,
    find: Option<&FindOptions>,
    zone: Option<Tz>,
) -> Value {
    let cmd = match (find, range) {
        (Some(_), _) => "find",
        (None, QueryRange::Days(_)) => "query_days",
        (None, QueryRange::MinMax(..)) => "query",
    };
    let mut req = json!({
        "cmd": cmd,
        "bucket": opts.bucket.as_str(),
        "accept": opts.accept,
        "ignore": opts.ignore,
    });
    match range {
        QueryRange::Days(d) => req["days"] = json!(d),
        QueryRange::MinMax(a, b) => {
            req["min"] = json!(a);
            req["max"] = json!(b);
        }
    }
    if let Some(limit) = opts.limit {
        req["limit"] = json!(limit);
    }
    if let Some(zone) = zone {
        req["tz"] = json!(zone.name());
    }
    if let Some(qs) = &opts.quantiles {
        req["q"] = json!(qs);
    }
    if let Some(f) = find {
        req["metric_type"] = json!(f.metric_type);
        req["key"] = json!(f.key);
        req["add_key"] = json!(f.add_key);
        req["merge"] = json!(f.merge);
    }
    req
}

/// The `data` of a reply, or its error.
pub fn into_data(mut reply: Value) -> Result<Value> {
    match reply.get("success").and_then(Value::as_bool) {
        Some(true) => Ok(reply.get_mut("data").map(Value::take).unwrap_or(Value::Null)),
        Some(false) => Err(Error::Server(
            reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        )),
        None => Err(Error::Protocol(format!("reply without \"success\": {reply}"))),
    }
}

fn typed<T: serde::de::DeserializeOwned>(data: Value) -> Result<T> {
    serde_json::from_value(data).map_err(|e| Error::Protocol(format!("unexpected reply data: {e}")))
}

/// An HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

/// One HTTP/1.1 request with `Connection: close` (enough for the CLI and tests).
pub fn http_request(
    addr: impl ToSocketAddrs,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply> {
    let mut stream = TcpStream::connect(addr).map_err(|e| Error::io("connecting to the HTTP API", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| Error::io("setting the read timeout", e))?;
    let mut head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: traqq\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| Error::io("sending the HTTP request", e))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(DEFAULT_MAX_REPLY_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io("reading the HTTP reply", e))?;
    if raw.len() as u64 > DEFAULT_MAX_REPLY_BYTES {
        return Err(Error::Protocol(format!(
            "HTTP reply longer than {DEFAULT_MAX_REPLY_BYTES} bytes"
        )));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Protocol("HTTP reply without a header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let rest = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad HTTP status line: {head}")))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Ok(HttpReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The body of a chunked reply, decoded as bytes (a chunk may end inside a UTF-8 character).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end]).unwrap_or_default();
        // Chunk extensions (`;name=value`) are allowed after the size.
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        let body = &data[line_end + 2..];
        if n == 0 || body.len() < n {
            break;
        }
        out.extend_from_slice(&body[..n]);
        data = body[n..].strip_prefix(b"\r\n").unwrap_or(&body[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_may_split_a_utf8_character() {
        // "é" is two bytes, sent in two chunks; a size line with an extension.
        let raw = b"3\r\nab\xc3\r\n2;x=y\r\n\xa9c\r\n0\r\n\r\n";
        assert_eq!(String::from_utf8(dechunk(raw)).unwrap(), "ab\u{e9}c");
        // Truncated or malformed input ends the body, never panics.
        assert_eq!(dechunk(b"ff\r\nshort"), b"");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }
}
