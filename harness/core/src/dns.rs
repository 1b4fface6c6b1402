//! The embedded authoritative DNS server of the cut-over (step G), and the resolver that reads it.
//!
//! A real DNS server (hickory-server, UDP and TCP) on a loopback address serves the test domain's
//! A record with its TTL. Users reach the domain through [`ClientResolver`], one cache for the
//! whole run that asks the server (through hickory-resolver) only when the answer it holds has
//! run out, so answers are held exactly as long as their TTL (× the scenario's time scale) says.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::rdata::{A, SOA};
use hickory_resolver::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio_util::sync::CancellationToken;

/// Errors of the DNS server and resolver.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server's sockets could not be opened.
    #[error("starting the DNS server on {addr}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A name is not a valid domain.
    #[error("parsing domain {domain:?}: {message}")]
    Name {
        /// The domain.
        domain: String,
        /// Why.
        message: String,
    },
    /// A look-up failed.
    #[error("resolving {domain} through {server}: {message}")]
    Resolve {
        /// The domain.
        domain: String,
        /// The server asked.
        server: SocketAddr,
        /// What the resolver said.
        message: String,
    },
}

/// An authoritative server for one zone.
pub struct DnsServer {
    addr: SocketAddr,
    origin: Name,
    authority: Arc<InMemoryAuthority>,
    shutdown: CancellationToken,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    serial: std::sync::atomic::AtomicU32,
}

fn name(domain: &str) -> Result<Name, DnsError> {
    let fqdn = if domain.ends_with('.') {
        domain.to_string()
    } else {
        format!("{domain}.")
    };
    Name::from_str(&fqdn).map_err(|e| DnsError::Name {
        domain: domain.to_string(),
        message: e.to_string(),
    })
}

impl DnsServer {
    /// Starts a server for `zone` on `ip` (an ephemeral port, UDP and TCP).
    pub async fn start(ip: Ipv4Addr, zone: &str) -> Result<Self, DnsError> {
        let origin = name(zone)?;
        let bind = |e| DnsError::Bind {
            addr: SocketAddr::new(IpAddr::V4(ip), 0),
            source: e,
        };
        // UDP and TCP on one port: an ephemeral UDP port may be taken for TCP already, so retry.
        let mut attempt = 0;
        let (udp, tcp, addr) = loop {
            attempt += 1;
            let udp = tokio::net::UdpSocket::bind((ip, 0)).await.map_err(bind)?;
            let addr = udp.local_addr().map_err(bind)?;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp, addr),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 20 => continue,
                Err(e) => return Err(DnsError::Bind { addr, source: e }),
            }
        };

        let mut authority = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_str("ns.")
                .expect("static name")
                .append_domain(&origin)
                .unwrap_or(origin.clone()),
            Name::from_str("hostmaster.")
                .expect("static name")
                .append_domain(&origin)
                .unwrap_or(origin.clone()),
            1,
            3600,
            600,
            86400,
            5,
        );
        authority.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
        let authority = Arc::new(authority);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![authority.clone()]);
        let mut server = ServerFuture::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        let shutdown = server.shutdown_token().clone();
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Ok(Self {
            addr,
            origin,
            authority,
            shutdown,
            task: tokio::sync::Mutex::new(Some(task)),
            serial: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets `domain`'s A record to `address` with `ttl` (replacing any previous one).
    pub async fn set_a(&self, domain: &str, address: Ipv4Addr, ttl: u32) -> Result<(), DnsError> {
        let n = name(domain)?;
        if !self.origin.zone_of(&n) {
            return Err(DnsError::Name {
                domain: domain.to_string(),
                message: format!("not in the served zone {}", self.origin),
            });
        }
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        // One write: the new record set replaces the old under the lock, as a Cloud DNS change
        // is applied at once. Removing and then adding (two writes) let a query in between find
        // no A record, and the run's load counted a "name resolution failed" at a switch.
        let mut set = RecordSet::new(n.clone(), RecordType::A, serial);
        set.insert(
            Record::from_rdata(n.clone(), ttl, RData::A(A(address))),
            serial,
        );
        self.authority
            .records_mut()
            .await
            .insert(RrKey::new(LowerName::new(&n), RecordType::A), Arc::new(set));
        Ok(())
    }

    /// Stops the server and waits for its sockets to close.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// How long one look-up may take at most (as a stub resolver's two tries of 2 s).
pub const RESOLVE_BUDGET: Duration = Duration::from_secs(4);
const RESOLVE_ATTEMPT: Duration = Duration::from_secs(2);

/// A caching resolver that asks only `server`.
pub fn resolver(server: SocketAddr) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
    let mut opts = ResolverOpts::default();
    opts.attempts = 2;
    opts.timeout = RESOLVE_ATTEMPT;
    opts.cache_size = 64;
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    *builder.options_mut() = opts;
    builder.build()
}

/// One A look-up, uncached: the addresses and the TTL the server gave.
pub async fn query_a(server: SocketAddr, domain: &str) -> Result<(Vec<Ipv4Addr>, u32), DnsError> {
    let r = resolver(server);
    let fail = |message: String| DnsError::Resolve {
        domain: domain.to_string(),
        server,
        message,
    };
    let lookup = tokio::time::timeout(RESOLVE_BUDGET, r.ipv4_lookup(name(domain)?))
        .await
        .map_err(|_| {
            fail(format!(
                "no answer within {} s",
                RESOLVE_BUDGET.as_secs_f64()
            ))
        })?
        .map_err(|e| fail(e.to_string()))?;
    let ttl = lookup
        .as_lookup()
        .record_iter()
        .map(|r| r.ttl())
        .min()
        .unwrap_or(0);
    Ok((lookup.iter().map(|a| a.0).collect(), ttl))
}

/// The answer the clients' resolver holds for a domain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Held {
    /// The addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// The TTL the server gave, in DNS seconds.
    pub ttl: u32,
    /// How long it is still held, in real seconds.
    pub remaining_seconds: f64,
    /// How long it was held in all, in real seconds (TTL × scale).
    pub held_seconds: f64,
}

