//! YAML in and out, through serde-saphyr (the YAML crate kube-rs itself uses; serde_yaml is no
//! longer maintained): the limits every document the harness reads is held to, and an error's
//! place and message apart, so callers report them as `file:line:column: message` (the place
//! a [`Location`], which scenarios and manifests both use).
//!
//! Nothing here fails on its own: the functions return serde-saphyr's errors, which each caller
//! wraps in its module's error with what it was reading.

use std::fmt;
use std::path::PathBuf;

use serde::{de::DeserializeOwned, Serialize};

/// Where in a file something is (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// Line, counted from 1.
    pub line: usize,
    /// Column, counted from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// How deep a document may nest. Scenarios and manifests nest about ten levels (a Deployment's
/// container ports); serde-saphyr's default (64) is kept, and nesting past it is an error with
/// its place, not a stack overflow.
const MAX_DEPTH: usize = 64;

/// How many events aliases may replay in one document. The largest real input, Istio's mesh
/// configuration, uses no alias; a billion-laughs document stops here instead of growing.
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// The options every read uses: serde-saphyr's budget with the limits above, duplicate keys
/// refused (its default, as serde_yaml did), and no source snippet in messages (the harness
/// reports the place itself).
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH },
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: MAX_REPLAYED_EVENTS },
        with_snippet: false,
    }
}

/// Reads one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options())
}

/// Writes `value` as one YAML document (block style, two-space indent).
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(value)
}

/// Where in the document the error is: (line, column), both from 1.
pub fn location(e: &serde_saphyr::Error) -> Option<(usize, usize)> {
    e.location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column().max(1) as usize))
}

/// The error's message without its place (reported apart) or a snippet of the source. For a
/// scalar of the wrong type serde-saphyr says only what was expected (`invalid i32`); the scalar
/// found at the error's place in `source` is added (`invalid i32, found \`eighty\``).
pub fn message(e: &serde_saphyr::Error, source: &str) -> String {
    let text = e.without_snippet().to_string();
    let mut text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    if text.starts_with("invalid ") || text.starts_with("expected ") {
        if let Some(found) = location(e).and_then(|(l, c)| scalar_at(source, l, c)) {
            text.push_str(&format!(", found `{found}`"));
        }
    }
    text
}

/// The plain scalar that starts at (line, column) of `source`, up to the end of the line or a
/// flow separator; None when there is nothing there.
fn scalar_at(source: &str, line: usize, column: usize) -> Option<String> {
    let l = source.lines().nth(line.checked_sub(1)?)?;
    let rest: String = l.chars().skip(column.checked_sub(1)?).collect();
    let end = rest.find([',', '}', ']', '#']).unwrap_or(rest.len());
    let found = rest[..end].trim();
    (!found.is_empty()).then(|| found.to_string())
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct S {
        port: Option<i32>,
        ttl: Option<u32>,
    }

    #[test]
    fn a_wrong_scalar_is_named_with_its_place() {
        let text = "ttl: 1\nport: {x: 1}\n";
        let e = super::from_str::<S>("port: eighty\n").unwrap_err();
        assert_eq!(super::location(&e), Some((1, 7)));
        assert_eq!(
            super::message(&e, "port: eighty\n"),
            "invalid i32, found `eighty`"
        );
        let e = super::from_str::<S>(text).unwrap_err();
        assert!(!super::message(&e, text).contains(" at line "), "{e}");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_stop_at_the_limits() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            bomb.push_str(&format!(
                "{}: &{} [",
                (b'a' + i) as char,
                (b'a' + i) as char
            ));
            bomb.push_str(&vec![format!("*{}", (b'a' + i - 1) as char); 10].join(", "));
            bomb.push_str("]\n");
        }
        let e = super::from_str::<serde_json::Value>(&bomb).unwrap_err();
        assert!(
            super::message(&e, &bomb).contains("alias replay limit exceeded"),
            "{e}"
        );
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        let e = super::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(super::location(&e).is_some(), "{e}");
    }
}
