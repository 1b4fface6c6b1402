//! Ports below 1024 served elsewhere: when this process may not bind port 80 and runs in no network
//! namespace of its own (see [`crate::preflight`]), the emulated
//! backend serves every port below 1024 at port + [`PORT_SHIFT`] (80 → 10080), and the checks
//! request the shifted port and record the change, and why, as a deviation in the report.

use std::net::SocketAddr;
use std::sync::OnceLock;

/// What is added to a port below 1024 when such ports cannot be bound (80 → 10080).
pub const PORT_SHIFT: u16 = 10_000;

/// Ports below 1024 moved up by [`PORT_SHIFT`] because they cannot be bound, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortShift {
    /// Why (for the report).
    pub why: String,
}

impl PortShift {
    /// The port actually bound for `port`.
    pub fn port(&self, port: u16) -> u16 {
        if port < 1024 {
            port + PORT_SHIFT
        } else {
            port
        }
    }

    /// `addr` with its port shifted.
    pub fn addr(&self, addr: SocketAddr) -> SocketAddr {
        SocketAddr::new(addr.ip(), self.port(addr.port()))
    }

    /// `url` with its (explicit or default) port shifted, and whether it changed.
    pub fn url(&self, url: &str) -> (String, bool) {
        let Ok(mut u) = reqwest::Url::parse(url) else {
            return (url.to_string(), false);
        };
        let Some(port) = u.port_or_known_default() else {
            return (url.to_string(), false);
        };
        let shifted = self.port(port);
        if shifted == port || u.set_port(Some(shifted)).is_err() {
            return (url.to_string(), false);
        }
        (u.to_string(), true)
    }

    /// The deviation a check records when it requested `shifted` instead of `url`.
    pub fn deviation(&self, url: &str, shifted: &str) -> String {
        format!(
            "requested {shifted} instead of the procedure's {url}: {} (ports below 1024 are served at port + {PORT_SHIFT}; see docs/commands.md, \"Before A1: preflight, and running without root\")",
            self.why
        )
    }
}

static FALLBACK_WHY: OnceLock<String> = OnceLock::new();

/// Records why this process uses shifted ports (set by `meshmig run` after [`crate::preflight::emulated`]), for
/// the emulated backend's report.
pub fn set_shift_reason(why: String) {
    let _ = FALLBACK_WHY.set(why);
}

/// Why ports are shifted, when [`set_shift_reason`] recorded it.
pub fn shift_reason() -> Option<&'static str> {
    FALLBACK_WHY.get().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("http://127.80.0.1/", "http://127.80.0.1:10080/", true)]
    #[case("http://www.example.com/", "http://www.example.com:10080/", true)]
    #[case("http://127.80.0.1:8080/", "http://127.80.0.1:8080/", false)]
    #[case("http://127.80.0.1:443/x", "http://127.80.0.1:10443/x", true)]
    fn urls_follow_the_shift(#[case] url: &str, #[case] want: &str, #[case] changed: bool) {
        let s = PortShift { why: "w".into() };
        assert_eq!(s.url(url), (want.to_string(), changed));
    }
}
