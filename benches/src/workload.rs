//! The standard workload of DESIGN §8: deterministic NDJSON events from a seed.
//!
//! Each event has `event` (`offer_impression` ×3 weight, `offer_click`, `offer_conversion`),
//! `ip` (a pool of 50,000 distinct IPv4 addresses, or a new address per event), `offer` (20),
//! `creative` (10), `channel` (5), `geo` (30 country codes), `host` (100), `amount` (a float
//! 0.01–500.00 on ~30% of events), `ts` (unix seconds, uniform over the 7 days before `now`)
//! and four strings no pattern uses: `ua` (~80 chars), `url` (~40), `session` (32) and `ref`
//! (~30). Values are drawn uniformly; every string is plain ASCII without quotes, backslashes,
//! `:` or `~`, so lines parse without escapes and values need no sanitizing.
//!
//! The same `(seed, ips, now)` always yields the same lines, byte for byte, on every platform:
//! the generator uses its own SplitMix64 stream rather than a crate whose sequence may change.

use std::fmt::Write as _;

/// Event names and their weights (impressions are three times as common).
pub const EVENTS: [(&str, u64); 3] = [
    ("offer_impression", 3),
    ("offer_click", 1),
    ("offer_conversion", 1),
];
/// Distinct `ip`s in the standard workload.
pub const STANDARD_IPS: u32 = 50_000;
/// Distinct `offer`s.
pub const OFFERS: u64 = 20;
/// Distinct `creative`s.
pub const CREATIVES: u64 = 10;
/// The `channel`s.
pub const CHANNELS: [&str; 5] = ["search", "social", "email", "display", "affiliate"];
/// The `geo` country codes.
pub const GEOS: [&str; 30] = [
    "US", "GB", "DE", "FR", "CA", "AU", "JP", "BR", "IN", "MX", "ES", "IT", "NL", "SE", "NO", "DK", "FI",
    "PL", "CH", "AT", "BE", "IE", "PT", "CZ", "KR", "SG", "NZ", "ZA", "AR", "CL",
];
/// Distinct `host`s.
pub const HOSTS: u64 = 100;
/// Share of events that carry an `amount`, in percent.
pub const AMOUNT_PERCENT: u64 = 30;
/// Width of the `ts` window before `now`, seconds.
pub const WINDOW_SECS: i64 = 7 * 86_400;

const UA_TEMPLATES: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15 Ver/",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 V/",
];
const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The seed of every published figure.
pub const BENCH_SEED: u64 = 1;
/// The fixed `now` of the criterion benches (2025-11-28T00:00:00Z), so their input never
/// changes; `traqq-bench gen`/`compare` default to the real clock instead.
pub const BENCH_NOW: i64 = 1_764_288_000;

/// Where the `ip` of each event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ips {
    /// Drawn uniformly from a fixed pool of this many distinct addresses (the standard
    /// workload uses [`STANDARD_IPS`]).
    Pool(u32),
    /// A new address for every event (distinct for the first 2^32 events): the worst case
    /// for memory, where traqq 0.2 keeps every value.
    AllDistinct,
}

impl Ips {
    /// The standard workload's pool of 50,000 addresses.
    pub const STANDARD: Ips = Ips::Pool(STANDARD_IPS);
}

/// What to generate: the seed, where `ip`s come from, and the end of the `ts` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Seed of the random stream.
    pub seed: u64,
    /// Where `ip`s come from.
    pub ips: Ips,
    /// `ts` values fall in `[now - 7 days, now)`, unix seconds.
    pub now: i64,
    /// Each event carries a unique `"id":"e<number>"` (for `[event] id_field`).
    pub ids: bool,
}

impl Workload {
    /// The standard workload (50,000 `ip`s) ending at `now`.
    pub fn standard(seed: u64, now: i64) -> Self {
        Workload {
            seed,
            ips: Ips::STANDARD,
            now,
            ids: false,
        }
    }

    /// An endless stream of events.
    pub fn generator(&self) -> Generator {
        Generator::new(*self)
    }

