//! The assertions of the steps: each a small named function that states what it expected, what
//! it observed, and the evidence it observed it in.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::backend::{Backend, BackendError, Output};
use crate::footer::{self, FooterState};
use crate::identity::{Extractor, Identifier, Identify};
use crate::manifest::string_map;
use crate::sampler::{self, Pace, Target};
use crate::scenario::{substitute, Check, Scenario};
use crate::stats::{self, SplitParams, SplitTest};

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
        }
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
    pub clients: &'a Arc<crate::dns::ClientResolver>,
}

type R = Result<CheckResult, BackendError>;

/// Runs one check.
pub async fn run(ctx: &Ctx<'_>, check: &Check) -> R {
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
        } => namespace_labels(ctx, cluster, name, labels).await,
        Check::PodsInjected {
            cluster,
            namespace,
            selector,
            revision,
        } => pods_injected(ctx, cluster, namespace, selector, revision.as_deref()).await,
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
        } => {
            let vss = ctx.backend.list(cluster, None, "VirtualService").await?;
            Ok(routes(&vss, namespace, gateway, expect))
        }
        Check::InjectionDisabled { cluster, name } => {
            let nss = ctx.backend.list(cluster, None, "Namespace").await?;
            Ok(injection_disabled(&nss, name))
        }
        Check::NoPublicService { cluster, namespace } => {
            let svcs = ctx
                .backend
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
            let url = match (url, via_domain) {
                (Some(u), _) => v(u),
                (None, _) => format!("http://{}/", ctx.scenario.dns.domain),
            };
            let (url, deviation) = requested_url(ctx, &url);
            let how = SplitHow {
                via_domain: *via_domain,
                error_budget: *error_budget,
                identify: identify.as_ref(),
                names,
            };
            Ok(split(ctx, &url, expect, how)
                .await?
                .with_deviation(deviation))
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

/// A destination's host, as the route names it.
fn destination_shares(route: &Value) -> BTreeMap<String, f64> {
    let dests: Vec<(String, f64)> = route
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["destination"]["host"].as_str().unwrap_or("").to_string(),
                        d["weight"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let total: f64 = dests.iter().map(|(_, w)| w).sum();
    let mut shares = BTreeMap::new();
    for (host, w) in &dests {
        // A lone destination without a weight takes everything; weight 0 is dropped, as istiod does.
        let share = if dests.len() == 1 && total == 0.0 {
            100.0
        } else if total > 0.0 {
            w / total * 100.0
        } else {
            0.0
        };
        if share > 0.0 {
            *shares.entry(host.clone()).or_insert(0.0) += share;
        }
    }
    shares
}

/// Whether a VirtualService in `vs_ns` binds the Gateway `ns/name`.
fn binds(vs: &Value, ns: &str, gateway: &str) -> bool {
    let vs_ns = vs["metadata"]["namespace"].as_str().unwrap_or("");
    vs["spec"]["gateways"].as_array().is_some_and(|gs| {
        gs.iter()
            .filter_map(Value::as_str)
            .any(|g| match g.split_once('/') {
                Some((n, g)) => n == ns && g == gateway,
                None => vs_ns == ns && g == gateway,
            })
    })
}

fn hosts_overlap(a: &str, b: &str) -> bool {
    a == b || a == "*" || b == "*"
}

/// The VirtualServices bound to Gateway `ns/gateway` route its traffic with these shares, and no
/// two of them claim the same host there (when two do, istiod serves one and drops the other).
pub fn routes(
    vss: &[Value],
    ns: &str,
    gateway: &str,
    expect: &BTreeMap<String, f64>,
) -> CheckResult {
    let bound: Vec<&Value> = vss.iter().filter(|v| binds(v, ns, gateway)).collect();
    let name = |v: &Value| {
        let (n, m) = crate::manifest::namespace_and_name(v);
        format!("{n}/{m}")
    };
    let hosts = |v: &Value| -> Vec<String> {
        v["spec"]["hosts"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut conflicts = Vec::new();
    for (i, a) in bound.iter().enumerate() {
        for b in &bound[i + 1..] {
            for ha in hosts(a) {
                if hosts(b).iter().any(|hb| hosts_overlap(&ha, hb)) {
                    conflicts.push(format!(
                        "{} and {} both claim host {ha:?}",
                        name(a),
                        name(b)
                    ));
                }
            }
        }
    }
    let expected = format!(
        "one VirtualService bound to Gateway {ns}/{gateway}, routing {}",
        expect
            .iter()
            .map(|(h, p)| format!("{h} {p}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let evidence = json!({"bound": bound.iter().map(|v| json!({"name": name(v), "hosts": hosts(v),
                           "http": v["spec"]["http"]})).collect::<Vec<_>>(),
                          "all VirtualServices": vss.iter().map(|v| json!({"name": name(v),
                           "gateways": v["spec"]["gateways"]})).collect::<Vec<_>>()});
    let Some(vs) = bound.first() else {
        return CheckResult::new(
            "routes",
            false,
            expected,
            format!("no VirtualService is bound to Gateway {ns}/{gateway}"),
            evidence,
        );
    };
    let shares = destination_shares(&vs["spec"]["http"][0]["route"]);
    let off: Vec<String> = expect
        .iter()
        .filter(|(h, p)| (shares.get(*h).copied().unwrap_or(0.0) - **p).abs() > 0.5)
        .map(|(h, p)| {
            format!(
                "{h}: {:.1}% instead of {p}%",
                shares.get(h).copied().unwrap_or(0.0)
            )
        })
        .chain(
            shares
                .iter()
                .filter(|(h, _)| !expect.contains_key(*h))
                .map(|(h, p)| format!("{h}: {p:.1}%, not expected")),
        )
        .collect();
    let observed_shares = shares
        .iter()
        .map(|(h, p)| format!("{h} {p:.1}%"))
        .collect::<Vec<_>>()
        .join(", ");
    let observed = if !conflicts.is_empty() {
        format!(
            "{}; {} routes {observed_shares}",
            conflicts.join("; "),
            name(vs)
        )
    } else if !off.is_empty() {
        format!("{} routes {observed_shares} ({})", name(vs), off.join("; "))
    } else {
        format!("{} routes {observed_shares}", name(vs))
    };
    CheckResult::new(
        "routes",
        conflicts.is_empty() && off.is_empty(),
        expected,
        observed,
        evidence,
    )
}

/// The namespace exists and no label of it asks for injection.
pub fn injection_disabled(namespaces: &[Value], name: &str) -> CheckResult {
    let got = namespaces
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .map(|n| string_map(&n["metadata"]["labels"]));
    let injecting: Vec<String> = got
        .iter()
        .flatten()
        .filter(|(k, v)| {
            (k.as_str() == "istio-injection" && v.as_str() == "enabled")
                || k.as_str() == "istio.io/rev"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    CheckResult::new(
        "injection_disabled",
        got.is_some() && injecting.is_empty(),
        format!("namespace {name} exists without istio-injection=enabled or istio.io/rev"),
        match &got {
            None => format!("no namespace {name}"),
            Some(_) if !injecting.is_empty() => format!("labelled {}", injecting.join(", ")),
            Some(l) => format!("labels {l:?}"),
        },
        json!({"namespace": name, "labels": got}),
    )
}

/// No Service of the namespace is reachable from outside the cluster.
pub fn no_public_service(services: &[Value], namespace: &str) -> CheckResult {
    let public: Vec<String> = services
        .iter()
        .filter(|s| {
            matches!(
                s["spec"]["type"].as_str(),
                Some("LoadBalancer" | "NodePort")
            )
        })
        .map(|s| {
            format!(
                "{} ({}, ingress {})",
                s["metadata"]["name"].as_str().unwrap_or(""),
                s["spec"]["type"].as_str().unwrap_or(""),
                s["status"]["loadBalancer"]["ingress"]
            )
        })
        .collect();
    CheckResult::new(
        "no_public_service",
        public.is_empty(),
        format!("no LoadBalancer or NodePort Service in {namespace}"),
        if public.is_empty() {
            format!("{} Services, none public", services.len())
        } else {
            format!("public: {}", public.join(", "))
        },
        json!({"services": services.iter().map(|s| json!({"name": s["metadata"]["name"], "type": s["spec"]["type"]})).collect::<Vec<_>>()}),
    )
}

fn fleet_overview(yaml: &str) -> Result<crate::fleet::Overview, BackendError> {
    crate::fleet::overview(yaml).map_err(|e| BackendError::infra("reading fleet mesh describe", e))
}

/// `fleet mesh describe` reports the mesh feature enabled.
pub fn mesh_feature_enabled(yaml: &str) -> R {
    let o = fleet_overview(yaml)?;
    Ok(CheckResult::new(
        "mesh_feature_enabled",
        o.feature == "ACTIVE",
        "the fleet's servicemesh feature: resourceState.state ACTIVE",
        format!("resourceState.state {}", o.feature),
        json!({"describe": yaml}),
    ))
}

/// `fleet mesh describe` lists the membership (with the management asked, if given).
pub fn membership_listed(yaml: &str, membership: &str, management: Option<&str>) -> R {
    let o = fleet_overview(yaml)?;
    let want = management.map(|m| format!("MANAGEMENT_{}", m.to_uppercase()));
    let got = o.memberships.get(membership);
    let ok = match (&want, got) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(w), Some(g)) => g.as_deref() == Some(w.as_str()),
    };
    Ok(CheckResult::new(
        "membership_listed",
        ok,
        format!(
            "membership {membership} in the servicemesh feature{}",
            want.as_ref()
                .map(|w| format!(", spec mesh.management {w}"))
                .unwrap_or_default()
        ),
        match got {
            None => format!(
                "not listed (memberships: {})",
                o.memberships.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Some(m) => format!(
                "listed, mesh.management {}",
                m.as_deref().unwrap_or("unset")
            ),
        },
        json!({"describe": yaml}),
    ))
}

/// What the users' resolver holds for the domain (it resolves now when it holds nothing, as a
/// client would).
pub async fn clients_resolve(ctx: &Ctx<'_>, address: &str, max_ttl: u32) -> R {
    let domain = &ctx.scenario.dns.domain;
    let mut held = ctx.clients.held(domain);
    let mut fresh = false;
    if held.is_none() {
        ctx.clients
            .resolve(domain)
            .await
            .map_err(|e| BackendError::infra(format!("resolving {domain}"), e))?;
        held = ctx.clients.held(domain);
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
    held: Option<&crate::dns::Held>,
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

/// The cluster is listed by the backend.
pub async fn cluster_exists(ctx: &Ctx<'_>, cluster: &str) -> R {
    let clusters = ctx.backend.clusters().await?;
    let state = clusters.get(cluster).cloned();
    Ok(CheckResult::new(
        "cluster_exists",
        state.as_deref() == Some("RUNNING"),
        format!("cluster {cluster} RUNNING"),
        state
            .map(|s| format!("cluster {cluster} {s}"))
            .unwrap_or_else(|| format!("no cluster {cluster}")),
        json!({"clusters": clusters}),
    ))
}

/// The cluster is no longer listed.
pub async fn cluster_absent(ctx: &Ctx<'_>, cluster: &str) -> R {
    let clusters = ctx.backend.clusters().await?;
    Ok(CheckResult::new(
        "cluster_absent",
        !clusters.contains_key(cluster),
        format!("no cluster {cluster}"),
        if clusters.contains_key(cluster) {
            format!("cluster {cluster} still listed")
        } else {
            "not listed".into()
        },
        json!({"clusters": clusters}),
    ))
}

/// `kubectl config get-contexts --output=name` lists the cluster's name.
pub async fn context_listed(ctx: &Ctx<'_>, cluster: &str) -> R {
    let contexts = ctx.backend.contexts().await?;
    Ok(CheckResult::new(
        "context_listed",
        contexts.iter().any(|c| c == cluster),
        format!("context {cluster} listed"),
        format!("contexts {contexts:?}"),
        json!({"get-contexts --output=name": contexts}),
    ))
}

/// The action printed these lines, in this order.
/// A published line that gcloud now words otherwise (`gcloud::DRIFTS`) counts as found, and is
/// reported as a deviation, which does not fail the step.
pub fn output_contains(output: Option<&Output>, lines: &[String]) -> CheckResult {
    let stdout = output.map(|o| o.stdout.as_str()).unwrap_or_default();
    let mut rest = stdout;
    let mut missing = None;
    let mut deviations = Vec::new();
    for l in lines {
        if let Some(i) = rest.find(l.as_str()) {
            rest = &rest[i + l.len()..];
        } else if let Some((said, why)) = crate::gcloud::drifted(l, rest) {
            deviations.push(format!(
                "the published procedure shows {l:?}; the tool printed {said:?} ({why})"
            ));
            let i = rest.find(said).unwrap_or(0);
            rest = &rest[i + said.len()..];
        } else {
            missing = Some(l.clone());
            break;
        }
    }
    let mut r = CheckResult::new(
        "output_contains",
        missing.is_none(),
        format!("output with {lines:?} in order"),
        match &missing {
            None if deviations.is_empty() => "all lines, in order".into(),
            None => "all lines, in order, some in newer wording".into(),
            Some(l) => format!("{l:?} missing (or out of order)"),
        },
        json!({"command": output.map(|o| o.command.clone()), "stdout": stdout}),
    );
    r.deviations = deviations;
    r
}

/// `istioctl install` succeeded: the ✔ lines of `profile`, in order. Each `published` line
/// (what the procedure's text shows) that the output lacks is a deviation, explained by what
/// this istioctl version prints instead.
pub fn istio_installed(
    output: Option<&Output>,
    profile: &str,
    published: &[String],
    version: Option<&str>,
) -> CheckResult {
    use crate::backend::istioctl::install_output::{default_line, minor, success_lines};
    let stdout = output.map(|o| o.stdout.as_str()).unwrap_or_default();
    let want = success_lines(profile);
    let mut rest = stdout;
    let mut missing = None;
    for l in &want {
        match rest.find(l) {
            Some(i) => rest = &rest[i + l.len()..],
            None => {
                missing = Some(*l);
                break;
            }
        }
    }
    let v = version.unwrap_or("of unknown version");
    let instead = match version.and_then(minor) {
        Some(m) => match default_line(m) {
            Some(l) => format!("istioctl {v} prints {l:?} instead"),
            None => format!("istioctl {v} prints no such line (1.24 and later print none)"),
        },
        None => format!(
            "istioctl {v} printed: {:?}",
            stdout.lines().last().unwrap_or("")
        ),
    };
    let mut r = CheckResult::new(
        "istio_installed",
        missing.is_none(),
        format!("istioctl's success lines for the {profile} profile, in order: {want:?}"),
        match missing {
            None => format!("all of them (istioctl {v})"),
            Some(l) => format!("{l:?} missing (or out of order): the install did not succeed"),
        },
        json!({"command": output.map(|o| o.command.clone()), "stdout": stdout, "istio_version": version}),
    );
    r.deviations = published
        .iter()
        .filter(|p| !stdout.contains(p.as_str()))
        .map(|p| format!("the published procedure shows {p:?}; {instead}"))
        .collect();
    r
}

/// Deployments of a namespace are available.
pub async fn deployments_available(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    count: Option<usize>,
    names: &[String],
) -> R {
    let ds = ctx.backend.list(cluster, Some(ns), "Deployment").await?;
    let summary: BTreeMap<String, String> = ds
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                format!(
                    "{}/{} available",
                    d["status"]["availableReplicas"].as_u64().unwrap_or(0),
                    d["spec"]["replicas"].as_u64().unwrap_or(1)
                ),
            )
        })
        .collect();
    let unavailable: Vec<&str> = ds
        .iter()
        .filter(|d| !crate::manifest::deployment_available(d))
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    let missing: Vec<&String> = names.iter().filter(|n| !summary.contains_key(*n)).collect();
    let count_ok = count.is_none_or(|c| c == ds.len());
    let ok = unavailable.is_empty() && missing.is_empty() && count_ok && !ds.is_empty();
    Ok(CheckResult::new(
        "deployments_available",
        ok,
        format!(
            "{}all Deployments in {cluster}/{ns} available{}",
            count
                .map(|c| format!("{c} Deployments, "))
                .unwrap_or_default(),
            if names.is_empty() {
                String::new()
            } else {
                format!(", including {names:?}")
            }
        ),
        format!(
            "{} Deployments; unavailable {unavailable:?}; missing {missing:?}",
            ds.len()
        ),
        json!({"deployments": summary}),
    ))
}

/// An object exists (or not).
pub async fn object_presence(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    kind: &str,
    name: &str,
    want: bool,
) -> R {
    let objs = ctx.backend.list(cluster, Some(ns), kind).await?;
    let names: Vec<&str> = objs
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let present = names.contains(&name);
    Ok(CheckResult::new(
        if want {
            "object_exists"
        } else {
            "object_absent"
        },
        present == want,
        format!(
            "{kind} {ns}/{name} {}",
            if want { "present" } else { "absent" }
        ),
        format!(
            "{kind} {ns}/{name} {}",
            if present { "present" } else { "absent" }
        ),
        json!({format!("{kind} in {cluster}/{ns}"): names}),
    ))
}

/// The ingress IP the procedure reads with `.items[0]`: the first Service, with its address.
pub fn first_service_ip(services: &[Value]) -> Option<(String, Option<String>)> {
    services.first().map(|s| {
        (
            s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            s["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string),
        )
    })
}

/// `.items[0]` of the namespace's Services is the expected LoadBalancer.
pub async fn first_service_is(ctx: &Ctx<'_>, cluster: &str, ns: &str, name: &str) -> R {
    let svcs = ctx.backend.list(cluster, Some(ns), "Service").await?;
    let first = first_service_ip(&svcs);
    let names: Vec<&str> = svcs
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    Ok(CheckResult::new(
        "first_service_is",
        first
            .as_ref()
            .is_some_and(|(n, ip)| n == name && ip.is_some()),
        format!(".items[0] is LoadBalancer {name} with an external IP"),
        match &first {
            Some((n, ip)) => format!(".items[0] is {n} (ip {ip:?})"),
            None => "no Services".into(),
        },
        json!({"services in order": names}),
    ))
}

/// The page answers with `status` and a footer that identifies who served it.
pub async fn home_page(ctx: &Ctx<'_>, url: &str, status: u16) -> R {
    let client = sampler::client(&Target {
        url: url.into(),
        host: None,
        resolve: vec![],
        dns: None,
    })
    .map_err(|e| BackendError::infra(format!("fetching {url}"), crate::error_chain(&e)))?;
    // On backends where changes reach the data plane after the action returns, ask again until
    // the page is as expected or the backend's convergence time has passed (as a person would
    // reload); every earlier answer is kept as evidence.
    let deadline = tokio::time::Instant::now() + ctx.backend.convergence();
    let mut earlier: Vec<String> = Vec::new();
    let (got, body) = loop {
        let answer = match client.get(url).send().await {
            Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(e) => Err(crate::error_chain(&e)),
        };
        let good = matches!(&answer, Ok((g, b)) if *g == status
            && matches!(footer::parse(b), Ok(f) if f.state == FooterState::Identified));
        if good || tokio::time::Instant::now() >= deadline {
            match answer {
                Ok(a) => break a,
                Err(e) => {
                    return Ok(CheckResult::new(
                        "home_page",
                        false,
                        format!("GET {url} answers {status} with an identifying footer"),
                        format!("no answer: {e}"),
                        json!({"earlier answers": earlier}),
                    ))
                }
            }
        }
        if earlier.len() < 20 {
            earlier.push(match &answer {
                Ok((g, _)) => format!("status {g}"),
                Err(e) => e.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let f = footer::parse(&body);
    let identified = matches!(&f, Ok(f) if f.state == FooterState::Identified);
    Ok(CheckResult::new(
        "home_page",
        got == status && identified,
        format!("GET {url} answers {status} with an identifying footer"),
        format!(
            "status {got}, footer {}",
            match &f {
                Ok(f) => serde_json::to_string(f).unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        ),
        json!({"status": got, "footer": f.as_ref().ok(), "title": body.contains("<title>Online Boutique</title>"), "earlier answers": earlier}),
    ))
}

/// `fleet mesh describe` shows both planes ACTIVE for the membership.
pub async fn mesh_active(ctx: &Ctx<'_>, membership: &str) -> R {
    let yaml = ctx.backend.mesh_describe().await?;
    let status = crate::fleet::membership_status(&yaml, membership)
        .map_err(|e| BackendError::infra("reading fleet mesh describe", e))?;
    Ok(CheckResult::new(
        "mesh_active",
        status.as_ref().is_some_and(|s| s.control_plane_active()),
        format!("membership {membership}: controlPlaneManagement ACTIVE (the data plane is reported beside it)"),
        match &status {
            Some(s) => format!(
                "control plane {}, data plane {} ({})",
                s.control_plane,
                s.data_plane,
                s.details.join("; ")
            ),
            None => format!("membership {membership} not listed"),
        },
        json!({"describe": yaml}),
    ))
}

/// Whether one pod was injected (by `revision`, when given): the injector's record in
/// `sidecar.istio.io/status` and an `istio-proxy` container whose image is not `auto`, among
/// `containers` or, as a native sidecar (Istio ≥ 1.27 on Kubernetes ≥ 1.33), `initContainers`.
pub fn pod_injection(p: &Value, revision: Option<&str>) -> (bool, Value) {
    let status: Value = p["metadata"]["annotations"]["sidecar.istio.io/status"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    // Istio ≥ 1.27 on Kubernetes ≥ 1.33 injects istio-proxy as a native sidecar, in
    // initContainers; gateways and older versions have it in containers.
    let proxy_image = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| p["spec"][*k].as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str().map(str::to_string));
    let rev = status["revision"].as_str().map(str::to_string);
    let ok = !status.is_null()
        && proxy_image.as_deref().is_some_and(|i| i != "auto")
        && revision.is_none_or(|r| rev.as_deref() == Some(r));
    let ev = json!({"revision": rev, "istio-proxy image": proxy_image,
            "waiting": p["status"]["containerStatuses"].as_array().and_then(|cs| cs.iter().find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string)))});
    (ok, ev)
}

/// The namespace carries the labels.
pub async fn namespace_labels(
    ctx: &Ctx<'_>,
    cluster: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> R {
    let nss = ctx.backend.list(cluster, None, "Namespace").await?;
    let got = nss
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .map(|n| string_map(&n["metadata"]["labels"]));
    let ok = got
        .as_ref()
        .is_some_and(|g| labels.iter().all(|(k, v)| g.get(k) == Some(v)));
    Ok(CheckResult::new(
        "namespace_labels",
        ok,
        format!("namespace {name} labelled {labels:?}"),
        match &got {
            Some(g) => format!("labels {g:?}"),
            None => format!("no namespace {name}"),
        },
        json!({"namespace": name, "labels": got}),
    ))
}

/// Every selected pod runs an injected istio-proxy (of `revision`, if given).
pub async fn pods_injected(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    selector: &BTreeMap<String, String>,
    revision: Option<&str>,
) -> R {
    let pods = ctx.backend.list(cluster, Some(ns), "Pod").await?;
    let selected: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            let l = string_map(&p["metadata"]["labels"]);
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    let mut evidence = BTreeMap::new();
    let mut bad = Vec::new();
    for p in &selected {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (ok, ev) = pod_injection(p, revision);
        if !ok {
            bad.push(name.clone());
        }
        evidence.insert(name, ev);
    }
    Ok(CheckResult::new(
        "pods_injected",
        !selected.is_empty() && bad.is_empty(),
        format!(
            "pods {selector:?} in {cluster}/{ns} injected{}",
            revision
                .map(|r| format!(" by revision {r}"))
                .unwrap_or_default()
        ),
        if selected.is_empty() {
            "no such pods".into()
        } else {
            format!("{} pods, not injected: {bad:?}", selected.len())
        },
        json!(evidence),
    ))
}

/// The applied ServiceEntry's endpoint address.
pub async fn service_entry_address(
    ctx: &Ctx<'_>,
    cluster: &str,
    ns: &str,
    name: &str,
    gateway: &crate::scenario::ServiceRef,
) -> R {
    let svcs = ctx
        .backend
        .list(&gateway.cluster, Some(&gateway.namespace), "Service")
        .await?;
    let svc = svcs
        .iter()
        .find(|s| s["metadata"]["name"] == gateway.service.as_str());
    let lb = svc.and_then(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str());
    let address = lb.unwrap_or("(none)");
    let ses = ctx.backend.list(cluster, Some(ns), "ServiceEntry").await?;
    let se = ses.iter().find(|s| s["metadata"]["name"] == name);
    let addrs: Vec<String> = se
        .and_then(|s| s["spec"]["endpoints"].as_array())
        .map(|es| {
            es.iter()
                .filter_map(|e| e["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(CheckResult::new(
        "service_entry_address",
        lb.is_some() && addrs == [address.to_string()],
        format!(
            "ServiceEntry {ns}/{name} ({cluster}) endpoint address = the load-balancer IP of {}/{} in {} ({address})",
            gateway.namespace, gateway.service, gateway.cluster
        ),
        if se.is_none() {
            format!("no ServiceEntry {ns}/{name}")
        } else {
            format!("endpoint addresses {addrs:?}")
        },
        json!({"service_entry": se.map(|s| s["spec"].clone()),
               "gateway_service_status": svc.map(|s| s["status"].clone())}),
    ))
}

/// The domain's A record and TTL, as the DNS server answers.
pub async fn dns_record(ctx: &Ctx<'_>, address: &str, ttl: u32) -> R {
    let server = ctx.backend.dns_server();
    let domain = &ctx.scenario.dns.domain;
    let (ok, observed, evidence) = match crate::dns::query_a(server, domain).await {
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

/// Pod name → cluster, for footers that print only the pod.
async fn pod_map(ctx: &Ctx<'_>) -> Result<BTreeMap<String, String>, BackendError> {
    pods_by_cluster(ctx.backend, ctx.scenario).await
}

/// Pod name → cluster, for every pod of the scenario's running clusters (to attribute footers
/// that name a pod only).
pub async fn pods_by_cluster(
    backend: &dyn Backend,
    scenario: &Scenario,
) -> Result<BTreeMap<String, String>, BackendError> {
    let mut map = BTreeMap::new();
    let live = backend.clusters().await?;
    for c in &scenario.clusters {
        if !live.contains_key(&c.name) {
            continue;
        }
        for p in backend.list(&c.name, None, "Pod").await? {
            if let Some(n) = p["metadata"]["name"].as_str() {
                map.insert(n.to_string(), c.name.clone());
            }
        }
    }
    Ok(map)
}

/// How a split check samples and attributes answers.
#[derive(Debug, Clone, Copy)]
pub struct SplitHow<'a> {
    /// Through the scenario's domain, resolved by the users' resolver.
    pub via_domain: bool,
    /// Share of failed answers tolerated (None: the run's).
    pub error_budget: Option<f64>,
    /// The identity extractor, parsed when the scenario was read (None: the footer).
    pub identify: Option<&'a Identify>,
    /// Values read → cluster names.
    pub names: &'a BTreeMap<String, String>,
}

/// Who served an answer, as a split check reads it: the extractor, the scenario's names, and for
/// the footer the backend's real cluster names and the run's pods.
async fn identifier(ctx: &Ctx<'_>, how: &SplitHow<'_>) -> Result<Identifier, BackendError> {
    let extractor: Extractor = match how.identify {
        None => Extractor::Footer,
        Some(i) => i
            .extractor()
            .map_err(|e| BackendError::infra("reading the split's identity extractor", e))?
            .clone(),
    };
    let (mut names, pods) = match extractor {
        Extractor::Footer => (ctx.backend.real_cluster_names(), pod_map(ctx).await?),
        _ => (BTreeMap::new(), BTreeMap::new()),
    };
    names.extend(how.names.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Identifier {
        extractor,
        names,
        pods,
    })
}

/// Sampled traffic splits between clusters as expected (sequential test, see `stats`).
pub async fn split(
    ctx: &Ctx<'_>,
    url: &str,
    expect: &BTreeMap<String, f64>,
    how: SplitHow<'_>,
) -> R {
    let SplitHow {
        via_domain,
        error_budget,
        ..
    } = how;
    let id = identifier(ctx, &how).await?;
    let target = Target {
        url: url.to_string(),
        host: None,
        resolve: vec![],
        dns: via_domain.then(|| ctx.clients.clone()),
    };
    let domain = &ctx.scenario.dns.domain;
    let held_before = via_domain.then(|| ctx.clients.held(domain)).flatten();
    let params = stats::SplitParams {
        max_error_rate: error_budget.unwrap_or(ctx.params.max_error_rate),
        ..*ctx.params
    };
    let mut test = SplitTest::new(expect, params);
    let bar = ctx
        .progress
        .then(|| progress_bar(ctx.params.max_requests, url));
    let s = sampler::sample_until(&target, &mut test, ctx.pace, &id, bar.as_ref())
        .await
        .map_err(|e| BackendError::infra(format!("sampling {url}"), crate::error_chain(&e)))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let verdict = test.verdict();
    let expected = expect
        .iter()
        .map(|(k, v)| format!("{k} {v}%"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(CheckResult::new(
        "split",
        verdict.ok(),
        format!(
            "{expected} of requests to {url}{}{}{}",
            match &id.extractor {
                Extractor::Footer => String::new(),
                other => format!(", each attributed by {other}"),
            },
            if via_domain {
                " (resolved by the users' resolver, which holds answers for their TTL)"
            } else {
                ""
            },
            if params.max_error_rate > 0.0 {
                format!(
                    ", at most {}% of them failing",
                    params.max_error_rate * 100.0
                )
            } else {
                String::new()
            }
        ),
        format!(
            "{}; {}{}",
            describe_shares(&verdict),
            describe_decision(&verdict.decision),
            match &held_before {
                Some(h) => format!(
                    "; when sampling began, clients held {domain} A {} (TTL {} s, {:.2} s left at DNS time scale {})",
                    h.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    h.ttl,
                    h.remaining_seconds,
                    ctx.clients.scale()
                ),
                None => String::new(),
            }
        ),
        json!({"requests": s.requests, "seconds": s.seconds, "counts": s.counts, "errors": s.errors,
               "error_budget": params.max_error_rate,
               "error_examples": s.error_examples, "test": verdict.statement, "decision": verdict.decision,
               "shares": verdict.shares, "trace": test.trace(),
               "clients' resolver": via_domain.then(|| json!({"held at the start": held_before,
                                                              "ttl_scale": ctx.clients.scale()}))}),
    ))
}

/// The continuous load stayed within its error budget (the engine judges it after the steps).
pub fn continuous_load(l: &crate::load::LoadReport) -> CheckResult {
    CheckResult::new(
        "continuous_load",
        l.ok,
        format!(
            "at most {} of the load's requests to fail ({} a second from {}{})",
            l.error_budget,
            l.rate,
            l.url,
            l.via_domain_after
                .as_ref()
                .map(|d| format!(", through the domain after {d}"))
                .unwrap_or_default()
        ),
        crate::load::render(l),
        json!({"requests": l.requests, "errors": l.errors, "error_windows": l.error_windows,
               "time_to_effect": l.time_to_effect}),
    )
}

/// Counts, shares and intervals in one line.
pub fn describe_shares(v: &stats::SplitVerdict) -> String {
    let mut parts: Vec<String> = v
        .shares
        .iter()
        .map(|(k, s)| {
            format!(
                "{k} {} ({:.1}%, {:.1}–{:.1}%)",
                s.count,
                s.observed * 100.0,
                s.interval.0 * 100.0,
                s.interval.1 * 100.0
            )
        })
        .collect();
    parts.push(format!("errors {}", v.errors));
    parts.join(", ")
}

/// The decision in words.
pub fn describe_decision(d: &stats::Decision) -> String {
    match d {
        stats::Decision::Continue => "no decision".into(),
        stats::Decision::Consistent => "consistent".into(),
        stats::Decision::Inconsistent(r) => format!("inconsistent: {r}"),
        stats::Decision::Undecided(r) => format!("undecided: {r}"),
    }
}

/// A progress bar on stderr for a sampling run.
pub fn progress_bar(n: u64, what: &str) -> indicatif::ProgressBar {
    let b =
        indicatif::ProgressBar::with_draw_target(Some(n), indicatif::ProgressDrawTarget::stderr());
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "  sampling {msg} [{bar:30}] {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

/// Nothing of the run is left.
pub async fn nothing_left(ctx: &Ctx<'_>) -> R {
    let inv = ctx.backend.inventory().await?;
    let mut left = Vec::new();
    for (c, state) in &inv.clusters {
        left.push(format!("cluster {c} ({state})"));
    }
    for m in &inv.memberships {
        left.push(format!("fleet membership {m}"));
    }
    if inv.mesh_feature_enabled {
        left.push("fleet mesh feature enabled".into());
    }
    for lb in &inv.load_balancers {
        left.push(format!("load balancer {lb}"));
    }
    Ok(CheckResult::new(
        "nothing_left",
        inv.is_empty(),
        "no cluster, fleet membership, mesh feature or load balancer of the run left".to_string(),
        if left.is_empty() {
            "nothing left".into()
        } else {
            format!("left: {}", left.join(", "))
        },
        json!(inv),
    ))
}

/// Parses an address variable (`ReadIngressIp` results, DNS records).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::istioctl::install_output::RECORDED_1_31_0_DEFAULT;
    use rstest::rstest;

    const PUBLISHED: &str = "Making this installation the default for injection and validation.";

    fn out(stdout: &str) -> Output {
        Output::new("istioctl install --set profile=default -y", stdout)
    }

    #[test]
    fn a_successful_install_passes_and_the_published_line_is_a_deviation() {
        let r = istio_installed(
            Some(&out(RECORDED_1_31_0_DEFAULT)),
            "default",
            &[PUBLISHED.into()],
            Some("1.31.0"),
        );
        assert!(r.ok, "{}", r.message());
        assert_eq!(r.deviations.len(), 1, "{:?}", r.deviations);
        assert!(
            r.deviations[0].contains("istioctl 1.31.0 prints no such line"),
            "{:?}",
            r.deviations
        );
    }

    #[rstest]
    #[case::v1_22(
        "1.22.3",
        "prints \"Made this installation the default for injection and validation.\" instead"
    )]
    #[case::v1_23(
        "1.23.0",
        "prints \"Made this installation the default for cluster-wide operations.\" instead"
    )]
    #[case::v1_18("1.18.2", "prints no such line")]
    fn each_version_explains_its_own_wording(#[case] version: &str, #[case] says: &str) {
        let r = istio_installed(
            Some(&out(RECORDED_1_31_0_DEFAULT)),
            "default",
            &[PUBLISHED.into()],
            Some(version),
        );
        assert!(r.deviations[0].contains(says), "{:?}", r.deviations);
    }

    #[test]
    fn an_install_that_stopped_before_the_gateways_fails() {
        let cut = RECORDED_1_31_0_DEFAULT
            .split("✔ Ingress gateways installed")
            .next()
            .unwrap();
        let r = istio_installed(Some(&out(cut)), "default", &[], Some("1.31.0"));
        assert!(!r.ok);
        assert_eq!(
            r.message().split(';').nth(1).unwrap().trim(),
            "observed \"✔ Ingress gateways installed\" missing (or out of order): the install did not succeed"
        );
    }

    #[test]
    fn the_minimal_profile_needs_no_gateway_line() {
        let minimal = RECORDED_1_31_0_DEFAULT.replace("✔ Ingress gateways installed 🛬\n", "");
        assert!(istio_installed(Some(&out(&minimal)), "minimal", &[], None).ok);
        assert!(!istio_installed(Some(&out(&minimal)), "default", &[], None).ok);
    }

    fn injected_pod(where_: &str) -> Value {
        // The shape of a pod the real istiod 1.31 injected on Kubernetes 1.35 (kwok run):
        // sidecar.istio.io/status names the revision; istio-proxy is a native sidecar.
        let mut p = json!({
            "metadata": {"name": "frontend-1", "annotations": {
                "sidecar.istio.io/status": "{\"initContainers\":[\"istio-validation\",\"istio-proxy\"],\"containers\":null,\"volumes\":[\"workload-socket\"],\"imagePullSecrets\":null,\"revision\":\"asm-managed\"}"}},
            "spec": {"containers": [{"name": "server", "image": "frontend:v0.10.6"}], "initContainers": []},
        });
        let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.31.0", "restartPolicy": "Always"});
        p["spec"][where_].as_array_mut().unwrap().push(proxy);
        p
    }

    #[rstest]
    #[case::native_sidecar("initContainers")]
    #[case::classic_sidecar("containers")]
    fn an_injected_pod_is_seen_wherever_istio_proxy_is(#[case] where_: &str) {
        let (ok, ev) = pod_injection(&injected_pod(where_), Some("asm-managed"));
        assert!(ok, "{ev}");
    }

    #[test]
    fn a_pod_of_another_revision_or_not_injected_fails() {
        let (ok, ev) = pod_injection(&injected_pod("initContainers"), Some("default"));
        assert!(!ok);
        assert_eq!(ev["revision"], "asm-managed");
        let plain =
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "server"}]}});
        let (ok, ev) = pod_injection(&plain, None);
        assert!(!ok);
        assert_eq!(ev["istio-proxy image"], Value::Null);
        // The gateway Deployment's `image: auto` left as is: the webhook never ran.
        let mut auto = injected_pod("containers");
        auto["spec"]["containers"][1]["image"] = json!("auto");
        assert!(!pod_injection(&auto, None).0);
    }
}
