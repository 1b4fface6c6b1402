//! Validation of a merged scenario: references between its parts, limits on its numbers,
//! variables defined before use, and the manifests its steps apply.

use std::collections::{BTreeMap, BTreeSet};

use crate::identity::Identify;
use crate::manifest::ManifestSource;
use crate::yaml::Location;

use super::model::{Action, Check, ContinuousLoad, ExpectedOutcome, Fault, Scenario, Step};
use super::{locate_in_file, ScenarioError};

/// Checks references between the parts of a scenario and parses its manifests.
pub(super) fn validate(
    mut s: Scenario,
    source: &ManifestSource,
) -> Result<Scenario, ScenarioError> {
    if s.steps.is_empty() {
        return Err(ScenarioError::Invalid {
            at: step_at(&s, ""),
            message: "the scenario has no steps".into(),
        });
    }
    check_clusters(&s)?;
    let mut ids = BTreeSet::new();
    let mut defined: BTreeSet<String> = BTreeSet::new();
    let mut pending = Pending::default();
    for step in &s.steps {
        check_step(&s, step, &mut ids, &mut defined, &mut pending)?;
    }
    if let Some(l) = &s.continuous_load {
        check_load(&s, l)?;
    }
    for (id, m) in pending.to_parse {
        let at_step = step_at(&s, &id);
        s.manifests.load(source, &m, &at_step)?;
    }
    check_expectation(&s)?;
    check_namespaces(&s)?;
    check_patches(&s, &pending.to_patch)?;
    Ok(s)
}

/// Where the step `id` is written (the scenario's first line when unknown).
fn step_at(s: &Scenario, id: &str) -> Location {
    s.step_locations.get(id).cloned().unwrap_or(Location {
        file: s.path.clone(),
        line: 1,
        column: 1,
    })
}

/// Work the steps leave for after they are all checked.
#[derive(Default)]
struct Pending {
    /// (step id, manifest path) of every manifest a step applies, parsed once the steps pass.
    to_parse: Vec<(String, String)>,
    /// The steps whose `apply` patches objects (each patch must find its object).
    to_patch: Vec<String>,
}

/// What the parts of one step name: clusters that must be declared, and texts whose variables
/// must be saved by then.
#[derive(Default)]
struct Named<'a> {
    /// Cluster names.
    clusters: Vec<&'a str>,
    /// Texts that may use `${NAME}` variables.
    texts: Vec<&'a str>,
}

/// The longest cluster name a scenario may give: GKE's limit of 40 characters (the Cluster
/// resource's `name`, GKE API reference: "can be up to 40 characters") less the `-RUNID` (7)
/// that the GKE and kind backends append to make a run's clusters its own.
pub const MAX_CLUSTER_NAME: usize = 33;

/// What is wrong with a cluster name, by the stricter of kind's and GKE's rules:
/// - GKE: lowercase letters, digits and hyphens; a letter first; a letter or digit last; up to
///   40 characters (here [`MAX_CLUSTER_NAME`], the run id's suffix taken off);
/// - kind v0.30.0: `^[a-z0-9.-]+$` (pkg/internal/apis/config/validate.go), which every name GKE
///   takes matches.
pub fn cluster_name_problem(name: &str) -> Option<String> {
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > MAX_CLUSTER_NAME {
        format!(
            "it has {} characters; GKE allows 40, and the backends append -RUNID (7)",
            name.len()
        )
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("{c:?} is not a lowercase letter, digit or hyphen")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "it does not start with a lowercase letter".to_string()
    } else if name.ends_with('-') {
        "it ends with a hyphen".to_string()
    } else {
        return None;
    };
    Some(format!(
        "cluster name {name:?} is refused by GKE or kind: {why} (GKE: lowercase letters, digits and hyphens, a letter first, not a hyphen last, at most {MAX_CLUSTER_NAME} here)"
    ))
}

/// What is wrong with a URL the harness requests: it must be http:// or https:// (variables may
/// follow the scheme, not stand for it).
pub fn url_problem(url: &str) -> Option<String> {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        None
    } else {
        Some(format!(
            "url {url:?} is not an http:// or https:// URL (the harness requests it over HTTP)"
        ))
    }
}

