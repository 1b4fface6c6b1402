//! Who served an answer: identity extractors, so a split can be verified for any application, not
//! only Online Boutique.
//!
//! - `footer` (the default): Online Boutique's footer, its cluster name (or pod name, mapped to a
//!   cluster);
//! - `header:NAME`: a response header, e.g. one an Istio VirtualService adds per destination
//!   (`route[].headers.response.add: {x-served-by: cluster-with-istio}`, which Envoy applies as
//!   the weighted cluster's `response_headers_to_add`);
//! - `regex:PATTERN`: a regular expression on the body; its first capture group, or the whole
//!   match when it has none;
//! - `upstream-host` or `upstream-host:NAME`: the upstream address Envoy reports for the request,
//!   in a response header (default `x-upstream-host`) that the gateway fills with Envoy's
//!   `%UPSTREAM_HOST%` command operator (`response_headers_to_add`, see the README). The address
//!   (`IP:PORT`) is named by `names` (`ADDRESS=DEST` or `IP=DEST`).
//!
//! What an extractor finds is then translated by `names` (value → destination); a value with no
//! entry is its own destination, so an unexpected one shows in the verdict under its own name.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderName};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::footer::{self, FooterInfo, FooterState};

/// Errors reading an extractor's specification.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not one of the forms.
    #[error("reading the identity extractor {given:?}: expected footer, header:NAME, regex:PATTERN, upstream-host or upstream-host:NAME")]
    Form {
        /// What was given.
        given: String,
    },
    /// The header name is not a valid HTTP header name.
    #[error("reading the header name {name:?} of identity extractor {given:?}")]
    Header {
        /// The header name.
        name: String,
        /// The extractor.
        given: String,
        /// Why.
        #[source]
        source: reqwest::header::InvalidHeaderName,
    },
    /// The pattern does not compile.
    #[error("compiling the pattern of identity extractor {given:?}")]
    Regex {
        /// The extractor.
        given: String,
        /// Why.
        #[source]
        source: regex::Error,
    },
}

/// The header `upstream-host` reads when none is named.
pub const UPSTREAM_HOST_HEADER: &str = "x-upstream-host";

/// Where an answer's identity is read.
#[derive(Debug, Clone, Default)]
pub enum Extractor {
    /// Online Boutique's footer.
    #[default]
    Footer,
    /// A response header.
    Header(HeaderName),
    /// A pattern on the body.
    BodyRegex(Regex),
    /// The upstream host Envoy reports, in this response header.
    UpstreamHost(HeaderName),
}