#[derive(Debug)]
struct Entry {
    addresses: Vec<Ipv4Addr>,
    ttl: u32,
    /// When the query that got this answer was sent: the answer can be no newer than that.
    sent: std::time::Instant,
    /// `sent` + the TTL, scaled.
    expires: std::time::Instant,
}

impl Entry {
    /// The entry as held now: its time left is 0 once it has run out.
    fn held(&self, scale: f64) -> Held {
        Held {
            addresses: self.addresses.clone(),
            ttl: self.ttl,
            remaining_seconds: self
                .expires
                .saturating_duration_since(std::time::Instant::now())
                .as_secs_f64(),
            held_seconds: self.ttl as f64 * scale,
        }
    }
}

/// The users' resolver: one cache for the whole run, as a client's stub resolver or its ISP's
/// recursor keeps one. An answer is held for its TTL × `scale` (DNS time may run faster than
/// real time; the report states the scale) and asked for again only once that has run out, so
/// a record changed while clients hold the old answer reaches them only later, as in the field.
#[derive(Debug)]
pub struct ClientResolver {
    server: SocketAddr,
    scale: f64,
    cache: std::sync::Mutex<std::collections::BTreeMap<String, Entry>>,
    /// When each query now on its way was sent: a wait lets those sent before it began land
    /// before it judges what is held.
    in_flight: std::sync::Mutex<Vec<std::time::Instant>>,
}

/// A query's mark in [`ClientResolver`]'s in-flight list, removed when it is dropped.
struct OnItsWay<'a> {
    list: &'a std::sync::Mutex<Vec<std::time::Instant>>,
    sent: std::time::Instant,
}

impl<'a> OnItsWay<'a> {
    fn mark(list: &'a std::sync::Mutex<Vec<std::time::Instant>>, sent: std::time::Instant) -> Self {
        list.lock().expect("not poisoned").push(sent);
        OnItsWay { list, sent }
    }
}

impl Drop for OnItsWay<'_> {
    fn drop(&mut self) {
        // Not `expect`: a panic here while unwinding would abort.
        if let Ok(mut f) = self.list.lock() {
            if let Some(i) = f.iter().position(|t| *t == self.sent) {
                f.swap_remove(i);
            }
        }
    }
}

impl ClientResolver {
    /// A resolver asking `server`, with DNS time scaled by `scale` (1: real time).
    pub fn new(server: SocketAddr, scale: f64) -> Self {
        ClientResolver {
            server,
            scale,
            cache: Default::default(),
            in_flight: Default::default(),
        }
    }