/// The declared clusters: names GKE and kind both accept, a node count from 1 to 1000, no name
/// declared twice.
fn check_clusters(s: &Scenario) -> Result<(), ScenarioError> {
    let mut names = BTreeSet::new();
    for c in &s.clusters {
        if let Some(message) = cluster_name_problem(&c.name) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, &c.name),
                message,
            });
        }
        if let Some(n) = c.nodes.filter(|n| !(1..=1000).contains(n)) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, "nodes:"),
                message: format!("cluster {}: nodes must be 1 to 1000, not {n}", c.name),
            });
        }
        if !names.insert(c.name.clone()) {
            return Err(ScenarioError::Invalid {
                at: locate_in_file(&s.path, &c.name),
                message: format!("cluster {} is declared twice", c.name),
            });
        }
    }
    Ok(())
}

/// One step: a new id; its action, faults and checks sound; the clusters they name declared;
/// the variables they use saved by then (`defined`, which its own action's `save_as` joins).
fn check_step(
    s: &Scenario,
    step: &Step,
    ids: &mut BTreeSet<String>,
    defined: &mut BTreeSet<String>,
    pending: &mut Pending,
) -> Result<(), ScenarioError> {
    let fail = |message: String| ScenarioError::Invalid {
        at: step_at(s, &step.id),
        message: format!("step {}: {message}", step.id),
    };
    if !ids.insert(step.id.clone()) {
        return Err(fail("the id is used twice".into()));
    }
    let mut named = Named::default();
    if let Some(action) = &step.run {
        check_action(&step.id, action, &fail, &mut named, pending)?;
    }
    check_faults(&step.inject, &fail, &mut named)?;
    check_checks(&step.check, &fail, &mut named)?;
    for c in named.clusters {
        if s.cluster(c).is_none() {
            return Err(fail(format!(
                "cluster {c} is not declared in `clusters` ({})",
                s.clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // A step's checks may read what its own action saves.
    if let Some(Action::ReadIngressIp { save_as, .. }) = &step.run {
        defined.insert(save_as.clone());
    }
    for t in named.texts {
        for var in variables_in(t) {
            if !defined.contains(&var) {
                return Err(fail(format!(
                    "variable ${{{var}}} is used before a step saves it"
                )));
            }
        }
    }
    check_load_variables(s, step, defined)
}

/// A step's action (of the step `id`): its numbers in range, its `apply` complete; notes the
/// clusters and texts it names and the manifests and patches left for later.
fn check_action<'a>(
    id: &str,
    action: &'a Action,
    fail: &impl Fn(String) -> ScenarioError,
    named: &mut Named<'a>,
    pending: &mut Pending,
) -> Result<(), ScenarioError> {
    match action {
        Action::CreateCluster { cluster }
        | Action::RenameContext { cluster }
        | Action::InstallIstio { cluster, .. }
        | Action::FleetRegister { cluster, .. }
        | Action::CreateNamespace { cluster, .. }
        | Action::RestartWorkloads { cluster, .. }
        | Action::Delete { cluster, .. } => named.clusters.push(cluster),
        Action::LabelNamespace {
            cluster,
            labels,
            remove,
            ..
        } => {
            named.clusters.push(cluster);
            if labels.is_empty() && remove.is_empty() {
                return Err(fail("`label_namespace` needs `labels` or `remove`".into()));
            }
            if let Some(k) = remove.iter().find(|k| labels.contains_key(*k)) {
                return Err(fail(format!(
                    "`label_namespace` both sets and removes label {k:?}"
                )));
            }
        }
        Action::Apply {
            cluster,
            manifests,
            replace,
            patch,
            objects,
            ..
        } => {
            named.clusters.push(cluster);
            if manifests.is_empty() && objects.is_empty() {
                return Err(fail("`apply` needs `manifests` or `objects`".into()));
            }
            for m in manifests {
                pending.to_parse.push((id.to_string(), m.clone()));
            }
            for r in replace {
                if r.from.is_empty() {
                    return Err(fail(
                        "replace: `from` is empty (sed would match everywhere)".into(),
                    ));
                }
                named.texts.push(&r.to);
            }
            if !patch.is_empty() {
                pending.to_patch.push(id.to_string());
            }
            check_objects(objects, fail)?;
        }
        Action::ReadIngressIp { cluster, .. } => named.clusters.push(cluster),
        Action::DnsSetRecord { address, ttl } => {
            named.texts.push(address);
            if *ttl > MAX_TTL {
                return Err(fail(format!(
                    "ttl must be at most {MAX_TTL} (RFC 2181, section 8), not {ttl}"
                )));
            }
        }
        Action::WaitMeshActive {
            timeout_seconds,
            poll_seconds,
            stable_seconds,
            ..
        } => check_mesh_wait(*timeout_seconds, *poll_seconds, *stable_seconds, fail)?,
        Action::WaitTtl { seconds } => {
            if *seconds > MAX_WAIT_TTL {
                return Err(fail(format!(
                    "wait_ttl seconds must be at most {MAX_WAIT_TTL} (a week), not {seconds}"
                )));
            }
        }
        Action::FleetEnableMesh
        | Action::FleetMeshUpdate { .. }
        | Action::WaitDnsTtl
        | Action::DeleteCluster { .. }
        | Action::FleetUnregister { .. }
        | Action::FleetDisableMesh => {}
    }
    Ok(())
}

/// The objects an `apply` writes in the scenario: each with apiVersion, kind and name, and
/// well-formed.
fn check_objects(
    objects: &[serde_json::Value],
    fail: &impl Fn(String) -> ScenarioError,
) -> Result<(), ScenarioError> {
    for (i, o) in objects.iter().enumerate() {
        let field = |f: &str| o.pointer(f).and_then(|v| v.as_str()).unwrap_or("");
        if field("/apiVersion").is_empty()
            || field("/kind").is_empty()
            || field("/metadata/name").is_empty()
        {
            return Err(fail(format!(
                "objects[{i}] needs apiVersion, kind and metadata.name"
            )));
        }
        crate::manifest::check_object(o).map_err(|m| fail(format!("objects[{i}]: {m}")))?;
    }
    Ok(())
}

/// A `wait_mesh_active`'s times: stable, timeout and poll seconds in range.
fn check_mesh_wait(
    timeout_seconds: f64,
    poll_seconds: f64,
    stable_seconds: f64,
    fail: &impl Fn(String) -> ScenarioError,
) -> Result<(), ScenarioError> {
    let (t, p) = (timeout_seconds, poll_seconds);
    let st = stable_seconds;
    if !(st.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&st)) {
        return Err(fail(format!(
            "stable_seconds must be a number of seconds from 0 to {MAX_WAIT_SECONDS}, not {st}"
        )));
    }
    if !(t.is_finite() && t > 0.0 && t <= MAX_WAIT_SECONDS) {
        return Err(fail(format!(
            "timeout_seconds must be a number of seconds above 0 and at most {MAX_WAIT_SECONDS}, not {t}"
        )));
    }
    if !(p.is_finite() && p > 0.0 && p <= t) {
        return Err(fail(format!(
            "poll_seconds must be above 0 and at most timeout_seconds ({t}), not {p}"
        )));
    }
    Ok(())
}

/// The faults a step injects: a server error for a few requests; notes the clusters they strike.
fn check_faults<'a>(
    faults: &'a [Fault],
    fail: &impl Fn(String) -> ScenarioError,
    named: &mut Named<'a>,
) -> Result<(), ScenarioError> {
    for fault in faults {
        match fault {
            Fault::KillGateway { cluster, .. } => named.clusters.push(cluster),
            Fault::StopDns => {}
            Fault::FrontendErrors {
                cluster,
                status,
                requests,
            } => {
                named.clusters.push(cluster);
                if !(500..=599).contains(status) {
                    return Err(fail(format!(
                        "frontend_errors status must be a server error (500 to 599), not {status}"
                    )));
                }
                if !(1..=1_000_000).contains(requests) {
                    return Err(fail(format!(
                        "frontend_errors requests must be 1 to 1000000, not {requests}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A step's checks: percentages, statuses, a split's budget, source and extractor sound; notes
/// the clusters and texts they name.
fn check_checks<'a>(
    checks: &'a [Check],
    fail: &impl Fn(String) -> ScenarioError,
    named: &mut Named<'a>,
) -> Result<(), ScenarioError> {
    for check in checks {
        match check {
            Check::ClusterExists { cluster }
            | Check::ClusterAbsent { cluster }
            | Check::ContextListed { cluster }
            | Check::DeploymentsAvailable { cluster, .. }
            | Check::ObjectExists { cluster, .. }
            | Check::ObjectAbsent { cluster, .. }
            | Check::FirstServiceIs { cluster, .. }
            | Check::NamespaceLabels { cluster, .. }
            | Check::InjectionDisabled { cluster, .. }
            | Check::NoPublicService { cluster, .. }
            | Check::PodsInjected { cluster, .. }
            | Check::ProxiesConnected { cluster, .. } => named.clusters.push(cluster),
            Check::Routes {
                cluster, expect, ..
            } => {
                named.clusters.push(cluster);
                check_percentages(expect).map_err(|m| fail(format!("routes: {m}")))?;
            }
            Check::ClientsResolve { address, .. } => named.texts.push(address),
            Check::ServiceEntryAddress {
                cluster, gateway, ..
            } => {
                named.clusters.push(cluster);
                named.clusters.push(&gateway.cluster);
            }
            Check::HomePage { url, status } => {
                named.texts.push(url);
                if let Some(m) = url_problem(url) {
                    return Err(fail(format!("home_page: {m}")));
                }
                if !(100..=599).contains(status) {
                    return Err(fail(format!(
                        "home_page status must be an HTTP status (100 to 599), not {status}"
                    )));
                }
            }
            Check::DnsRecord { address, .. } => named.texts.push(address),
            Check::Split {
                url,
                via_domain,
                expect,
                error_budget,
                identify,
                names,
            } => {
                if let Some(Err(e)) = identify.as_ref().map(Identify::extractor) {
                    return Err(fail(crate::error_chain(e)));
                }
                for c in names.values() {
                    named.clusters.push(c);
                }
                if let Some(b) = error_budget.filter(|b| !(b.is_finite() && (0.0..1.0).contains(b)))
                {
                    return Err(fail(format!(
                        "split error_budget must be a share from 0 to below 1 (0.05 = 5%), not {b}"
                    )));
                }
                if url.is_some() == *via_domain {
                    return Err(fail(
                        "a split check samples either `url` or `via_domain: true`".into(),
                    ));
                }
                if let Some(u) = url {
                    named.texts.push(u);
                    if let Some(m) = url_problem(u) {
                        return Err(fail(format!("split: {m}")));
                    }
                }
                check_percentages(expect).map_err(|m| fail(format!("split: {m}")))?;
                for c in expect.keys() {
                    named.clusters.push(c);
                }
            }
            Check::OutputContains { .. }
            | Check::MeshActive { .. }
            | Check::MeshFeatureEnabled
            | Check::MembershipListed { .. }
            | Check::NothingLeft
            | Check::IstioInstalled { .. } => {}
        }
    }
    Ok(())
}

/// When the continuous load starts after `step`, its URL uses only variables saved by then.
fn check_load_variables(
    s: &Scenario,
    step: &Step,
    defined: &BTreeSet<String>,
) -> Result<(), ScenarioError> {
    if let Some(l) = s
        .continuous_load
        .as_ref()
        .filter(|l| l.start_after == step.id)
    {
        for var in variables_in(&l.url) {
            if !defined.contains(&var) {
                return Err(ScenarioError::Invalid {
                    at: locate_in_file(&s.path, "continuous_load:"),
                    message: format!(
                        "continuous_load: url uses ${{{var}}}, which no step up to {} saves",
                        l.start_after
                    ),
                });
            }
        }
    }
    Ok(())
}

/// `expect`: a scenario expected to fail names the step that fails (one of its own) and evidence
/// that only its failure produces: at least one word that is not merely a check's name, since
/// any failure of that check (a refused connection, a harness bug) would carry the name. A
/// scenario expected to pass names neither.
fn check_expectation(s: &Scenario) -> Result<(), ScenarioError> {
    let e = &s.expect;
    let invalid = |needle: &str, message: String| ScenarioError::Invalid {
        at: locate_in_file(&s.path, needle),
        message,
    };
    match e.outcome {
        ExpectedOutcome::Pass => {
            if e.failed_step.is_some() || !e.evidence_contains.is_empty() {
                return Err(invalid(
                    "expect:",
                    "expect: outcome pass takes neither failed_step nor evidence_contains".into(),
                ));
            }
        }
        ExpectedOutcome::Fail => {
            let Some(want) = &e.failed_step else {
                return Err(invalid(
                    "expect:",
                    "expect: outcome fail needs failed_step, the step that must fail".into(),
                ));
            };
            if !s.steps.iter().any(|st| &st.id == want) {
                return Err(invalid(
                    "failed_step",
                    format!("expect.failed_step names no step: {want}"),
                ));
            }
            let names = Check::names();
            if e.evidence_contains
                .iter()
                .all(|w| names.iter().any(|n| n == w.trim()))
            {
                return Err(invalid(
                    if e.evidence_contains.is_empty() {
                        "expect:"
                    } else {
                        "evidence_contains"
                    },
                    format!(
                        "expect: outcome fail needs evidence_contains with words only this failure produces, not just a check's name (got {:?})",
                        e.evidence_contains
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Like kubectl, an object naming another namespace than the one applied to is refused.
fn check_namespaces(s: &Scenario) -> Result<(), ScenarioError> {
    for step in &s.steps {
        if let Some(Action::Apply {
            namespace: Some(ns),
            manifests,
            ..
        }) = &step.run
        {
            for m in manifests {
                for o in s.manifests.objects(m, &[])?.0 {
                    if let Some(other) = o.namespace.as_ref().filter(|o| *o != ns) {
                        return Err(ScenarioError::Invalid {
                            at: step_at(s, &step.id),
                            message: format!(
                                "step {}: {} {} in {m} names namespace {other:?}, which does not match the namespace {ns:?} it is applied to (kubectl refuses it)",
                                step.id, o.kind, o.name
                            ),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every patch must apply to an object its step applies (`to_patch`: the steps with patches).
fn check_patches(s: &Scenario, to_patch: &[String]) -> Result<(), ScenarioError> {
    for id in to_patch {
        let step = s
            .steps
            .iter()
            .find(|st| st.id == *id)
            .expect("collected from the steps");
        if let Some(Action::Apply {
            manifests, patch, ..
        }) = &step.run
        {
            let mut objects = Vec::new();
            for m in manifests {
                objects.extend(s.manifests.objects(m, &[])?.0);
            }
            if let Err(message) = crate::manifest::patch_objects(&mut objects, patch) {
                return Err(ScenarioError::Invalid {
                    at: step_at(s, id),
                    message: format!("step {id}: {message}"),
                });
            }
        }
    }
    Ok(())
}

/// The longest wait a scenario may ask for, in seconds (a day).
pub const MAX_WAIT_SECONDS: f64 = 86_400.0;
/// The longest TTL `wait_ttl` may assume (a week).
pub const MAX_WAIT_TTL: u32 = 604_800;
/// The largest TTL a record may have (RFC 2181, section 8: 2^31 - 1).
pub const MAX_TTL: u32 = 2_147_483_647;

/// The continuous load's steps exist in order, and its rate is a rate.
fn check_load(s: &Scenario, l: &ContinuousLoad) -> Result<(), ScenarioError> {
    let fail = |message: String| ScenarioError::Invalid {
        at: locate_in_file(&s.path, "continuous_load:"),
        message: format!("continuous_load: {message}"),
    };
    let index = |id: &str, field: &str| {
        s.steps
            .iter()
            .position(|st| st.id == id)
            .ok_or_else(|| fail(format!("{field}: the scenario has no step {id}")))
    };
    if let Some(m) = url_problem(&l.url) {
        return Err(fail(m));
    }
    let start = index(&l.start_after, "start_after")?;
    if let Some(d) = &l.via_domain_after {
        if index(d, "via_domain_after")? < start {
            return Err(fail(format!(
                "via_domain_after: step {d} comes before start_after ({})",
                l.start_after
            )));
        }
    }
    if let Some(stop) = &l.stop_before {
        if index(stop, "stop_before")? <= start {
            return Err(fail(format!(
                "stop_before: step {stop} does not come after start_after ({})",
                l.start_after
            )));
        }
    }
    if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 1000.0) {
        return Err(fail(format!(
            "rate must be above 0 and at most 1000 requests a second, not {}",
            l.rate
        )));
    }
    Ok(())
}

/// Percentages per destination: each finite and non-negative, summing to 100.
fn check_percentages(expect: &BTreeMap<String, f64>) -> Result<(), String> {
    if let Some((k, p)) = expect.iter().find(|(_, p)| !p.is_finite() || **p < 0.0) {
        return Err(format!("{k}: {p} is not a percentage"));
    }
    let total: f64 = expect.values().sum();
    if (total - 100.0).abs() > 1e-9 {
        return Err(format!("percentages must sum to 100, not {total}"));
    }
    Ok(())
}

/// The `${NAME}` variables a text uses.
pub fn variables_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Replaces `${NAME}` by the variable's value.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}
