//! Cost of reading a footer: scraper on the whole page against scraper on the `<footer>` fragment
//! only (what `meshmig::footer::parse` does), on every sample page in ../shared/footers.
//!
//!   cargo run --release -p meshmig --example footer_cost [-- ITERATIONS]

use std::time::Instant;

use scraper::{Html, Selector};

/// The whole-page way: parse the document, select `footer b`.
fn whole_page(page: &str) -> Option<String> {
    let html = Html::parse_document(page);
    let sel = Selector::parse("footer b").unwrap();
    for b in html.select(&sel) {
        let label: String = b.text().collect();
        if label.trim() == "Pod:" {
            return b
                .next_sibling()
                .and_then(|n| n.value().as_text().map(|t| t.trim().to_string()));
        }
    }
    None
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = meshmig_testsupport::footers();
    let mut pages = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        pages.push((
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    pages.sort();
    println!("| page | bytes | whole page µs | footer fragment µs | same pod |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, page) in &pages {
        let t = Instant::now();
        let mut a = None;
        for _ in 0..n {
            a = whole_page(std::hint::black_box(page));
        }
        let whole = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        let mut b = None;
        for _ in 0..n {
            b = meshmig::footer::parse(std::hint::black_box(page))
                .ok()
                .and_then(|f| f.pod);
        }
        let frag = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "| {name} | {} | {whole:.1} | {frag:.1} | {} |",
            page.len(),
            a == b
        );
    }
}
