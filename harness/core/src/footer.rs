//! Reading the Online Boutique footer: which cluster, zone and pod served a page.
//!
//! The frontend renders deployment details into `<footer>` (see PROCEDURE.md, "The footer").
//! Only the footer is read: the `<footer>` element is cut out of the page and parsed with
//! `scraper`, so product names or anything else on the page can never be taken for an identity.

use scraper::{Html, Node, Selector};
use serde::Serialize;

/// What a footer says about who served the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FooterInfo {
    /// identified, loading or absent.
    pub state: FooterState,
    /// `Cluster:` value, when printed and not empty.
    pub cluster: Option<String>,
    /// `Zone:` value, when printed and not empty.
    pub zone: Option<String>,
    /// `Pod:` value, when printed and not empty.
    pub pod: Option<String>,
}

/// The footer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FooterState {
    /// A cluster or pod name is printed.
    Identified,
    /// "Deployment details are still loading."
    Loading,
    /// A footer without deployment details.
    Absent,
}

/// Errors reading a footer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FooterError {
    /// The page has no `<footer>` element.
    #[error("reading the footer: the page has no <footer> element")]
    NoFooter,
}

/// Cuts the `<footer>...</footer>` element out of a page (ASCII case-insensitive).
fn footer_fragment(page: &str) -> Option<&str> {
    let lower_start = find_ci(page, "<footer", 0)?;
    let end = find_ci(page, "</footer>", lower_start)?;
    Some(&page[lower_start..end + "</footer>".len()])
}

fn find_ci(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    let mut i = from;
    // Every needle here starts with '<': jump from one '<' to the next.
    while let Some(off) = h.get(i..)?.iter().position(|&c| c == n[0]) {
        i += off;
        if h.get(i..i + n.len())?.eq_ignore_ascii_case(n) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Reads the footer of an Online Boutique page.
pub fn parse(page: &str) -> Result<FooterInfo, FooterError> {
    let fragment = footer_fragment(page).ok_or(FooterError::NoFooter)?;
    let html = Html::parse_fragment(fragment);
    let footer_sel = Selector::parse("footer").expect("static selector");
    let bold = Selector::parse("b").expect("static selector");
    let footer = html
        .select(&footer_sel)
        .next()
        .ok_or(FooterError::NoFooter)?;
    let (mut cluster, mut zone, mut pod) = (None, None, None);
    for b in footer.select(&bold) {
        let label: String = b.text().collect::<String>().trim().to_string();
        // The value is the text that follows the <b> label, up to the next element.
        let value = b
            .next_sibling()
            .and_then(|n| match n.value() {
                Node::Text(t) => Some(t.trim().to_string()),
                _ => None,
            })
            .filter(|v| !v.is_empty());
        match label.as_str() {
            "Cluster:" => cluster = value,
            "Zone:" => zone = value,
            "Pod:" => pod = value,
            _ => {}
        }
    }
    let text: String = footer.text().collect();
    let state = if cluster.is_some() || pod.is_some() {
        FooterState::Identified
    } else if text.contains("Deployment details are still loading") {
        FooterState::Loading
    } else {
        FooterState::Absent
    };
    Ok(FooterInfo {
        state,
        cluster,
        zone,
        pod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn sample(name: &str) -> String {
        std::fs::read_to_string(meshmig_testsupport::footers().join(name)).unwrap()
    }

    #[rstest]
    #[case(
        "gke-cluster-zone-pod.html",
        FooterState::Identified,
        Some("cluster-with-csm"),
        Some("us-central1-a"),
        Some("frontend-6b8d7c9f5d-x2x7q")
    )]
    #[case(
        "kind-pod-only.html",
        FooterState::Identified,
        None,
        None,
        Some("frontend-7d9c6b5f4-mq8zl")
    )]
    #[case("details-loading.html", FooterState::Loading, None, None, None)]
    #[case(
        "v0.3.5-empty-cluster.html",
        FooterState::Identified,
        None,
        None,
        Some("frontend-5c7f8d9b6-hk2vn")
    )]
    fn reads_every_shared_footer_sample(
        #[case] file: &str,
        #[case] state: FooterState,
        #[case] cluster: Option<&str>,
        #[case] zone: Option<&str>,
        #[case] pod: Option<&str>,
    ) {
        let page = sample(file);
        let info = parse(&page).unwrap();
        assert_eq!(info.state, state);
        assert_eq!(info.cluster.as_deref(), cluster);
        assert_eq!(info.zone.as_deref(), zone);
        assert_eq!(info.pod.as_deref(), pod);
    }

    #[test]
    fn page_without_footer_is_an_error() {
        assert_eq!(
            parse("<html><body><b>Pod: </b>x</body></html>"),
            Err(FooterError::NoFooter)
        );
    }

    #[test]
    fn footer_without_details_is_absent() {
        let info = parse("<html><footer><p>demo</p></footer></html>").unwrap();
        assert_eq!(info.state, FooterState::Absent);
    }

    #[test]
    fn identity_outside_the_footer_is_ignored() {
        let page =
            "<main><b>Cluster: </b>intruder<br/></main><footer><b>Pod: </b>frontend-a-b</footer>";
        let info = parse(page).unwrap();
        assert_eq!(info.cluster, None);
        assert_eq!(info.pod.as_deref(), Some("frontend-a-b"));
    }
}
