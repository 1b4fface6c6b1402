//! `meshmig demo`: a real Envoy splitting traffic between stand-in frontends by set weights (with
//! an optional share of 503s), on loopback, until Ctrl-C. Something to point `meshmig split`,
//! `wrk` or a browser at; the split benchmarks and tests use it.
//!
//! Every answer carries three identities, one per extractor of [`meshmig_core::identity`]: the footer
//! (and its `Cluster: </b>NAME` for a body pattern), `x-served-by: NAME`, added by Envoy per
//! destination as Istio does for a VirtualService's `route[].headers.response.add`, and
//! `x-upstream-host: IP:PORT`, Envoy's own `%UPSTREAM_HOST%`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::envoy::Envoy;
use super::xds::{Cluster, Listener, Route, Snapshot, VirtualHost};
use crate::frontend::{Frontend, Identity, HOME_PAGE_DEPENDENCIES};
use crate::BackendError;
use meshmig_core::scenario::FooterVariant;

/// A running demo.
pub struct Demo {
    /// The URL to sample.
    pub url: String,
    envoy: Envoy,
    frontends: Vec<Frontend>,
    _scratch: tempfile::TempDir,
}

impl Demo {
    /// Starts frontends named after the destinations (their footers print that cluster name) and
    /// an Envoy on `ip:port` routing by `weights`; `abort_percent` of requests get a 503.
    pub async fn start(
        envoy_bin: &Path,
        ip: Ipv4Addr,
        port: u16,
        weights: &BTreeMap<String, u32>,
        abort_percent: f64,
    ) -> Result<Self, BackendError> {
        let ready = Arc::new(RwLock::new(
            HOME_PAGE_DEPENDENCIES
                .iter()
                .map(|d| ("demo".to_string(), d.to_string()))
                .collect::<BTreeSet<_>>(),
        ));
        let o = ip.octets();
        let mut frontends = Vec::new();
        let mut clusters = Vec::new();
        let mut routes = Vec::new();
        let mut tags = BTreeMap::new();
        for (i, (name, w)) in weights.iter().enumerate() {
            let addr = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    o[0],
                    o[1],
                    o[2],
                    o[3].wrapping_add(1 + i as u8),
                )),
                8080,
            );
            let id = Identity {
                cluster: name.clone(),
                zone: "us-central1-a".into(),
                pod: format!("frontend-demo-{i}"),
                namespace: "demo".into(),
                variant: FooterVariant::Gke,
            };
            frontends.push(
                Frontend::start(addr, id, ready.clone())
                    .await
                    .map_err(|e| {
                        BackendError::infra(
                            format!("starting the demo frontend {name} on {addr}"),
                            e,
                        )
                    })?,
            );
            let c = format!("outbound|80||{name}.demo.svc.cluster.local");
            clusters.push(Cluster {
                name: c.clone(),
                endpoints: vec![addr],
            });
            tags.insert(c.clone(), vec![("x-served-by".to_string(), name.clone())]);
            routes.push((c, *w));
        }
        let listener = SocketAddr::new(IpAddr::V4(ip), port);
        let snap = Snapshot {
            listeners: vec![Listener {
                addr: listener,
                port,
            }],
            routes: BTreeMap::from([(
                port,
                vec![VirtualHost {
                    name: format!("*:{port}"),
                    domains: vec!["*".into()],
                    routes: vec![Route {
                        path: ("prefix", "/".into()),
                        clusters: routes,
                        abort: (abort_percent > 0.0).then_some((abort_percent, 503)),
                        response_headers: vec![(
                            meshmig_core::identity::UPSTREAM_HOST_HEADER.to_string(),
                            "%UPSTREAM_HOST%".to_string(),
                        )],
                        cluster_response_headers: tags,
                    }],
                }],
            )]),
            clusters,
            warnings: vec![],
        };
        let scratch = tempfile::Builder::new()
            .prefix("meshmig-demo-")
            .tempdir()
            .map_err(|e| BackendError::infra("creating the demo's scratch folder", e))?;
        let admin = SocketAddr::new(IpAddr::V4(ip), 15000);
        // The demo stops its Envoy itself (`stop`), waiting for it.
        let children = crate::exec::Children::default();
        let mut envoy = Envoy::start(envoy_bin, "demo/gateway", scratch.path(), admin, &children)
            .await
            .map_err(|e| {
                BackendError::infra("starting the demo's Envoy", meshmig_core::error_chain(&e))
            })?;
        envoy.apply(&snap).await.map_err(|e| {
            BackendError::infra(
                "configuring the demo's Envoy",
                meshmig_core::error_chain(&e),
            )
        })?;
        Ok(Self {
            url: format!("http://{listener}/"),
            envoy,
            frontends,
            _scratch: scratch,
        })
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        let _ = self.envoy.stop().await;
        for f in self.frontends.drain(..) {
            f.stop().await;
        }
    }
}
