//! Online Boutique's services as stand-ins that run inside real pods: `meshmig boutique SERVICE`
//! is the entrypoint of each image the kind kit builds under the exact names the upstream
//! manifests use (no registry serves Online Boutique's images on a machine without network).
//!
//! Each stand-in answers what the manifests and the home page ask of its service, and no more:
//! - **gRPC services** (adservice, cartservice, checkoutservice, currencyservice, emailservice,
//!   paymentservice, productcatalogservice, recommendationservice, shippingservice) serve
//!   `grpc.health.v1.Health` (tonic-health) on `PORT`, or on the port their manifest's probes
//!   name when it sets none (cartservice: 7070). The kubelet's `grpc:` probes call it. None of
//!   their business RPCs are served.
//! - **frontend** serves the home page and `/_healthz` on `PORT`, with the footer rendered as the
//!   stand-in frontends of the other backends render it ([`crate::frontend`]). Like the real
//!   v0.10.6 frontend (`deployment_details.go`), it asks the GCE metadata server for its
//!   cluster's name and zone (`GCE_METADATA_HOST`, else `metadata.google.internal`): with both
//!   it prints the cluster, zone and pod lines; without, only the pod line. For every home page
//!   it calls each service the home page needs (`PRODUCT_CATALOG_SERVICE_ADDR`…) with a gRPC
//!   health check, through the pod's sidecar, and answers Online Boutique's 500 page naming the
//!   first that fails.
//! - **redis-cart** listens on 6379 and answers `PING` with `+PONG` (the manifest's probes are
//!   `tcpSocket`).
//! - **loadgenerator** requests `http://FRONTEND_ADDR/` `RATE` times a second (its manifest's
//!   `USERS` are not simulated) and logs each answer's status.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshmig_core::scenario::FooterVariant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::frontend::{Dependencies, Frontend, Identity};

/// The gRPC services and the port each listens on when `PORT` is unset (the port its
/// manifest's `grpc:` probes name, microservices-demo v0.10.6 release manifests).
pub const GRPC_SERVICES: [(&str, u16); 9] = [
    ("adservice", 9555),
    ("cartservice", 7070),
    ("checkoutservice", 5050),
    ("currencyservice", 7000),
    ("emailservice", 8080),
    ("paymentservice", 50051),
    ("productcatalogservice", 3550),
    ("recommendationservice", 8080),
    ("shippingservice", 50051),
];

/// Every service `meshmig boutique` can stand in for.
pub const SERVICES: [&str; 12] = [
    "adservice",
    "cartservice",
    "checkoutservice",
    "currencyservice",
    "emailservice",
    "paymentservice",
    "productcatalogservice",
    "recommendationservice",
    "shippingservice",
    "frontend",
    "redis-cart",
    "loadgenerator",
];

/// The environment variables the frontend reads the home page's services from, in the order
/// it calls them, with the service each names (frontend manifest, v0.10.6).
pub const HOME_PAGE_ADDRS: [(&str, &str); 5] = [
    ("CURRENCY_SERVICE_ADDR", "currencyservice"),
    ("PRODUCT_CATALOG_SERVICE_ADDR", "productcatalogservice"),
    ("CART_SERVICE_ADDR", "cartservice"),
    ("RECOMMENDATION_SERVICE_ADDR", "recommendationservice"),
    ("AD_SERVICE_ADDR", "adservice"),
];

/// How long one metadata lookup or load-generator request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one attempt to connect to a dependency may take: grpc-go's `minConnectTimeout`
/// (20 s, `dialoptions.go`), which the real frontend keeps. Its `mustConnGRPC` bounds only
/// the dial call by 3 s, and since v0.9 that dial does not block (`grpc.DialContext` without
/// `WithBlock`), so the 3 s never limits a home page.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the Online Boutique stand-ins.
#[derive(Debug, thiserror::Error)]
pub enum BoutiqueError {
    /// The service is not one of Online Boutique's.
    #[error("standing in for {service}: not an Online Boutique service (one of {})", SERVICES.join(", "))]
    UnknownService {
        /// What was asked for.
        service: String,
    },
    /// An environment variable holds something unusable.
    #[error("reading {name}={value:?}: {why}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        why: String,
    },
    /// Listening or serving failed.
    #[error("serving {service} on {addr}")]
    Serve {
        /// The service.
        service: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving grpc.health.v1 for {service} on {addr}")]
    Grpc {
        /// The service.
        service: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// The port a service listens on: `PORT` when set, else `default`.
pub fn port_from(value: Option<String>, default: u16) -> Result<u16, BoutiqueError> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| BoutiqueError::Env {
            name: "PORT".into(),
            value: v.clone(),
            why: "not a port number".into(),
        }),
    }
}