    /// Writes the first `events` events as NDJSON to `out` (`traqq-bench gen`).
    pub fn write_ndjson(&self, events: u64, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut g = self.generator();
        let mut chunk = Chunk::default();
        let mut left = events;
        while left > 0 {
            let n = left.min(10_000);
            g.refill(&mut chunk, n as usize);
            out.write_all(chunk.text().as_bytes())?;
            left -= n;
        }
        out.flush()
    }

    /// The first `n` lines (without newlines). Convenient for tests and small runs; for a
    /// million events use [`Workload::chunk`] or [`Generator::write_line`] with a reused buffer.
    pub fn lines(&self, n: usize) -> Vec<String> {
        let mut g = self.generator();
        (0..n)
            .map(|_| {
                let mut s = String::with_capacity(360);
                g.write_line(&mut s);
                s
            })
            .collect()
    }

    /// The first `n` lines in one buffer (newline-terminated), so a million events cost one
    /// allocation; iterate with [`Chunk::lines`].
    pub fn chunk(&self, n: usize) -> Chunk {
        let mut chunk = Chunk::default();
        let mut g = self.generator();
        g.fill(&mut chunk, n);
        chunk
    }
}

/// Many NDJSON lines in one buffer.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    text: String,
    count: usize,
    /// Where each line starts, noted as the generator writes it: handing the lines over costs
    /// the timed calls no newline search (as for a caller that has its lines already; `traqq
    /// import` finds them in whole blocks with `memchr`).
    starts: Vec<usize>,
}

impl Chunk {
    /// The lines, without their newlines.
    pub fn lines(&self) -> impl Iterator<Item = &str> + Clone {
        let ends = self
            .starts
            .iter()
            .skip(1)
            .map(|&next| next - 1)
            .chain([self.text.len().saturating_sub(1)]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| self.text.get(start..end).unwrap_or_default())
    }

    /// The whole NDJSON text (each line ends with `\n`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no lines.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Total bytes, newlines included.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

/// SplitMix64: tiny, fast, and its sequence is fixed by definition.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (multiply-high; the bias is below 2^-32 for these small `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Produces the events of a [`Workload`] one line at a time.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SplitMix64,
    ips: Ips,
    now: i64,
    ids: bool,
    /// XOR mask that makes the address pool depend on the seed.
    ip_mask: u32,
    index: u64,
}

impl Generator {
    fn new(w: Workload) -> Self {
        let mut rng = SplitMix64(w.seed);
        let ip_mask = (rng.next() >> 32) as u32;
        Generator {
            rng,
            ips: w.ips,
            now: w.now,
            ids: w.ids,
            ip_mask,
            index: 0,
        }
    }

    /// Events produced so far.
    pub fn produced(&self) -> u64 {
        self.index
    }

    /// Appends the next `n` events to `chunk`.
    pub fn fill(&mut self, chunk: &mut Chunk, n: usize) {
        chunk.text.reserve(n * 340);
        for _ in 0..n {
            chunk.starts.push(chunk.text.len());
            self.write_line(&mut chunk.text);
            chunk.text.push('\n');
        }
        chunk.count += n;
    }

    /// Replaces the content of `chunk` with the next `n` events (reusing its buffer).
    pub fn refill(&mut self, chunk: &mut Chunk, n: usize) {
        chunk.text.clear();
        chunk.starts.clear();
        chunk.count = 0;
        self.fill(chunk, n);
    }

    /// The address with number `i` of the pool: a bijection on `u32`, so distinct numbers
    /// give distinct addresses.
    fn ip_of(mask: u32, i: u32) -> [u8; 4] {
        (i.wrapping_mul(0x9E37_79B1) ^ mask).to_be_bytes()
    }

