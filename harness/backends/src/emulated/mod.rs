//! The embedded default backend: the whole migration on this machine, with no cloud and no
//! container engine, but with real Envoy, real HTTP and real DNS.
//!
//! Each cluster is a virtual cluster with its own range of loopback addresses (`127.RUN.16k.x`)
//! and an object store with the Kubernetes semantics the procedure observes ([`store`]). What the
//! procedure's traffic touches is real: each ingress gateway is an Envoy process configured from
//! the applied Gateway, VirtualService and ServiceEntry objects as istiod translates them
//! ([`xds`], [`envoy`]); each frontend replica is an HTTP server rendering the real footer
//! ([`crate::frontend`], shared with kwok); the test domain is served by an authoritative DNS server ([`meshmig_core::dns`]).
//! The managed mesh is a stand-in that goes DISABLED → PROVISIONING → ACTIVE and then injects
//! `istio.io/rev=asm-managed` namespaces.

pub mod demo;
pub mod entry;
pub mod envoy;
pub mod store;
pub mod xds;

mod backend;
mod inject;
mod reconcile;
mod world;

/// The Istio release the emulated backend stands in for (its istioctl output is that release's,
/// recorded from the real istioctl: [`crate::istioctl::install_output`]).
pub const EMULATED_ISTIO_VERSION: &str = "1.31.0";

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;

use self::store::StoreError;
use self::world::World;
use super::{BackendError, Scratch};
use crate::witness::{Witness, Witnesses};
use meshmig_core::dns::DnsServer;
use meshmig_core::scenario::{ClusterSpec, FooterVariant};

/// The project the emulated gcloud commands name.
pub const PROJECT: &str = "emulated-project";
const PROJECT_NUMBER: &str = "123456789123";
/// The revision the managed control plane injects.
pub const MANAGED_REVISION: &str = "asm-managed";

/// How to set the emulated backend up.
#[derive(Debug, Clone)]
pub struct EmulatedOptions {
    /// The Envoy binary.
    pub envoy: PathBuf,
    /// The test domain.
    pub domain: String,
    /// How long the managed control plane takes to become ACTIVE.
    pub provisioning: Duration,
    /// A fault the scenario injects into the managed control plane.
    pub fault: Option<meshmig_core::fleet::ControlPlaneFault>,
    /// The managed control plane flaps once up.
    pub flap: Option<meshmig_core::fleet::Flap>,
    /// Footer variant by cluster name.
    pub footers: BTreeMap<String, FooterVariant>,
}

/// The emulated backend.
pub struct Emulated {
    opts: EmulatedOptions,
    run: u8,
    _claim: std::net::UdpSocket,
    /// Set when port 80 of the run's range cannot be bound (see [`crate::preflight`]).
    shift: Option<crate::ports::PortShift>,
    scratch: Scratch,
    dns: DnsServer,
    world: Mutex<World>,
    /// Every Envoy started, for teardown to make sure each has exited.
    children: super::exec::Children,
    /// Who answers the checks here.
    witnesses: Witnesses,
}

/// The emulated backend's witnesses: the harness's records and stand-ins, and real Envoy
/// (`envoy`) routing what the emulated control plane translated.
fn witnesses(envoy: &std::path::Path) -> Witnesses {
    let records = || Witness::harness("the emulated backend's records");
    Witnesses {
        cluster_list: records(),
        kubeconfig: records(),
        kubernetes_api: Witness::stand_in("the emulated Kubernetes API (the harness's object store)"),
        fleet: super::witness::fleet_stand_in(),
        dns: super::witness::embedded_dns(),
        data_plane: Witness::stand_in(format!(
            "{} routing the emulated control plane's translation of the Istio objects, to stand-in frontends",
            super::witness::envoy_version(envoy)
        )),
        inventory: records(),
        routes: None,
        proxy_status: None,
        commands: Vec::new(),
    }
}

/// Whether port 80 can be bound in the run's range (`127.RUN.0.80`); when it cannot, ports below
/// 1024 are shifted, with the reason `meshmig run` recorded or the bind error.
fn port_shift(run: u8) -> Option<crate::ports::PortShift> {
    match std::net::TcpListener::bind((Ipv4Addr::new(127, run, 0, 80), 80)) {
        Ok(_) => None,
        Err(e) => Some(crate::ports::PortShift {
            why: crate::ports::shift_reason()
                .map(str::to_string)
                .unwrap_or_else(|| format!("port 80 cannot be bound here ({e})")),
        }),
    }
}

fn gcloud_context(spec: &ClusterSpec) -> String {
    format!("gke_{PROJECT}_{}_{}", spec.zone, spec.name)
}

fn store_err(command: String) -> impl Fn(StoreError) -> BackendError {
    move |e| BackendError::Procedure {
        command: command.clone(),
        message: e.to_string(),
    }
}

impl Emulated {
    /// Claims a loopback range of its own, starts the DNS server, and checks Envoy.
    pub async fn start(opts: EmulatedOptions) -> Result<Self, BackendError> {
        if !opts.envoy.is_file() {
            return Err(meshmig_core::tools::find_envoy()
                .err()
                .map(BackendError::from)
                .unwrap_or_else(|| {
                    BackendError::infra(
                        "starting the emulated backend",
                        format!("{} is not a file", opts.envoy.display()),
                    )
                }));
        }
        // A run owns 127.RUN.0.0/16; the claim socket keeps parallel runs apart.
        // (The thread's generator is not Send: it is dropped before the first await.)
        let claimed = {
            let mut rng = rand::rng();
            (0..64).find_map(|_| {
                let run: u8 = rng.random_range(64..=250);
                std::net::UdpSocket::bind((Ipv4Addr::new(127, run, 0, 1), 47_001))
                    .ok()
                    .map(|s| (run, s))
            })
        };
        let (run, claim) = claimed.ok_or_else(|| {
            BackendError::infra(
                "claiming a loopback address range",
                "64 ranges tried, all in use",
            )
        })?;
        let shift = port_shift(run);
        if let Some(s) = &shift {
            tracing::info!("emulated gateways on shifted ports: {}", s.why);
        }
        let scratch = Scratch::create("meshmig-")?;
        let dns = DnsServer::start(Ipv4Addr::new(127, run, 0, 53), &opts.domain)
            .await
            .map_err(|e| {
                BackendError::infra(
                    "starting the embedded DNS server",
                    meshmig_core::error_chain(&e),
                )
            })?;
        let witnesses = witnesses(&opts.envoy);
        Ok(Self {
            opts,
            run,
            _claim: claim,
            shift,
            scratch,
            dns,
            children: Default::default(),
            witnesses,
            world: Mutex::new(World {
                clusters: BTreeMap::new(),
                contexts: Vec::new(),
                mesh_enabled: false,
                memberships: BTreeMap::new(),
            }),
        })
    }
}