/// Runs the stand-in for `service` until SIGTERM or Ctrl-C.
pub async fn serve(service: &str) -> Result<(), BoutiqueError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let listen = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    if let Some((name, default)) = GRPC_SERVICES.iter().find(|(n, _)| *n == service) {
        let addr = listen(port_from(env("PORT"), *default)?);
        return serve_health(name, addr).await;
    }
    match service {
        "frontend" => {
            let addr = listen(port_from(env("PORT"), 8080)?);
            serve_frontend(addr).await
        }
        "redis-cart" => serve_redis(listen(6379)).await,
        "loadgenerator" => {
            let frontend = env("FRONTEND_ADDR").unwrap_or_else(|| "frontend:80".into());
            let rate: f64 =
                match env("RATE") {
                    None => 1.0,
                    Some(v) => v.parse().ok().filter(|r: &f64| *r > 0.0).ok_or_else(|| {
                        BoutiqueError::Env {
                            name: "RATE".into(),
                            value: v.clone(),
                            why: "not a positive number".into(),
                        }
                    })?,
                };
            load(&frontend, rate).await;
            Ok(())
        }
        other => Err(BoutiqueError::UnknownService {
            service: other.to_string(),
        }),
    }
}

/// Resolves on SIGTERM (what the kubelet sends) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `grpc.health.v1.Health` on `addr`, every service SERVING (tonic-health's reporter serves the
/// overall `""` service as SERVING from the start).
pub async fn serve_health(service: &str, addr: SocketAddr) -> Result<(), BoutiqueError> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    eprintln!("meshmig boutique: {service} stand-in serving grpc.health.v1 on {addr}");
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_shutdown(addr, terminated())
        .await
        .map_err(|source| BoutiqueError::Grpc {
            service: service.to_string(),
            addr,
            source,
        })
}

/// The home page's services, each called with a gRPC health check over one channel per service,
/// kept for the frontend's life (HTTP/2, reconnected by tonic when it drops), as the real
/// frontend keeps one gRPC connection per service.
///
/// A call has no deadline of its own, as in the real frontend: v0.10.6's `homeHandler` passes
/// the request's context (`fe.getCurrencies(r.Context())`…), so a slow dependency makes a slow
/// page, and only the user giving up ends the call (the HTTP server drops the request's future,
/// as Go cancels `r.Context()`). A 3 s deadline here turned a dependency slowed by a starved
/// CPU into a 500 the real frontend would not give.
pub struct GrpcDependencies {
    /// (service, address, its client; None when the address is unusable) in the order the home
    /// page calls them.
    targets: Vec<(String, String, Option<HealthClient<Channel>>)>,
}

impl GrpcDependencies {
    /// From the frontend's environment (`HOME_PAGE_ADDRS`); a variable left unset is a service
    /// the home page cannot reach. Channels connect on first use.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            targets: HOME_PAGE_ADDRS
                .iter()
                .map(|(var, svc)| {
                    let addr = env(var).unwrap_or_default();
                    let client = (!addr.is_empty())
                        .then(|| Endpoint::from_shared(format!("http://{addr}")).ok())
                        .flatten()
                        .map(|e| {
                            HealthClient::new(e.connect_timeout(CONNECT_TIMEOUT).connect_lazy())
                        });
                    (svc.to_string(), addr, client)
                })
                .collect(),
        }
    }

    async fn check(client: &Option<HealthClient<Channel>>) -> Result<(), String> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let Some(client) = client else {
            return Err("its address is not set, or is not host:port".into());
        };
        let answer = client
            .clone()
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("health status {}", other.as_str_name())),
        }
    }
}

