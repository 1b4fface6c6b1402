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
            String::from_utf8_lossy(&o.stdout).into_owned(),
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
