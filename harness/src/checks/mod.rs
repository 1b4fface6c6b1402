//! The assertions of the steps: each a small named function that states what it expected, what
//! it observed, and the evidence it observed it in.

//!
//! One room per thing observed: the clusters themselves ([`cluster`]), what a step's command
//! printed ([`output`]), a cluster's objects ([`kube`]), the routes bound to a gateway
//! ([`routes`]), the fleet ([`fleet`]), DNS ([`dns`]) and the data plane ([`traffic`]). This
//! module holds the result type, what checks read from, and [`run`], which dispatches a
//! scenario's check to its function.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::sampler::Pace;
use crate::stats::SplitParams;
use meshmig_backends::witness::{Source, Witness};
use meshmig_backends::{Backend, BackendError, Output};
use meshmig_core::scenario::{substitute, Check, Scenario};

mod cluster;
mod dns;
mod fleet;
pub mod gateway_routes;
mod kube;
mod output;
pub mod proxies;
mod routes;
mod traffic;

pub use cluster::{cluster_absent, cluster_exists, context_listed, nothing_left};
pub use dns::{clients_hold, clients_resolve, dns_record};
pub use fleet::{membership_listed, mesh_active, mesh_feature_enabled};
pub use kube::{
    deployments_available, first_service_ip, first_service_is, injection_disabled,
    namespace_labels, no_public_service, object_presence, pod_injection, pods_injected,
    service_entry_address,
};
pub use output::{istio_installed, output_contains};
pub use routes::routes;
use routes::stored_virtual_services;
pub use traffic::{
    continuous_load, describe_decision, describe_shares, home_page, parse_ip, pods_by_cluster,
    progress_bar, split, SplitHow,
};

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name (its function).
    pub check: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was expected.
    pub expected: String,
    /// What was observed.
    pub observed: String,
    /// The evidence (objects, counts, outputs) the observation was read from.
    pub evidence: Value,
    /// Where what was observed differs from what the published procedure shows, without
    /// failing the check (shown in the report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deviations: Vec<String>,
    /// Who made the observation: a real component, a stand-in, or the harness ([`run`] and the
    /// engine set it from the backend's [`Witnesses`](meshmig_backends::witness::Witnesses)).
    pub witness: Witness,
}

impl CheckResult {
    fn new(
        check: &'static str,
        ok: bool,
        expected: impl Into<String>,
        observed: impl Into<String>,
        evidence: Value,
    ) -> Self {
        Self {
            check,
            ok,
            expected: expected.into(),
            observed: observed.into(),
            evidence,
            deviations: Vec::new(),
            witness: Witness::unattributed(),
        }
    }

    /// The result with its witness.
    pub fn witnessed_by(mut self, witness: Witness) -> Self {
        self.witness = witness;
        self
    }

    /// The result with `deviation` recorded, if any.
    fn with_deviation(mut self, deviation: Option<String>) -> Self {
        self.deviations.extend(deviation);
        self
    }

    /// The failure message: expected, observed, evidence.
    pub fn message(&self) -> String {
        format!(
            "{}: expected {}; observed {}; evidence: {}",
            self.check, self.expected, self.observed, self.evidence
        )
    }
}

/// What checks read from: the backend, the scenario, the run's variables, the step's output.
pub struct Ctx<'a> {
    /// The backend.
    pub backend: &'a dyn Backend,
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Variables saved by earlier steps.
    pub vars: &'a BTreeMap<String, String>,
    /// The step's action output.
    pub output: Option<&'a Output>,
    /// Split-test parameters.
    pub params: &'a SplitParams,
    /// Sampling pace.
    pub pace: Pace,
    /// Whether to draw progress bars.
    pub progress: bool,
    /// The users' resolver, for the whole run.
    pub clients: &'a Arc<meshmig_core::dns::ClientResolver>,
}

pub(crate) type R = Result<CheckResult, BackendError>;

