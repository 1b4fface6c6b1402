//! `meshmig demo`: a real Envoy splitting between stand-in frontends, until Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::split::parse_expect;
use meshmig::exit;

/// Serves the demo until Ctrl-C.
pub async fn demo(split: &str, abort_percent: f64, listen: SocketAddr) -> anyhow::Result<i32> {
    let weights: BTreeMap<String, u32> = match parse_expect(split) {
        Ok(m) => m.into_iter().map(|(k, v)| (k, v.round() as u32)).collect(),
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            return Ok(exit::INVALID_INPUT);
        }
    };
    let std::net::IpAddr::V4(ip) = listen.ip() else {
        eprintln!("meshmig: --listen must be an IPv4 address");
        return Ok(exit::INVALID_INPUT);
    };
    let envoy = meshmig::tools::find_envoy()?;
    let d = meshmig::backend::emulated::demo::Demo::start(
        &envoy,
        ip,
        listen.port(),
        &weights,
        abort_percent,
    )
    .await?;
    println!(
        "serving {} (weights {split}, {abort_percent}% answered 503); Ctrl-C stops",
        d.url
    );
    meshmig::shutdown_signal().await;
    d.stop().await;
    Ok(exit::PASS)
}
