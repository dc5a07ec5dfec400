//! Reading the page's serialized DOM.

use std::collections::BTreeMap;

/// The serialized DOM, read with just enough HTML knowledge for the page's own markup.
pub(crate) struct Dom(pub(crate) String);

/// One start tag's attributes.
pub(crate) type Attrs = BTreeMap<String, String>;

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn parse_attrs(tag: &str) -> Attrs {
    let mut attrs = Attrs::new();
    let mut rest = tag.split_once(char::is_whitespace).map_or("", |(_, r)| r);
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(value) = after.strip_prefix('"') else {
            break;
        };
        let end = value.find('"').unwrap();
        attrs.insert(
            name.rsplit(char::is_whitespace).next().unwrap().to_owned(),
            unescape(&value[..end]),
        );
        rest = &value[end + 1..];
    }
    attrs
}

impl Dom {
    /// The outer HTML of the card showing metric `id` (e.g. `add/event`).
    pub(crate) fn card(&self, id: &str) -> Dom {
        let open = format!("<section class=\"card\" data-metric=\"{id}\">");
        let start = self
            .0
            .find(&open)
            .unwrap_or_else(|| panic!("no card {id} in the page: {}", self.status()));
        let end = start + self.0[start..].find("</section>").unwrap();
        Dom(self.0[start..end].to_owned())
    }

    /// Every start tag `<name ...>` with its attributes and the text up to the next tag.
    pub(crate) fn tags(&self, name: &str) -> Vec<(Attrs, String)> {
        let open = format!("<{name} ");
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(i) = self.0[at..].find(&open) {
            let start = at + i;
            let close = start + self.0[start..].find('>').unwrap();
            let text_end = close + self.0[close..].find('<').unwrap_or(self.0.len() - close);
            found.push((
                parse_attrs(&self.0[start + 1..close]),
                unescape(&self.0[close + 1..text_end]),
            ));
            at = close;
        }
        found
    }

    /// The `data-value` and the shown text of the stat with `data-role` = `role`.
    pub(crate) fn stat(&self, role: &str) -> (String, String) {
        self.tags("b")
            .into_iter()
            .find(|(a, _)| a.get("data-role").map(String::as_str) == Some(role))
            .map(|(a, text)| (a["data-value"].clone(), text))
            .unwrap_or_else(|| panic!("no stat {role}"))
    }

    /// The outer HTML of the first table row whose start tag begins with `open`.
    pub(crate) fn row_starting(&self, open: &str) -> Dom {
        let start = self
            .0
            .find(open)
            .unwrap_or_else(|| panic!("no row {open} in {}", self.0));
        let end = start + self.0[start..].find("</tr>").unwrap();
        Dom(self.0[start..end].to_owned())
    }

    /// The outer HTML of the first ranked-table row of `member`.
    pub(crate) fn row_html(&self, member: &str) -> Dom {
        self.row_starting(&format!("<tr data-member=\"{member}\""))
    }

    /// The outer HTML of the per-bucket table row of `date`.
    pub(crate) fn bucket_row(&self, date: &str) -> Dom {
        self.row_starting(&format!("<tr data-bucket=\"{date}\""))
    }

    /// The ranked-table row of `member`: its `data-value` and the value shown.
    pub(crate) fn row(&self, member: &str) -> (String, String) {
        let row = self.row_html(member);
        let value = row.tags("tr")[0].0["data-value"].clone();
        let shown = row
            .tags("td")
            .into_iter()
            .find(|(a, _)| a.get("class").map(String::as_str) == Some("num"))
            .map(|(_, t)| t)
            .unwrap();
        (value, shown)
    }

    /// The rank shown for `member`.
    pub(crate) fn rank(&self, member: &str) -> String {
        self.row_html(member).tags("tr")[0].0["data-rank"].clone()
    }

    pub(crate) fn body(&self) -> Attrs {
        self.tags("body").into_iter().next().unwrap().0
    }

    pub(crate) fn status(&self) -> String {
        self.tags("p")
            .into_iter()
            .find(|(a, _)| a.get("id").map(String::as_str) == Some("status"))
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    pub(crate) fn netlog(&self) -> String {
        self.tags("pre")
            .into_iter()
            .find(|(a, _)| a.get("id").map(String::as_str) == Some("netlog"))
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    pub(crate) fn cards(&self) -> Vec<String> {
        self.tags("section")
            .into_iter()
            .filter_map(|(a, _)| a.get("data-metric").cloned())
            .collect()
    }

    /// The page finished loading, and its own log saw requests but none that left its origin.
    pub(crate) fn assert_ready(&self) {
        let body = self.body();
        assert_eq!(
            body.get("data-state").map(String::as_str),
            Some("ready"),
            "page not ready: {}",
            self.status()
        );
        assert_ne!(body["data-requests"], "0", "the page's request log saw nothing");
        assert!(self.netlog().contains("/v1/query?"), "{}", self.netlog());
        assert_eq!(
            body["data-foreign-requests"],
            "0",
            "requests to other hosts: {}",
            self.netlog()
        );
    }
}