#[async_trait::async_trait]
impl Dependencies for GrpcDependencies {
    async fn failure(&self, _namespace: &str) -> Option<String> {
        for (svc, addr, client) in &self.targets {
            if let Err(why) = Self::check(client).await {
                return Some(format!(
                    "could not retrieve data from {svc} ({addr}): {why}"
                ));
            }
        }
        None
    }
}

/// The footer variant the real v0.10.6 frontend prints for what its metadata server answered:
/// cluster, zone and pod lines when both were found, else the pod line alone.
pub fn variant_for(cluster: Option<&str>, zone: Option<&str>) -> FooterVariant {
    match (cluster, zone) {
        (Some(c), Some(z)) if !c.is_empty() && !z.is_empty() => FooterVariant::Gke,
        _ => FooterVariant::PodOnly,
    }
}

/// The zone's last path segment (`projects/N/zones/Z` → `Z`), as the metadata client's
/// `Zone()` returns it.
pub fn zone_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Asks the metadata server (`host`, as `GCE_METADATA_HOST` gives it) for one path.
async fn metadata(client: &reqwest::Client, host: &str, path: &str) -> Option<String> {
    let r = client
        .get(format!("http://{host}/computeMetadata/v1/{path}"))
        .header("Metadata-Flavor", "Google")
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok().map(|t| t.trim().to_string())
}

/// The frontend: the home page (its footer from the metadata server's answers) and
/// `/_healthz`.
pub async fn serve_frontend(addr: SocketAddr) -> Result<(), BoutiqueError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
    let client = reqwest::Client::new();
    let cluster = metadata(&client, &host, "instance/attributes/cluster-name").await;
    let zone = metadata(&client, &host, "instance/zone").await;
    let zone = zone.as_deref().map(zone_name).map(str::to_string);
    let variant = variant_for(cluster.as_deref(), zone.as_deref());
    let id = Identity {
        cluster: cluster.unwrap_or_default(),
        zone: zone.unwrap_or_default(),
        pod: env("HOSTNAME").unwrap_or_else(|| "frontend".into()),
        namespace: env("POD_NAMESPACE").unwrap_or_default(),
        variant,
    };
    eprintln!(
        "meshmig boutique: frontend stand-in on {addr}: footer {variant:?} (cluster {:?}, zone {:?}, pod {:?}; metadata from {host})",
        id.cluster, id.zone, id.pod
    );
    let deps = Arc::new(GrpcDependencies::from_env(env));
    let frontend = Frontend::start_with(addr, id, deps)
        .await
        .map_err(|source| BoutiqueError::Serve {
            service: "frontend".into(),
            addr,
            source,
        })?;
    terminated().await;
    frontend.stop().await;
    Ok(())
}

/// What the redis stand-in answers to one command line.
pub fn redis_answer(line: &str) -> &'static str {
    if line.trim().eq_ignore_ascii_case("PING") {
        "+PONG\r\n"
    } else {
        "-ERR meshmig's redis-cart stand-in answers only PING\r\n"
    }
}

/// redis-cart: a TCP listener that answers `PING` (inline commands) with `+PONG`.
pub async fn serve_redis(addr: SocketAddr) -> Result<(), BoutiqueError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BoutiqueError::Serve {
            service: "redis-cart".into(),
            addr,
            source,
        })?;
    eprintln!("meshmig boutique: redis-cart stand-in on {addr}");
    let accept = async {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(redis_answer(&line).as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = accept => Ok(()),
        _ = terminated() => Ok(()),
    }
}