/// What a check reads from (the step's command output: the program that printed it).
pub fn source(check: &Check, output: Option<&Output>) -> Source {
    match check {
        Check::ClusterExists { .. } | Check::ClusterAbsent { .. } => Source::ClusterList,
        Check::ContextListed { .. } => Source::Kubeconfig,
        Check::OutputContains { .. } => Source::Command(
            output
                .and_then(|o| o.command.split_whitespace().next())
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                .unwrap_or_default(),
        ),
        Check::IstioInstalled { .. } => Source::Command("istioctl".into()),
        Check::DeploymentsAvailable { .. }
        | Check::ObjectExists { .. }
        | Check::ObjectAbsent { .. }
        | Check::FirstServiceIs { .. }
        | Check::NamespaceLabels { .. }
        | Check::PodsInjected { .. }
        | Check::ServiceEntryAddress { .. }
        | Check::InjectionDisabled { .. }
        | Check::NoPublicService { .. } => Source::KubernetesApi,
        Check::Routes { .. } => Source::Routes,
        Check::ProxiesConnected { .. } => Source::ProxyStatus,
        Check::MeshActive { .. } | Check::MeshFeatureEnabled | Check::MembershipListed { .. } => {
            Source::Fleet
        }
        Check::ClientsResolve { .. } => Source::ClientResolver,
        Check::DnsRecord { .. } => Source::Dns,
        Check::HomePage { .. } | Check::Split { .. } => Source::DataPlane,
        Check::NothingLeft => Source::Inventory,
    }
}

/// Runs one check; its result names the witness of what it read ([`source`]).
pub async fn run(ctx: &Ctx<'_>, check: &Check) -> R {
    let witness = ctx.backend.witnesses().of(&source(check, ctx.output));
    let r = judge(ctx, check).await?;
    // A check that names its own witness (one that could not be witnessed as the backend
    // declares) keeps it.
    Ok(if r.witness.is_unattributed() {
        r.witnessed_by(witness)
    } else {
        r
    })
}

async fn judge(ctx: &Ctx<'_>, check: &Check) -> R {
    let v = |s: &str| substitute(s, ctx.vars);
    match check {
        Check::ClusterExists { cluster } => cluster_exists(ctx, cluster).await,
        Check::ClusterAbsent { cluster } => cluster_absent(ctx, cluster).await,
        Check::ContextListed { cluster } => context_listed(ctx, cluster).await,
        Check::OutputContains { lines } => Ok(output_contains(ctx.output, lines)),
        Check::DeploymentsAvailable {
            cluster,
            namespace,
            count,
            names,
        } => deployments_available(ctx, cluster, namespace, *count, names).await,
        Check::ObjectExists {
            cluster,
            namespace,
            kind,
            name,
        } => object_presence(ctx, cluster, namespace, kind, name, true).await,
        Check::ObjectAbsent {
            cluster,
            namespace,
            kind,
            name,
        } => object_presence(ctx, cluster, namespace, kind, name, false).await,
        Check::FirstServiceIs {
            cluster,
            namespace,
            name,
        } => first_service_is(ctx, cluster, namespace, name).await,
        Check::HomePage { url, status } => {
            let (url, deviation) = requested_url(ctx, &v(url));
            Ok(home_page(ctx, &url, *status)
                .await?
                .with_deviation(deviation))
        }
        Check::MeshActive { membership } => mesh_active(ctx, membership).await,
        Check::NamespaceLabels {
            cluster,
            name,
            labels,
            absent,
        } => namespace_labels(ctx, cluster, name, labels, absent).await,
        Check::PodsInjected {
            cluster,
            namespace,
            selector,
            revision,
        } => pods_injected(ctx, cluster, namespace, selector, revision.as_deref()).await,
        Check::ProxiesConnected {
            cluster,
            namespace,
            selector,
            revision,
        } => proxies_connected_at(ctx, cluster, namespace, selector, revision).await,
        Check::ServiceEntryAddress {
            cluster,
            namespace,
            name,
            gateway,
        } => service_entry_address(ctx, cluster, namespace, name, gateway).await,
        Check::DnsRecord { address, ttl } => dns_record(ctx, &v(address), *ttl).await,
        Check::Routes {
            cluster,
            namespace,
            gateway,
            expect,
        } => routes_at(ctx, cluster, namespace, gateway, expect).await,
        Check::InjectionDisabled { cluster, name } => {
            let nss = ctx
                .backend
                .kubernetes()
                .list(cluster, None, "Namespace")
                .await?;
            Ok(injection_disabled(&nss, name))
        }
        Check::NoPublicService { cluster, namespace } => {
            let svcs = ctx
                .backend
                .kubernetes()
                .list(cluster, Some(namespace), "Service")
                .await?;
            Ok(no_public_service(&svcs, namespace))
        }
        Check::MeshFeatureEnabled => {
            let yaml = ctx.backend.mesh_describe().await?;
            mesh_feature_enabled(&yaml)
        }
        Check::MembershipListed {
            membership,
            management,
        } => {
            let yaml = ctx.backend.mesh_describe().await?;
            membership_listed(&yaml, membership, management.as_deref())
        }
        Check::ClientsResolve { address, max_ttl } => {
            clients_resolve(ctx, &v(address), *max_ttl).await
        }
        Check::Split {
            url,
            via_domain,
            expect,
            error_budget,
            identify,
            names,
        } => {
            let url = match url {
                Some(u) => v(u),
                None => format!("http://{}/", ctx.scenario.dns.domain),
            };
            let how = SplitHow {
                via_domain: *via_domain,
                error_budget: *error_budget,
                identify: identify.as_ref(),
                names,
            };
            split_at(ctx, &url, expect, how).await
        }
        Check::NothingLeft => nothing_left(ctx).await,
        Check::IstioInstalled { profile, published } => Ok(istio_installed(
            ctx.output,
            profile,
            published,
            ctx.backend.istio_version().as_deref(),
        )),
    }
}

