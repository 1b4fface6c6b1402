//! `meshmig plan`: every step's action and checks, in order, with nothing executed.

use crate::scenario::{Action, Check, Scenario};

/// `kubectl label namespace`: the labels set, then those removed (`KEY-`), with `--overwrite`
/// when any is removed, as Google's migration guide writes it (`kubectl label namespace NS
/// istio-injection- istio.io/rev=asm-managed --overwrite`).
pub fn label_namespace_line(
    cluster: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    remove: &[String],
) -> String {
    let mut words: Vec<String> = labels.iter().map(|(k, v)| format!("'{k}={v}'")).collect();
    words.extend(remove.iter().map(|k| format!("{k}-")));
    if !remove.is_empty() {
        words.push("--overwrite".into());
    }
    format!(
        "kubectl --context {cluster} label namespace {name} {}",
        words.join(" ")
    )
}

/// The procedure's command for an action, as the published procedure writes it.
pub fn action_line(s: &Scenario, a: &Action) -> String {
    match a {
        Action::CreateCluster { cluster } => {
            let c = s.cluster(cluster).expect("validated: the cluster is declared");
            let mut l = format!("gcloud container clusters create {} --project=PROJECT_ID --zone={}", c.name, c.zone);
            if let Some(m) = &c.machine_type {
                l.push_str(&format!(" --machine-type={m}"));
            }
            if let Some(n) = c.nodes {
                l.push_str(&format!(" --num-nodes={n}"));
            }
            if c.workload_pool {
                l.push_str(" --workload-pool PROJECT_ID.svc.id.goog");
            }
            l
        }
        Action::RenameContext { cluster } => {
            let zone = s.cluster(cluster).map(|c| c.zone.clone()).unwrap_or_default();
            format!("kubectl config rename-context gke_PROJECT_ID_{zone}_{cluster} {cluster}")
        }
        Action::InstallIstio { cluster, profile } => format!("istioctl install --context {cluster} --set profile={profile} -y"),
        Action::FleetEnableMesh => "gcloud container fleet mesh enable --project PROJECT_ID".into(),
        Action::FleetRegister { cluster, membership } => {
            let zone = s.cluster(cluster).map(|c| c.zone.clone()).unwrap_or_default();
            format!("gcloud container fleet memberships register {membership} --gke-cluster={zone}/{cluster} --enable-workload-identity --project PROJECT_ID")
        }
        Action::FleetMeshUpdate { membership } => {
            format!("gcloud container fleet mesh update --management automatic --memberships {membership} --project PROJECT_ID")
        }
        Action::WaitMeshActive { membership, timeout_seconds, poll_seconds, stable_seconds } => format!(
            "gcloud container fleet mesh describe --project PROJECT_ID  (every {poll_seconds}s, up to {timeout_seconds}s, until {membership} is ACTIVE{})",
            if *stable_seconds > 0.0 { format!(" and stays ACTIVE for {stable_seconds}s") } else { String::new() }
        ),
        Action::CreateNamespace { cluster, name } => format!("kubectl --context {cluster} create namespace {name}"),
        Action::LabelNamespace { cluster, name, labels, remove } => label_namespace_line(cluster, name, labels, remove),
        Action::RestartWorkloads { cluster, namespace } => {
            format!("kubectl --context={cluster} --namespace={namespace} rollout restart deployment  (then each rollout waited until complete)")
        }
        Action::Apply { cluster, namespace, manifests, replace, patch, objects } => {
            let mut l = String::new();
            for r in replace {
                l.push_str(&format!("sed -i 's/{}/{}/' ...; ", r.from, r.to));
            }
            for p in patch {
                l.push_str(&format!(
                    "(edit {} {}: {}) ",
                    p.kind,
                    p.name,
                    serde_json::to_string(&p.ops).unwrap_or_default()
                ));
            }
            let mut files: Vec<String> = manifests.clone();
            files.extend(objects.iter().map(|o| {
                format!("<{} {}>", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or(""))
            }));
            l.push_str(&format!(
                "kubectl --context={cluster}{} apply -f {}",
                namespace.as_ref().map(|n| format!(" --namespace={n}")).unwrap_or_default(),
                files.join(" -f ")
            ));
            l
        }
        Action::Delete { cluster, namespace, kind, name } => {
            format!("kubectl --context={cluster} --namespace={namespace} delete {} {name}", kind.to_lowercase())
        }
        Action::ReadIngressIp { cluster, namespace, save_as } => format!(
            "{save_as}=$(kubectl --namespace {namespace} --context={cluster} get service --output jsonpath='{{.items[0].status.loadBalancer.ingress[0].ip}}')"
        ),
        Action::DnsSetRecord { address, ttl } => format!("DNS: {}. {ttl} IN A {address}", s.dns.domain),
        Action::WaitDnsTtl => format!(
            "wait until the clients' resolver drops the answer it holds (its TTL × dns.ttl_scale {})",
            s.dns.ttl_scale
        ),
        Action::WaitTtl { seconds } => format!("sleep {seconds}  (× dns.ttl_scale {})", s.dns.ttl_scale),
        Action::DeleteCluster { name } => format!("gcloud container clusters delete {name} --zone=us-central1-a --project=PROJECT_ID"),
        Action::FleetUnregister { membership } => format!("gcloud container fleet memberships unregister {membership} --project PROJECT_ID"),
        Action::FleetDisableMesh => "gcloud container fleet mesh disable --project PROJECT_ID".into(),
    }
}

/// A check in one line.
pub fn check_line(c: &Check) -> String {
    let v = serde_json::to_value(c).unwrap_or_default();
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The whole plan as text.
pub fn render(s: &Scenario, backend: &str) -> String {
    let mut out = format!(
        "plan: scenario {} on backend {backend} ({} steps)\n",
        s.name,
        s.steps.len()
    );
    for step in &s.steps {
        out.push_str(&format!(
            "{} {}{}\n",
            step.id,
            step.title,
            step.group
                .as_ref()
                .map(|g| format!(" [concurrent group {g}]"))
                .unwrap_or_default()
        ));
        for f in &step.inject {
            out.push_str(&format!("    fault: {}\n", f.describe()));
        }
        if let Some(a) = &step.run {
            out.push_str(&format!("    $ {}\n", action_line(s, a)));
        }
        for c in &step.check {
            out.push_str(&format!("    check {}\n", check_line(c)));
        }
    }
    out
}