/// The load generator: `GET http://FRONTEND/` `rate` times a second, each answer logged.
async fn load(frontend: &str, rate: f64) {
    let client = reqwest::Client::new();
    let url = format!("http://{frontend}/");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    eprintln!("meshmig boutique: loadgenerator stand-in: GET {url} {rate}/s");
    let run = async {
        loop {
            tick.tick().await;
            match client.get(&url).timeout(CALL_TIMEOUT).send().await {
                Ok(r) => eprintln!("GET {url} {}", r.status().as_u16()),
                Err(e) => eprintln!("GET {url} failed: {}", meshmig_core::error_chain(&e)),
            }
        }
    };
    tokio::select! {
        _ = run => {}
        _ = terminated() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, 7070, Ok(7070))]
    #[case(Some("9555"), 1, Ok(9555))]
    #[case(Some("http"), 1, Err(()))]
    fn port_comes_from_port_or_the_manifests_probe(
        #[case] value: Option<&str>,
        #[case] default: u16,
        #[case] want: Result<u16, ()>,
    ) {
        assert_eq!(
            port_from(value.map(str::to_string), default).map_err(|_| ()),
            want
        );
    }

    #[rstest]
    #[case(Some("c1"), Some("us-central1-a"), FooterVariant::Gke)]
    #[case(None, Some("us-central1-a"), FooterVariant::PodOnly)]
    #[case(Some("c1"), None, FooterVariant::PodOnly)]
    #[case(Some(""), Some("z"), FooterVariant::PodOnly)]
    fn the_footer_follows_what_the_metadata_server_answered(
        #[case] cluster: Option<&str>,
        #[case] zone: Option<&str>,
        #[case] want: FooterVariant,
    ) {
        assert_eq!(variant_for(cluster, zone), want);
    }

    #[test]
    fn zone_is_the_last_segment_of_the_metadata_path() {
        assert_eq!(
            zone_name("projects/000000000000/zones/us-central1-c"),
            "us-central1-c"
        );
    }

    #[test]
    fn redis_answers_ping_only() {
        assert_eq!(redis_answer("PING\r"), "+PONG\r\n");
        assert!(redis_answer("GET cart").starts_with("-ERR"));
    }

    #[tokio::test]
    async fn unknown_services_are_refused() {
        let e = serve("shoppingassistantservice").await.unwrap_err();
        assert!(
            e.to_string().contains("not an Online Boutique service"),
            "{e}"
        );
    }

    /// A health server and the frontend's dependency check, over real gRPC on loopback: a
    /// serving dependency passes; one that refuses fails the home page naming it.
    #[tokio::test]
    async fn the_home_page_fails_naming_a_dependency_that_does_not_answer() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let server = tokio::spawn(serve_health("currencyservice", addr));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let up = format!("127.0.0.1:{port}");
        let down = format!("127.0.0.1:{closed}");
        let all_up = GrpcDependencies::from_env(|_| Some(up.clone()));
        assert_eq!(all_up.failure("ns").await, None);
        let cart_down = GrpcDependencies::from_env(|v| {
            Some(if v == "CART_SERVICE_ADDR" {
                down.clone()
            } else {
                up.clone()
            })
        });
        let why = cart_down.failure("ns").await.expect("cartservice is down");
        assert!(why.contains("cartservice") && why.contains(&down), "{why}");
        // Asked again over the same channels: the answers stay the same.
        assert_eq!(all_up.failure("ns").await, None);
        let unset = GrpcDependencies::from_env(|_| None);
        assert!(unset
            .failure("ns")
            .await
            .is_some_and(|w| w.contains("currencyservice") && w.contains("not set")));
        server.abort();
    }

    /// A dependency that answers its health check only after `delay`, as one on a starved CPU.
    struct SlowHealth {
        delay: Duration,
    }

    #[tonic::async_trait]
    impl tonic_health::pb::health_server::Health for SlowHealth {
        async fn check(
            &self,
            _: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
            tokio::time::sleep(self.delay).await;
            Ok(tonic::Response::new(
                tonic_health::pb::HealthCheckResponse {
                    status: tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                },
            ))
        }

        type WatchStream =
            futures::stream::Empty<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>;

        async fn watch(
            &self,
            _: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("watch"))
        }
    }

    /// The real frontend gives a dependency the request's whole life (no per-call deadline), so
    /// one that answers after 4 s makes a slow page, not a 500. Fails with the 3 s per-call
    /// timeout the stand-in had.
    #[tokio::test]
    async fn a_slow_dependency_makes_a_slow_page_not_a_500() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(tonic_health::pb::health_server::HealthServer::new(
                    SlowHealth {
                        delay: Duration::from_secs(4),
                    },
                ))
                .serve(addr),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let slow = addr.to_string();
        let deps =
            GrpcDependencies::from_env(|v| (v == "CURRENCY_SERVICE_ADDR").then(|| slow.clone()));
        let why = deps
            .failure("ns")
            .await
            .expect("only currencyservice is set");
        assert!(
            why.contains("productcatalogservice") && why.contains("not set"),
            "the slow currencyservice answered, and the next (unset) one failed: {why}"
        );
        server.abort();
    }
}