    /// The time scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `domain`'s addresses: the held answer while its TTL runs, else a fresh one from the server.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        if let Some(h) = self.held(domain) {
            return Ok(h.addresses);
        }
        Ok(self.ask(domain).await?.addresses)
    }

    /// A fresh answer from the server, held from now on; returned as held even when its scaled
    /// TTL ran out while the query was on its way (a 1 s TTL at scale 0.02 is held 20 ms, less
    /// than a query may take on a busy machine).
    pub async fn ask(&self, domain: &str) -> Result<Held, DnsError> {
        let sent = std::time::Instant::now();
        let answer = {
            // Unmarked when the query lands, fails or is dropped: a lookup can be dropped before
            // it lands (its request cancelled), and a mark left behind would hold every later
            // wait forever.
            let _on_its_way = OnItsWay::mark(&self.in_flight, sent);
            query_a(self.server, domain).await
        };
        let (addresses, ttl) = answer?;
        let entry = Entry {
            addresses,
            ttl,
            sent,
            expires: sent + Duration::from_secs_f64(ttl as f64 * self.scale),
        };
        let held = entry.held(self.scale);
        self.cache
            .lock()
            .expect("not poisoned")
            .insert(domain.to_string(), entry);
        Ok(held)
    }

    /// What is held for `domain` now (None: nothing, or it has run out).
    pub fn held(&self, domain: &str) -> Option<Held> {
        let cache = self.cache.lock().expect("not poisoned");
        cache
            .get(domain)
            .filter(|e| e.expires >= std::time::Instant::now())
            .map(|e| e.held(self.scale))
    }

    /// Waits until every query sent before `began` has landed (or failed).
    async fn let_land(&self, began: std::time::Instant) {
        while self
            .in_flight
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|t| *t < began)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until clients hold no answer for `domain` that was asked for before the wait began
    /// (the record changed before it: any such answer may be the old one); what was held when
    /// the wait began. A query on its way when the wait begins is let land first, and its
    /// answer waited out too: clients of a busy domain re-resolve all the time, and an answer
    /// the server gave just before the change arrives just after it.
    pub async fn wait_until_dropped(&self, domain: &str) -> Option<Held> {
        let began = std::time::Instant::now();
        self.let_land(began).await;
        let first = self.held(domain);
        loop {
            let asked_before = {
                let cache = self.cache.lock().expect("not poisoned");
                cache
                    .get(domain)
                    .filter(|e| e.sent < began)
                    .and_then(|e| e.expires.checked_duration_since(std::time::Instant::now()))
            };
            match asked_before {
                Some(left) => {
                    tokio::time::sleep(left + Duration::from_millis(5)).await;
                    self.let_land(began).await;
                }
                None => return first,
            }
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_held_for_their_scaled_ttl_and_no_longer() {
        let s = DnsServer::start(Ipv4Addr::new(127, 0, 0, 1), "example.com")
            .await
            .unwrap();
        let old = Ipv4Addr::new(192, 0, 2, 1);
        let new = Ipv4Addr::new(192, 0, 2, 2);
        s.set_a("example.com", old, 300).await.unwrap();
        // 300 s of DNS time held for 0.3 s.
        let r = ClientResolver::new(s.addr(), 0.001);
        assert_eq!(r.resolve("example.com").await.unwrap(), vec![old]);
        s.set_a("example.com", new, 1).await.unwrap();
        // The record changed, but the client still holds the old answer.
        assert_eq!(r.resolve("example.com").await.unwrap(), vec![old]);
        let h = r.held("example.com").unwrap();
        assert_eq!((h.ttl, h.held_seconds), (300, 0.3));
        let waited = r.wait_until_dropped("example.com").await.unwrap();
        assert_eq!(waited.addresses, vec![old]);
        assert!(r.held("example.com").is_none());
        assert_eq!(r.resolve("example.com").await.unwrap(), vec![new]);
        s.stop().await;
    }

    /// Every query during a record's switches gets an answer: the switch is one write, as a
    /// Cloud DNS change is (it was a removal then an insertion, and a query between the two found
    /// no record: a kwok trial's load once failed on one at G3).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_switch_leaves_no_moment_without_the_record() {
        let s = Arc::new(
            DnsServer::start(Ipv4Addr::new(127, 0, 0, 1), "example.com")
                .await
                .unwrap(),
        );
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        s.set_a("example.com", a, 300).await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Four clients asking all the time, so that some query is waiting for the records
        // whenever a switch holds them.
        let askers: Vec<_> = (0..4)
            .map(|_| {
                let (s, stop) = (s.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut asked, mut empty) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        asked += 1;
                        match query_a(s.addr(), "example.com").await {
                            Ok((addrs, _)) if addrs.len() == 1 => {}
                            other => empty.push(format!("{other:?}")),
                        }
                    }
                    (asked, empty)
                })
            })
            .collect();
        let t0 = std::time::Instant::now();
        let mut switches = 0;
        while t0.elapsed() < Duration::from_secs(1) {
            switches += 1;
            s.set_a("example.com", if switches % 2 == 0 { a } else { b }, 300)
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (mut asked, mut empty) = (0, Vec::new());
        for t in askers {
            let (n, e) = t.await.unwrap();
            asked += n;
            empty.extend(e);
        }
        assert!(
            asked > 100,
            "only {asked} queries were asked during {switches} switches"
        );
        assert!(
            empty.is_empty(),
            "{} of {asked} queries got no single A record during {switches} switches, e.g. {:?}",
            empty.len(),
            empty.first()
        );
        s.stop().await;
    }

    /// An answer to a query sent before the wait began, landing after it, is waited out too:
    /// the run's load re-resolves all the time, and one of its queries may be answered with the
    /// old record just before a change and land just after the wait began.
    #[tokio::test]
    async fn an_answer_asked_for_before_the_wait_is_waited_out() {
        let s = DnsServer::start(Ipv4Addr::new(127, 0, 0, 1), "example.com")
            .await
            .unwrap();
        let old = Ipv4Addr::new(192, 0, 2, 1);
        let r = std::sync::Arc::new(ClientResolver::new(s.addr(), 0.001));
        // A query of the load on its way: sent now, its answer (the old record, 200 ms held)
        // landing 30 ms later, after the wait below has begun with nothing held yet.
        let (on_its_way, in_flight) = tokio::sync::oneshot::channel();
        let load = {
            let r = r.clone();
            tokio::spawn(async move {
                let sent = std::time::Instant::now();
                r.in_flight.lock().unwrap().push(sent);
                on_its_way.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
                r.cache.lock().unwrap().insert(
                    "example.com".into(),
                    Entry {
                        addresses: vec![old],
                        ttl: 200,
                        sent,
                        expires: sent + Duration::from_millis(200),
                    },
                );
                r.in_flight.lock().unwrap().clear();
            })
        };
        in_flight.await.unwrap();
        assert!(r.held("example.com").is_none());
        let t0 = std::time::Instant::now();
        r.wait_until_dropped("example.com").await;
        assert!(
            t0.elapsed() >= Duration::from_millis(150),
            "the wait ended after {:?}, before the old answer that landed during it ran out",
            t0.elapsed()
        );
        assert!(r.held("example.com").is_none());
        load.await.unwrap();
        // An answer asked for after the wait began is the new record's: not waited for.
        let new = Ipv4Addr::new(192, 0, 2, 2);
        s.set_a("example.com", new, 300).await.unwrap();
        let began = std::time::Instant::now();
        assert_eq!(r.resolve("example.com").await.unwrap(), vec![new]);
        let fresh = r.cache.lock().unwrap().get("example.com").map(|e| e.sent);
        assert!(fresh.is_some_and(|t| t >= began));
        s.stop().await;
    }

    /// A fresh answer is reported even when its scaled TTL ran out on the way: G2's check
    /// once saw "no answer held" for a 1 s TTL held 20 ms, after a query slower than that.
    #[tokio::test]
    async fn a_fresh_answer_is_reported_even_if_already_run_out() {
        let s = DnsServer::start(Ipv4Addr::new(127, 0, 0, 1), "example.com")
            .await
            .unwrap();
        let a = Ipv4Addr::new(192, 0, 2, 1);
        s.set_a("example.com", a, 1).await.unwrap();
        // 1 s of DNS time held for 1 ns: run out before the answer lands.
        let r = ClientResolver::new(s.addr(), 1e-9);
        let h = r.ask("example.com").await.unwrap();
        assert_eq!((h.addresses, h.ttl, h.remaining_seconds), (vec![a], 1, 0.0));
        assert!(r.held("example.com").is_none());
        s.stop().await;
    }

    /// A lookup dropped on its way (its request cancelled) does not hold a later wait: CI once
    /// waited 72 minutes at a TTL wait, and a dropped lookup's mark is the one way it can.
    #[tokio::test]
    async fn a_dropped_lookup_does_not_hold_the_wait() {
        // A server that never answers.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = ClientResolver::new(silent.local_addr().unwrap(), 0.001);
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), r.resolve("example.com")).await;
        assert!(dropped.is_err(), "the silent server answered: {dropped:?}");
        let waited =
            tokio::time::timeout(Duration::from_secs(2), r.wait_until_dropped("example.com")).await;
        assert!(
            waited.is_ok(),
            "the wait still waited 2 s after the only lookup was dropped"
        );
    }
}
