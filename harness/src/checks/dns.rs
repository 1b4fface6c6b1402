//! Checks on DNS: the domain's record as the server answers it, and what the users' resolver holds.

use serde_json::json;

use super::{CheckResult, Ctx, R};
use meshmig_backends::BackendError;
/// What the users' resolver holds for the domain (it resolves now when it holds nothing, as a
/// client would).
pub async fn clients_resolve(ctx: &Ctx<'_>, address: &str, max_ttl: u32) -> R {
    let domain = &ctx.scenario.dns.domain;
    let mut held = ctx.clients.held(domain);
    let mut fresh = false;
    if held.is_none() {
        // The answer itself, not the cache read after it: a short TTL at a fast DNS time scale
        // can run out while the query is on its way.
        let answer = ctx
            .clients
            .ask(domain)
            .await
            .map_err(|e| BackendError::infra(format!("resolving {domain}"), e))?;
        held = Some(answer);
        fresh = true;
    }
    Ok(clients_hold(
        held.as_ref(),
        domain,
        address,
        max_ttl,
        fresh,
        ctx.clients.scale(),
    ))
}

/// The verdict of `clients_resolve` on what is held.
pub fn clients_hold(
    held: Option<&meshmig_core::dns::Held>,
    domain: &str,
    address: &str,
    max_ttl: u32,
    fresh: bool,
    scale: f64,
) -> CheckResult {
    let ok = held
        .is_some_and(|h| h.ttl <= max_ttl && h.addresses.iter().any(|a| a.to_string() == address));
    CheckResult::new(
        "clients_resolve",
        ok,
        format!("clients resolve {domain} to {address} with a TTL of at most {max_ttl} s"),
        match held {
            Some(h) => {
                format!(
                "clients {} {} with TTL {} s ({:.2} s of {:.2} s left at DNS time scale {scale})",
                if fresh { "just resolved" } else { "hold" },
                h.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                h.ttl,
                h.remaining_seconds,
                h.held_seconds
            )
            }
            None => "no answer held".into(),
        },
        json!({"held": held, "ttl_scale": scale}),
    )
}

/// The domain's A record and TTL, as the DNS server answers.
pub async fn dns_record(ctx: &Ctx<'_>, address: &str, ttl: u32) -> R {
    let server = ctx.backend.dns_server();
    let domain = &ctx.scenario.dns.domain;
    let (ok, observed, evidence) = match meshmig_core::dns::query_a(server, domain).await {
        Ok((ips, got_ttl)) => {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            (
                ips == [address.to_string()] && got_ttl == ttl,
                format!("A {ips:?} TTL {got_ttl}"),
                json!({"server": server.to_string(), "answer": ips, "ttl": got_ttl}),
            )
        }
        Err(e) => (false, e.to_string(), json!({"server": server.to_string()})),
    };
    Ok(CheckResult::new(
        "dns_record",
        ok,
        format!("{domain} A {address} TTL {ttl}"),
        observed,
        evidence,
    ))
}