/// `routes` of Gateway `namespace/gateway`: on a backend that reads the gateway pods' own routes,
/// those, asked again until they are as expected or the backend's convergence time has passed
/// (istiod's push can land after the action returned; a person would look again); elsewhere the
/// VirtualServices as stored.
async fn routes_at(
    ctx: &Ctx<'_>,
    cluster: &str,
    namespace: &str,
    gateway: &str,
    expect: &BTreeMap<String, f64>,
) -> R {
    let deadline = tokio::time::Instant::now() + ctx.backend.convergence();
    loop {
        let vss = ctx
            .backend
            .kubernetes()
            .list(cluster, None, "VirtualService")
            .await?;
        let Some(dumps) = ctx
            .backend
            .gateway_routes(cluster, namespace, gateway)
            .await?
        else {
            return Ok(routes(&vss, namespace, gateway, expect));
        };
        let r = gateway_routes::gateway_routes(
            &dumps,
            &format!("{namespace}/{gateway}"),
            expect,
            stored_virtual_services(&vss),
        );
        if r.ok || tokio::time::Instant::now() >= deadline {
            return Ok(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `proxies_connected` in `cluster/namespace`: the pods, the istiods, and what `istioctl
/// proxy-status` says where the backend runs it, asked again until it holds or the backend's
/// convergence time has passed (a restarted proxy takes a moment to connect).
async fn proxies_connected_at(
    ctx: &Ctx<'_>,
    cluster: &str,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    revision: &str,
) -> R {
    let deadline = tokio::time::Instant::now() + ctx.backend.convergence();
    loop {
        let k = ctx.backend.kubernetes();
        let pods = k.list(cluster, Some(namespace), "Pod").await?;
        let istio_system_pods = k.list(cluster, Some("istio-system"), "Pod").await?;
        let status = ctx.backend.proxy_status(cluster).await?;
        let read = proxies::Read {
            pods: &pods,
            istio_system_pods: &istio_system_pods,
            status: status.as_ref(),
        };
        let (r, unwitnessed) =
            proxies::proxies_connected(&read, cluster, namespace, selector, revision);
        let r = match (unwitnessed, &status) {
            (true, Some(s)) => r.witnessed_by(
                ctx.backend.witnesses().injection_records(
                    s.no_sidecars
                        .as_deref()
                        .unwrap_or("no proxy connection witnessed"),
                ),
            ),
            _ => r,
        };
        // Injection records do not change by waiting; connections do.
        if r.ok || unwitnessed || tokio::time::Instant::now() >= deadline {
            return Ok(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// A split sampled at `url` as this backend requests it ([`requested_url`]).
async fn split_at(
    ctx: &Ctx<'_>,
    url: &str,
    expect: &BTreeMap<String, f64>,
    how: SplitHow<'_>,
) -> R {
    let (url, deviation) = requested_url(ctx, url);
    Ok(split(ctx, &url, expect, how)
        .await?
        .with_deviation(deviation))
}

/// The URL a check requests on this backend: the procedure's, or with its port shifted where
/// the backend may not bind ports below 1024 ([`Backend::port_shift`]), with the deviation that
/// says so.
fn requested_url(ctx: &Ctx<'_>, url: &str) -> (String, Option<String>) {
    match ctx.backend.port_shift() {
        Some(shift) => match shift.url(url) {
            (shifted, true) => {
                let d = shift.deviation(url, &shifted);
                (shifted, Some(d))
            }
            (same, false) => (same, None),
        },
        None => (url.to_string(), None),
    }
}