    /// Appends the next event as one JSON line (no newline) to `out`.
    pub fn write_line(&mut self, out: &mut String) {
        let r = &mut self.rng;
        let total: u64 = EVENTS.iter().map(|(_, w)| w).sum();
        let mut pick = r.below(total);
        let mut event = EVENTS[0].0;
        for (name, weight) in EVENTS {
            if pick < weight {
                event = name;
                break;
            }
            pick -= weight;
        }
        let ip_number = match self.ips {
            Ips::Pool(n) => r.below(u64::from(n.max(1))) as u32,
            Ips::AllDistinct => self.index as u32,
        };
        let offer = r.below(OFFERS) + 1;
        let creative = r.below(CREATIVES) + 1;
        let channel = CHANNELS[r.below(CHANNELS.len() as u64) as usize];
        let geo = GEOS[r.below(GEOS.len() as u64) as usize];
        let host = r.below(HOSTS) + 1;
        let amount = (r.below(100) < AMOUNT_PERCENT).then(|| r.below(50_000) + 1);
        let ts = self.now - 1 - r.below(WINDOW_SECS as u64) as i64;
        let ua = UA_TEMPLATES[r.below(UA_TEMPLATES.len() as u64) as usize];
        let ua_major = 100 + r.below(30);
        let ua_build = r.below(10_000);

        let [a, b, c, d] = Self::ip_of(self.ip_mask, ip_number);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            r#"{{"event":"{event}","ip":"{a}.{b}.{c}.{d}","offer":"offer_{offer:02}","creative":"cr_{creative:02}","channel":"{channel}","geo":"{geo}","host":"h{host:03}.example.com""#
        );
        if let Some(cents) = amount {
            let _ = write!(out, r#","amount":{}.{:02}"#, cents / 100, cents % 100);
        }
        let _ = write!(
            out,
            r#","ts":{ts},"ua":"{ua}{ua_major}.0.{ua_build}","url":"https://shop.example.com/p/"#
        );
        push_random(out, r, ALNUM, 13);
        out.push_str(r#"","session":""#);
        push_random(out, r, HEX, 32);
        out.push_str(r#"","ref":"https://r.example.net/"#);
        push_random(out, r, ALNUM, 8);
        out.push('"');
        if self.ids {
            let _ = write!(out, r#","id":"e{}""#, self.index);
        }
        out.push('}');
        self.index += 1;
    }
}

fn push_random(out: &mut String, r: &mut SplitMix64, alphabet: &[u8], n: usize) {
    for _ in 0..n {
        out.push(char::from(alphabet[r.below(alphabet.len() as u64) as usize]));
    }
}

impl Iterator for Generator {
    type Item = String;

    /// The next line (allocates; prefer [`Generator::write_line`] in loops).
    fn next(&mut self) -> Option<String> {
        let mut s = String::with_capacity(360);
        self.write_line(&mut s);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    const NOW: i64 = 1_764_288_000;

    fn parsed(lines: &[String]) -> Vec<serde_json::Map<String, serde_json::Value>> {
        lines
            .iter()
            .map(|l| match serde_json::from_str(l).unwrap() {
                serde_json::Value::Object(m) => m,
                other => panic!("not an object: {other}"),
            })
            .collect()
    }

    #[test]
    fn same_seed_same_lines_other_seed_other_lines() {
        let w = Workload::standard(7, NOW);
        assert_eq!(w.lines(500), w.lines(500));
        assert_eq!(w.chunk(500).lines().collect::<Vec<_>>(), w.lines(500));
        let mut chunk = w.chunk(3);
        w.generator().refill(&mut chunk, 2);
        assert_eq!(chunk.lines().count(), 2);
        assert_eq!(
            chunk.lines().collect::<Vec<_>>(),
            chunk.text().lines().collect::<Vec<_>>()
        );
        assert_ne!(w.lines(50), Workload::standard(8, NOW).lines(50));
        // Fixed bytes: a change to the generator changes every published figure, so it must
        // be deliberate.
        assert_eq!(
            w.lines(1)[0],
            r#"{"event":"offer_impression","ip":"96.8.192.106","offer":"offer_12","creative":"cr_05","channel":"social","geo":"NO","host":"h033.example.com","amount":206.58,"ts":1764225366,"ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 V/127.0.8713","url":"https://shop.example.com/p/RxSkCKF6lqTX4","session":"6e6f064891e32ae60058ddaa51493759","ref":"https://r.example.net/CmmSosmN"}"#
        );
    }

    #[test]
    fn every_line_has_the_design_fields() {
        let lines = Workload::standard(1, NOW).lines(2_000);
        for (line, m) in lines.iter().zip(parsed(&lines)) {
            for field in [
                "event", "ip", "offer", "creative", "channel", "geo", "host", "ua", "url", "session", "ref",
            ] {
                assert!(m[field].is_string(), "{field} in {line}");
            }
            let ts = m["ts"].as_i64().unwrap();
            assert!((NOW - WINDOW_SECS..NOW).contains(&ts), "{line}");
            if let Some(a) = m.get("amount") {
                let a = a.as_f64().unwrap();
                assert!((0.01..=500.0).contains(&a), "{line}");
            }
            assert_eq!(m["session"].as_str().unwrap().len(), 32);
            let ua = m["ua"].as_str().unwrap().len();
            assert!((70..=90).contains(&ua), "ua of {ua} chars");
            assert_eq!(m["url"].as_str().unwrap().len(), 40);
            assert_eq!(m["ref"].as_str().unwrap().len(), 30);
            assert!(!line.contains('\\') && !line.contains('~'));
        }
    }

    #[test]
    fn distributions_match_the_design() {
        let n = 60_000;
        let events = parsed(&Workload::standard(42, NOW).lines(n));
        let distinct = |f: &str| {
            events
                .iter()
                .map(|m| m[f].as_str().unwrap())
                .collect::<HashSet<_>>()
                .len()
        };
        assert_eq!(distinct("offer"), 20);
        assert_eq!(distinct("creative"), 10);
        assert_eq!(distinct("channel"), 5);
        assert_eq!(distinct("geo"), 30);
        assert_eq!(distinct("host"), 100);
        // 60,000 uniform draws from 50,000: about 50,000 * (1 - e^-1.2) = 34,940 distinct.
        let ips = distinct("ip");
        assert!((34_000..36_000).contains(&ips), "{ips} distinct ips");

        let mut by_event: HashMap<&str, usize> = HashMap::new();
        for m in &events {
            *by_event.entry(m["event"].as_str().unwrap()).or_default() += 1;
        }
        let share = |e: &str| by_event[e] as f64 / n as f64;
        assert!((share("offer_impression") - 0.6).abs() < 0.01, "{by_event:?}");
        assert!((share("offer_click") - 0.2).abs() < 0.01, "{by_event:?}");
        assert!((share("offer_conversion") - 0.2).abs() < 0.01, "{by_event:?}");
        let amounts = events.iter().filter(|m| m.contains_key("amount")).count() as f64 / n as f64;
        assert!((amounts - 0.3).abs() < 0.01, "{amounts}");

        let days: HashSet<i64> = events
            .iter()
            .map(|m| m["ts"].as_i64().unwrap() / 86_400)
            .collect();
        assert!((7..=8).contains(&days.len()), "{days:?}");
    }

    #[test]
    fn pool_ips_stay_in_the_pool_and_all_distinct_never_repeat() {
        let pool = parsed(
            &Workload {
                seed: 3,
                ips: Ips::Pool(100),
                now: NOW,
                ids: false,
            }
            .lines(5_000),
        );
        let ips: HashSet<_> = pool
            .iter()
            .map(|m| m["ip"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ips.len(), 100);

        let n = 50_000;
        let unique = Workload {
            seed: 3,
            ips: Ips::AllDistinct,
            now: NOW,
            ids: true,
        };
        let mut g = unique.generator();
        let (mut seen, mut ids) = (HashSet::new(), HashSet::new());
        let mut line = String::new();
        for _ in 0..n {
            line.clear();
            g.write_line(&mut line);
            let m: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(
                seen.insert(m["ip"].as_str().unwrap().to_owned()),
                "repeated ip in {line}"
            );
            assert!(
                ids.insert(m["id"].as_str().unwrap().to_owned()),
                "repeated id in {line}"
            );
        }
        assert_eq!(g.produced(), n);
    }
}
