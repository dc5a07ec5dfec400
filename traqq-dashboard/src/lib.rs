//! # traqq-dashboard
//!
//! The dashboard page that `traqq serve` answers on `GET /` of its HTTP port: one
//! self-contained HTML document (CSS, JavaScript and hand-written SVG charts inline, no CDN,
//! no fonts, no images) that reads the metrics through the public HTTP API only
//! (`GET /v1/query` to discover the metrics of a range, `GET /v1/find?...&merge=true` for
//! unique counts over the range, merged leaderboards and distributions).
//!
//! This crate has no dependencies: it only embeds the page, so any HTTP server can serve it.
//! Send it with [`CONTENT_TYPE`]. The page's own Content-Security-Policy (a `<meta>` tag)
//! limits it to requests to the origin it was loaded from.
//!
//! ```
//! let page: &'static str = traqq_dashboard::INDEX_HTML;
//! assert!(page.starts_with("<!doctype html>"));
//! assert!(page.contains("/v1/query?"));
//! assert_eq!(traqq_dashboard::CONTENT_TYPE, "text/html; charset=utf-8");
//! // e.g. with axum:
//! // .route("/", get(|| async { axum::response::Html(traqq_dashboard::INDEX_HTML) }))
//! ```
//!
//! What the page shows, for a range (today by hour, 7 days, 30 days, or custom dates):
//! the metrics that exist, grouped by type and pattern; `add` counters as a line chart of the
//! top values per bucket plus merged totals; `bmp` uniques per bucket plus the true unique count
//! over the range (the sketch union); `adv` per-label sums, and sum / count / average per bucket
//! and merged; `top` as a ranked table with bars; `dst` distributions as one label's p50 line per
//! bucket with p50–p90 and p90–p99 bands, plus the label's quantiles over the range (the
//! server's merge of the sketches). The range, selected metric and auto-refresh
//! (off, 10 s, 60 s) live in the URL, so a view can be bookmarked. When the server needs a token,
//! the page asks once and keeps it in the tab's `sessionStorage`.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// The stylesheet (inlined into [`INDEX_HTML`]).
pub const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The page's script (inlined into [`INDEX_HTML`]).
pub const APP_JS: &str = include_str!("../assets/app.js");

/// The `dst` card's script (inlined into [`INDEX_HTML`] before [`APP_JS`], which uses it).
pub const DST_JS: &str = include_str!("../assets/dst.js");

/// The whole page: markup with the stylesheet and the script inlined.
pub const INDEX_HTML: &str = concat!(
    include_str!("../assets/head.html"),
    "<style>\n",
    include_str!("../assets/style.css"),
    "</style>\n",
    include_str!("../assets/body.html"),
    "<script>\n",
    include_str!("../assets/dst.js"),
    "</script>\n<script>\n",
    include_str!("../assets/app.js"),
    "</script>\n</body>\n</html>\n",
);

/// The `Content-Type` to send [`INDEX_HTML`] with.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_inlines_style_and_script_in_order() {
        let style = INDEX_HTML.find(STYLE_CSS).unwrap();
        let script = INDEX_HTML.find(APP_JS).unwrap();
        let dst = INDEX_HTML.find(DST_JS).unwrap();
        assert!(style < INDEX_HTML.find("<body").unwrap());
        assert!(script > INDEX_HTML.find("id=\"cards\"").unwrap());
        // Its own <script>, before app.js, which calls it; each file keeps its 'use strict'.
        assert!(dst > INDEX_HTML.find("id=\"cards\"").unwrap() && dst + DST_JS.len() < script);
        assert!(INDEX_HTML[dst + DST_JS.len()..script].contains("</script>"));
        assert!(DST_JS.starts_with("'use strict';") && APP_JS.starts_with("'use strict';"));
        assert!(APP_JS.contains("traqqDistribution(") && DST_JS.contains("function traqqDistribution("));
        assert!(INDEX_HTML.trim_end().ends_with("</html>"));
    }

    /// The only absolute URL allowed is the SVG namespace (an identifier, never fetched).
    #[test]
    fn page_names_no_other_host() {
        let allowed = ["http://www.w3.org/2000/svg"];
        for (at, _) in INDEX_HTML.match_indices("//") {
            let before = &INDEX_HTML[..at];
            if !(before.ends_with("http:") || before.ends_with("https:")) {
                continue;
            }
            let start = before
                .rfind(|c: char| !c.is_ascii_alphanumeric() && c != ':')
                .map_or(0, |i| i + 1);
            let url: String = INDEX_HTML[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '`' | ')'))
                .collect();
            assert!(
                allowed.contains(&url.as_str()),
                "the page names another host: {url}"
            );
        }
        for needle in [
            "src=\"http",
            "href=\"http",
            "@import",
            "url(",
            "import(",
            "<iframe",
            "WebSocket",
        ] {
            assert!(!INDEX_HTML.contains(needle), "the page contains {needle:?}");
        }
    }

    #[test]
    fn csp_limits_requests_to_the_origin() {
        let csp = INDEX_HTML
            .split("http-equiv=\"Content-Security-Policy\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("http"), "{csp}");
    }

    #[test]
    fn page_uses_the_api_it_is_designed_against() {
        for path in [
            "/v1/query?",
            "/v1/find?metric_type=",
            "merge=true",
            "Authorization",
            "sessionStorage",
        ] {
            assert!(APP_JS.contains(path), "app.js lacks {path}");
        }
        assert!(APP_JS.contains("add_key="), "app.js lacks add_key= (dst merges)");
        // Metric values come from user events: never parse them as HTML.
        for js in [APP_JS, DST_JS] {
            assert!(!js.contains("innerHTML") && !js.contains("insertAdjacentHTML"));
        }
    }
}
