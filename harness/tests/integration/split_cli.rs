//! `meshmig split` against real Envoy splits served by `meshmig demo`: exit 0 for a correct
//! 50/50, exit 1 for 70/30, for 50/50 with 5% of answers 503, and for 100/0 leaking 1%.

// Linux only: these bind loopback addresses beyond 127.0.0.1 (127.RUN.x.y), which Linux routes
// to `lo` by default and macOS does not (its lo0 has 127.0.0.1 alone).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Demo {
    child: Child,
    url: String,
}

impl Demo {
    fn start(listen: &str, split: &str, abort: &str) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshmig"))
            .args([
                "demo",
                "--split",
                split,
                "--abort-percent",
                abort,
                "--listen",
                listen,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("serving ")
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("demo did not start: {line:?}"))
            .to_string();
        Demo { child, url }
    }

    fn split(&self, expect: &str, extra: &[&str]) -> (i32, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_meshmig"))
            .args(["split", "--url", &self.url, "--expect", expect])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn listen(n: u8) -> String {
    format!("127.{}.{n}.1:8081", 64 + (std::process::id() % 150) as u8)
}

#[test]
fn a_real_fifty_fifty_split_is_consistent() {
    let d = Demo::start(&listen(1), "a=50,b=50", "0");
    let (code, out) = d.split("a=50,b=50", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: consistent"), "{out}");
}

#[test]
fn seventy_thirty_is_not() {
    let d = Demo::start(&listen(2), "a=70,b=30", "0");
    let (code, out) = d.split("a=50,b=50", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("SPRT rejected"), "{out}");
}

#[test]
fn five_percent_503s_fail_the_error_gate() {
    let d = Demo::start(&listen(3), "a=50,b=50", "5");
    let (code, out) = d.split("a=50,b=50", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error status 503"), "{out}");
}

#[test]
fn a_one_percent_leak_from_an_expected_hundred_zero_is_caught() {
    let d = Demo::start(&listen(4), "a=99,b=1", "0");
    // beta 1e-6: the test itself misses the leak with probability 1e-6, not the default 1e-3.
    let (code, out) = d.split("a=100,b=0", &["--beta", "1e-6"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("expected to serve none"), "{out}");
}

#[test]
fn json_verdict_carries_counts_interval_decision_and_parameters() {
    let d = Demo::start(&listen(5), "a=50,b=50", "0");
    let (code, out) = d.split("a=50,b=50", &["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["decision"]["decision"], "consistent");
    assert!(v["verdict"]["shares"]["a"]["interval"][0].as_f64().unwrap() < 0.5);
    assert_eq!(v["verdict"]["params"]["alpha"], 1e-4);
    assert!(v["samples"]["requests"].as_u64().unwrap() > 0);
    assert!(v["samples"]["seconds"].as_f64().unwrap() > 0.0);
}

/// The demo's address for the n-th destination (`listen`'s last octet + 1 + n), as `--name`
/// takes it.
fn frontend_ip(listen: &str, n: u8) -> String {
    let ip: std::net::Ipv4Addr = listen.split(':').next().unwrap().parse().unwrap();
    let o = ip.octets();
    std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1 + n).to_string()
}

/// Each identity extractor, on one real Envoy split 70/30: the true weights are consistent and
/// 50/50 is not, so the extractor really tells the destinations apart (a reading that counted
/// everything as one destination, or nothing, could not pass both).
#[test]
fn every_identity_extractor_verifies_a_real_envoy_split() {
    let at = listen(6);
    let d = Demo::start(&at, "a=70,b=30", "0");
    let a = format!("--name={}=a", frontend_ip(&at, 0));
    let b = format!("--name={}=b", frontend_ip(&at, 1));
    for identify in [
        "footer",
        "header:x-served-by",
        "regex:Cluster: </b>([^<]+)",
        "upstream-host",
    ] {
        let args = ["--identify", identify, &a, &b];
        let (code, out) = d.split("a=70,b=30", &args);
        assert_eq!(code, 0, "{identify}: {out}");
        assert!(out.contains("decision: consistent"), "{identify}: {out}");
        let (code, out) = d.split("a=50,b=50", &args);
        assert_eq!(code, 1, "{identify}: {out}");
        assert!(out.contains("SPRT rejected"), "{identify}: {out}");
    }
    // Without names, the upstream host is the address Envoy reports.
    let (ip_a, ip_b) = (frontend_ip(&at, 0), frontend_ip(&at, 1));
    let expect = format!("{ip_a}:8080=70,{ip_b}:8080=30");
    let (code, out) = d.split(&expect, &["--identify", "upstream-host"]);
    assert_eq!(code, 0, "{out}");
}

/// An answer the extractor cannot read is an error answer, named by its cause, and a malformed
/// extractor is invalid input.
#[test]
fn unreadable_identities_fail_and_bad_extractors_are_refused() {
    let d = Demo::start(&listen(7), "a=50,b=50", "0");
    let (code, out) = d.split("a=50,b=50", &["--identify", "header:x-not-sent"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error no header x-not-sent"), "{out}");
    let (code, out) = d.split("a=50,b=50", &["--identify", "regex:served by ([a-z]+)"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error no match for the body pattern"), "{out}");
    let (code, _) = d.split("a=50,b=50", &["--identify", "regex:(unclosed"]);
    assert_eq!(code, 2);
    let (code, _) = d.split("a=50,b=50", &["--identify", "cookie"]);
    assert_eq!(code, 2);
}