impl FromStr for Extractor {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let header = |name: &str| {
            HeaderName::from_str(name).map_err(|source| IdentityError::Header {
                name: name.to_string(),
                given: s.to_string(),
                source,
            })
        };
        match s.split_once(':') {
            None if s == "footer" => Ok(Self::Footer),
            None if s == "upstream-host" => Ok(Self::UpstreamHost(HeaderName::from_static(
                UPSTREAM_HOST_HEADER,
            ))),
            Some(("header", name)) => Ok(Self::Header(header(name)?)),
            Some(("upstream-host", name)) => Ok(Self::UpstreamHost(header(name)?)),
            Some(("regex", pattern)) => {
                Regex::new(pattern)
                    .map(Self::BodyRegex)
                    .map_err(|source| IdentityError::Regex {
                        given: s.to_string(),
                        source,
                    })
            }
            _ => Err(IdentityError::Form {
                given: s.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Footer => write!(f, "footer"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::BodyRegex(r) => write!(f, "regex:{}", r.as_str()),
            Self::UpstreamHost(h) => write!(f, "upstream-host:{h}"),
        }
    }
}

/// A split check's `identify:` in a scenario: the text as written, and the extractor it names,
/// parsed once, when the scenario is read. A text that names none is kept with its error, which
/// loading reports at the step (as invalid input) and which a check run without loading fails on.
#[derive(Debug, Clone)]
pub struct Identify {
    written: String,
    parsed: Result<Extractor, Arc<IdentityError>>,
}

impl Identify {
    /// Parses `written`; never fails (the error is kept, see [`Identify::extractor`]).
    pub fn new(written: impl Into<String>) -> Self {
        let written = written.into();
        let parsed = written.parse().map_err(Arc::new);
        Self { written, parsed }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The extractor, or why the text names none.
    pub fn extractor(&self) -> Result<&Extractor, &IdentityError> {
        self.parsed.as_ref().map_err(|e| e.as_ref())
    }
}

/// Equal when written alike.
impl PartialEq for Identify {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

/// Written back as it was read.
impl Serialize for Identify {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

/// Read as a string, then parsed (see [`Identify::new`]).
impl<'de> Deserialize<'de> for Identify {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// A successful answer: what the extractors read.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (lossy UTF-8).
    pub body: String,
}

/// Why an answer could not be attributed: a cause (the error's key in the report) and an example.
pub type Unattributed = (String, String);

/// The footer of a page, or why there is none.
pub fn footer_of(page: &Page) -> Result<FooterInfo, Unattributed> {
    footer::parse(&page.body).map_err(|e| ("no footer".into(), e.to_string()))
}

/// Why a footer names no destination.
pub fn unidentified(f: &FooterInfo) -> Unattributed {
    let cause = match f.state {
        FooterState::Loading => "footer still loading",
        FooterState::Absent => "footer without details",
        FooterState::Identified => "unknown cluster or pod",
    };
    (cause.into(), serde_json::to_string(f).unwrap_or_default())
}

/// What a failed answer (non-2xx) says went wrong, for an example: the error detail of Online
/// Boutique's error page (its `<pre>`, where the frontend's `renderHTTPError` puts the error
/// chain: "could not retrieve currencies: rpc error: …"), else the page's `<title>`, else its
/// first line that is not blank; at most 200 characters. A page's first line alone is
/// `<!DOCTYPE html>`, which says nothing.
pub fn error_example(body: &str) -> String {
    let doc = scraper::Html::parse_document(body);
    for sel in ["pre", "title"] {
        let sel = scraper::Selector::parse(sel).expect("static selector");
        let text = doc
            .select(&sel)
            .flat_map(|e| e.text())
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() {
            return head(&text, 200);
        }
    }
    head(
        body.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default(),
        200,
    )
}

/// The first `max` characters of a text, for an example.
fn head(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Reads who served an answer and names the destination.
#[derive(Debug, Clone, Default)]
pub struct Identifier {
    /// Where the identity is read.
    pub extractor: Extractor,
    /// Value read → destination (for the footer: a real cluster name → the procedure's name).
    pub names: BTreeMap<String, String>,
    /// Footer only: pod name → cluster, for footers that print only the pod.
    pub pods: BTreeMap<String, String>,
}

impl Identifier {
    /// The value the extractor reads from a page.
    pub fn value(&self, page: &Page) -> Result<String, Unattributed> {
        let header = |h: &HeaderName| -> Result<String, Unattributed> {
            let v = page.headers.get(h).ok_or_else(|| {
                let present: Vec<&str> = page.headers.keys().map(|k| k.as_str()).collect();
                (
                    format!("no header {h}"),
                    format!("headers present: {}", present.join(", ")),
                )
            })?;
            let v = v
                .to_str()
                .map_err(|_| (format!("header {h} not text"), format!("{v:?}")))?
                .trim();
            if v.is_empty() || v == "-" {
                // Envoy prints `-` for an operator with no value (no upstream host chosen).
                return Err((format!("header {h} empty"), format!("{h}: {v:?}")));
            }
            Ok(v.to_string())
        };
        match &self.extractor {
            Extractor::Footer => {
                let f = footer_of(page)?;
                if let Some(c) = &f.cluster {
                    return Ok(c.clone());
                }
                match f.pod.as_ref().and_then(|p| self.pods.get(p)) {
                    Some(c) => Ok(c.clone()),
                    None => Err(unidentified(&f)),
                }
            }
            Extractor::Header(h) | Extractor::UpstreamHost(h) => header(h),
            Extractor::BodyRegex(r) => {
                let caps = r.captures(&page.body).ok_or_else(|| {
                    (
                        "no match for the body pattern".to_string(),
                        format!(
                            "/{}/ on a body beginning {:?}",
                            r.as_str(),
                            head(&page.body, 120)
                        ),
                    )
                })?;
                let m = caps
                    .get(1)
                    .or_else(|| caps.get(0))
                    .map(|m| m.as_str().trim());
                match m {
                    Some(v) if !v.is_empty() => Ok(v.to_string()),
                    _ => Err((
                        "empty match for the body pattern".into(),
                        format!("/{}/", r.as_str()),
                    )),
                }
            }
        }
    }

    /// The destination of a value: its name, else (for an address) its IP's name, else itself.
    pub fn destination(&self, value: &str) -> String {
        if let Some(d) = self.names.get(value) {
            return d.clone();
        }
        if let Extractor::UpstreamHost(_) = self.extractor {
            if let Ok(a) = value.parse::<std::net::SocketAddr>() {
                if let Some(d) = self.names.get(&a.ip().to_string()) {
                    return d.clone();
                }
            }
        }
        value.to_string()
    }

    /// Who served a page.
    pub fn identify(&self, page: &Page) -> Result<String, Unattributed> {
        self.value(page).map(|v| self.destination(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::online_boutiques_error_page(
        "<!DOCTYPE html>\n<html><head><title>Online Boutique</title></head><body>\n<h3>Uh, oh!</h3>\n<pre class=\"border border-danger p-3\">could not retrieve data from\n  cartservice (cartservice:7070): rpc error: code = Unavailable</pre></body></html>",
        "could not retrieve data from cartservice (cartservice:7070): rpc error: code = Unavailable"
    )]
    #[case::an_html_page_without_detail(
        "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head></html>",
        "503 Service Unavailable"
    )]
    #[case::envoys_plain_text(
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    )]
    #[case::leading_blank_lines("\n\n  no healthy upstream\n", "no healthy upstream")]
    fn a_failed_answer_is_exemplified_by_what_it_says_went_wrong(
        #[case] body: &str,
        #[case] want: &str,
    ) {
        assert_eq!(error_example(body), want);
    }

    fn page(headers: &[(&str, &str)], body: &str) -> Page {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(HeaderName::from_str(k).unwrap(), v.parse().unwrap());
        }
        Page {
            headers: h,
            body: body.into(),
        }
    }

    #[rstest]
    #[case("footer", "footer")]
    #[case("header:X-Served-By", "header:x-served-by")]
    #[case("regex:Cluster: </b>([^<]+)", "regex:Cluster: </b>([^<]+)")]
    #[case("upstream-host", "upstream-host:x-upstream-host")]
    #[case("upstream-host:x-envoy-host", "upstream-host:x-envoy-host")]
    fn forms_are_read(#[case] given: &str, #[case] shown: &str) {
        assert_eq!(given.parse::<Extractor>().unwrap().to_string(), shown);
    }

    #[rstest]
    #[case("cookie", "expected footer")]
    #[case("header:bad header", "header name")]
    #[case("regex:(unclosed", "compiling the pattern")]
    #[case("upstream-host:", "header name")]
    fn bad_forms_are_refused(#[case] given: &str, #[case] says: &str) {
        let e = given.parse::<Extractor>().unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }

    /// A scenario's `identify:` is parsed once, when read, and written back as it was written.
    #[test]
    fn identify_is_parsed_when_read_and_written_as_written() {
        let i: Identify = serde_json::from_str(r#""upstream-host""#).unwrap();
        assert_eq!(
            i.extractor().unwrap().to_string(),
            "upstream-host:x-upstream-host"
        );
        assert_eq!(serde_json::to_string(&i).unwrap(), r#""upstream-host""#);
        let bad: Identify = serde_json::from_str(r#""regex:(unclosed""#).unwrap();
        let e = bad.extractor().unwrap_err();
        assert!(e.to_string().contains("compiling the pattern"), "{e}");
        assert_eq!(bad.as_str(), "regex:(unclosed");
    }

    #[test]
    fn a_header_names_the_destination_and_its_absence_is_an_error() {
        let id = Identifier {
            extractor: "header:x-served-by".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(
            id.identify(&page(&[("x-served-by", "blue")], "")).unwrap(),
            "blue"
        );
        let (cause, example) = id.identify(&page(&[("server", "envoy")], "")).unwrap_err();
        assert_eq!(cause, "no header x-served-by");
        assert!(example.contains("server"), "{example}");
    }

    #[test]
    fn a_pattern_takes_its_first_group_or_the_whole_match() {
        let real = std::fs::read_to_string(
            meshmig_testsupport::footers().join("gke-cluster-zone-pod.html"),
        )
        .unwrap();
        let id = Identifier {
            extractor: "regex:Cluster: </b>([^<]+)".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(id.identify(&page(&[], &real)).unwrap(), "cluster-with-csm");
        let whole = Identifier {
            extractor: "regex:v[0-9]+".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(whole.identify(&page(&[], "served by v2")).unwrap(), "v2");
        assert_eq!(
            whole.identify(&page(&[], "served")).unwrap_err().0,
            "no match for the body pattern"
        );
    }

    #[test]
    fn an_upstream_address_is_named_by_address_or_by_ip() {
        let id = Identifier {
            extractor: "upstream-host".parse().unwrap(),
            names: [
                ("10.0.0.1:8080".to_string(), "istio".to_string()),
                ("10.0.0.2".to_string(), "csm".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let at = |v: &str| id.identify(&page(&[("x-upstream-host", v)], ""));
        assert_eq!(at("10.0.0.1:8080").unwrap(), "istio");
        assert_eq!(at("10.0.0.2:9090").unwrap(), "csm");
        assert_eq!(at("10.0.0.3:8080").unwrap(), "10.0.0.3:8080");
        // Envoy's `-`: the request reached no upstream.
        assert_eq!(at("-").unwrap_err().0, "header x-upstream-host empty");
    }

    #[test]
    fn the_footer_maps_real_names_and_pods() {
        let dir = meshmig_testsupport::footers();
        let gke = std::fs::read_to_string(dir.join("gke-cluster-zone-pod.html"))
            .unwrap()
            .replace("cluster-with-csm<", "cluster-with-csm-run42<");
        let kind = std::fs::read_to_string(dir.join("kind-pod-only.html")).unwrap();
        let pod = footer::parse(&kind).unwrap().pod.unwrap();
        let id = Identifier {
            names: [(
                "cluster-with-csm-run42".to_string(),
                "cluster-with-csm".to_string(),
            )]
            .into(),
            pods: [(pod, "cluster-with-istio".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(id.identify(&page(&[], &gke)).unwrap(), "cluster-with-csm");
        assert_eq!(
            id.identify(&page(&[], &kind)).unwrap(),
            "cluster-with-istio"
        );
        let plain = Identifier::default();
        assert_eq!(
            plain.identify(&page(&[], &gke)).unwrap(),
            "cluster-with-csm-run42"
        );
        assert_eq!(
            plain.identify(&page(&[], &kind)).unwrap_err().0,
            "unknown cluster or pod"
        );
    }
}
