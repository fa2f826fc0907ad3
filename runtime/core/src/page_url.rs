//! `[web] error_page` and `[web] maintenance_page`: an app's own pages, shown instead of
//! the router's plain ones when it answers an error itself (H10, H12, H13, H14…) or the
//! app is in maintenance mode (Heroku's `ERROR_PAGE_URL` and `MAINTENANCE_PAGE_URL`).
//!
//! The router never fetches them. It answers, with the same status, a small HTML page
//! that frames the URL, so the visitor's browser loads it: the edge node asks nothing of
//! wherever an app points (no request to an address an app chose, from inside the
//! host's network), and a slow or missing page costs the router nothing. Only `https`
//! URLs, so a page framed in an HTTPS answer is not blocked as mixed content, and the
//! page is fetched no less privately than the app it stands for.

use serde::{Deserialize, Serialize};

/// Longest page URL a `wdeploy.toml` may give.
pub const MAX_PAGE_URL: usize = 2048;

/// An absolute `https://` URL of a page, without credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PageUrl(String);

crate::text::validated_string!(PageUrl, String);

/// Which of the app's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomPage {
    /// For errors the router answers itself.
    Error,
    /// For maintenance mode.
    Maintenance,
}

impl PageUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An absolute `https` URL with a host and no credentials, within [`MAX_PAGE_URL`].
    fn check(text: &str) -> Result<(), String> {
        let wrong = |why: &str| {
            format!("`{text}` is not a page URL: {why} (write it as https://HOST/PATH)")
        };
        if text.len() > MAX_PAGE_URL {
            return Err(format!(
                "a page URL of {} bytes is over the limit of {MAX_PAGE_URL}",
                text.len()
            ));
        }
        let url = url::Url::parse(text).map_err(|e| wrong(&e.to_string()))?;
        if url.scheme() != "https" {
            return Err(wrong("only https pages are shown"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(wrong("it names no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(wrong("it holds credentials, which every visitor would see"));
        }
        Ok(())
    }

    /// The router's answer for this page: an HTML document titled `title` whose whole
    /// window is the page, with every character that could end the attribute escaped.
    pub fn framed(&self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>html,body{{margin:0;height:100%}}\
             iframe{{display:block;border:0;width:100%;height:100%}}</style></head>\n\
             <body><iframe src=\"{}\"></iframe></body></html>\n",
            escaped(title),
            escaped(&self.0)
        )
    }
}

/// `text` with the five characters HTML gives a meaning escaped.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_https_urls_without_credentials_are_pages() {
        let page: PageUrl = "https://pages.example.com/oops.html".parse().unwrap();
        assert_eq!(page.as_str(), "https://pages.example.com/oops.html");
        for (bad, why) in [
            ("http://pages.example.com/", "only https"),
            ("javascript:alert(1)", "only https"),
            ("/oops.html", "relative URL"),
            ("https://user:pw@pages.example.com/", "credentials"),
            ("", "relative URL"),
        ] {
            let err = bad.parse::<PageUrl>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_PAGE_URL));
        assert!(
            long.parse::<PageUrl>()
                .unwrap_err()
                .contains("over the limit")
        );
    }

    #[test]
    fn a_framed_page_cannot_break_out_of_its_attribute() {
        let page: PageUrl = "https://example.com/a?q=\"><script>x</script>&b='c'"
            .parse()
            .unwrap();
        let html = page.framed("Application error");
        let src = html
            .split("<iframe src=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(!src.contains(['<', '>', '\'']), "{src}");
        assert!(html.contains("<title>Application error</title>"), "{html}");
        assert_eq!(html.matches("<script").count(), 0, "{html}");
    }
}
