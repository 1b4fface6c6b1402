//! The GKE plan: what a run will do, step by step, as `--plan` and dry runs print it, and every
//! gcloud command the backend can issue for a scenario.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::commands::{region_of, Commands};
use super::{GkeConfig, LOAD_BALANCER_KINDS};
use crate::clusters::{label_plan_line, restart_plan_line};
use crate::exec::Cmd;
use crate::FleetOp;
use meshmig_core::scenario::{Action, Scenario};

/// The commands a step's action runs on GKE (Kubernetes API calls are not commands). The first
/// create step starts every cluster's creation; with a Cloud DNS zone the A record is created
/// the first time and updated after, so both commands are listed.
pub fn action_commands(
    c: &Commands<'_>,
    s: &Scenario,
    a: &Action,
    dns_zone: Option<&str>,
) -> Vec<Cmd> {
    match a {
        Action::CreateCluster { cluster } => {
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                s.clusters.iter().map(|k| c.create_cluster(k)).collect()
            } else {
                Vec::new()
            }
        }
        Action::RenameContext { cluster } => vec![c.rename_context(cluster), c.get_contexts()],
        Action::InstallIstio { cluster, profile } => vec![c.istioctl_install(cluster, profile)],
        Action::FleetEnableMesh => vec![c.fleet(&FleetOp::EnableMesh, None)],
        Action::FleetRegister {
            cluster,
            membership,
        } => vec![c.fleet(
            &FleetOp::Register {
                cluster: cluster.clone(),
                membership: membership.clone(),
            },
            None,
        )],
        Action::FleetMeshUpdate { membership } => vec![c.fleet(
            &FleetOp::MeshUpdate {
                membership: membership.clone(),
            },
            None,
        )],
        Action::WaitMeshActive { .. } => vec![c.mesh_describe()],
        Action::DnsSetRecord { address, ttl } => match dns_zone {
            Some(z) => {
                // The address is known only during the run (`${CSM_INGRESS_IP}`): a documentation
                // address (RFC 5737) stands for it.
                let ip = address.parse().unwrap_or(IpAddr::from([192, 0, 2, 1]));
                vec![
                    c.dns_record(z, &s.dns.domain, ip, *ttl, true),
                    c.dns_record(z, &s.dns.domain, ip, *ttl, false),
                ]
            }
            None => Vec::new(),
        },
        Action::DeleteCluster { name } => vec![c.delete_cluster(name)],
        Action::FleetUnregister { membership } => vec![c.fleet(
            &FleetOp::Unregister {
                membership: membership.clone(),
            },
            None,
        )],
        Action::FleetDisableMesh => vec![c.fleet(&FleetOp::DisableMesh, None)],
        Action::CreateNamespace { .. }
        | Action::LabelNamespace { .. }
        | Action::RestartWorkloads { .. }
        | Action::Apply { .. }
        | Action::Delete { .. }
        | Action::ReadIngressIp { .. }
        | Action::WaitDnsTtl
        | Action::WaitTtl { .. } => Vec::new(),
    }
}

/// Every gcloud command the GKE backend can issue for a scenario, each once, in the order they
/// first come: the start (credentials, the mesh feature's state), each step's action, inventory,
/// teardown and leak check, `meshmig gc` and `meshmig doctor --backend gke`. Built from the same
/// [`Commands`] methods those places call; placeholders stand for what only a run knows (an
/// operation's name, a listed membership, an ingress IP). `tests/gcloud_parser.rs` runs each
/// through the real gcloud's argument parser.
pub fn gcloud_commands(cfg: &GkeConfig, s: &Scenario) -> Vec<Cmd> {
    let c = Commands::new(cfg, &s.clusters);
    let first = s
        .clusters
        .first()
        .map(|k| k.name.clone())
        .unwrap_or_default();
    // Gke::start and Gke::with_exec.
    let mut all = vec![Commands::print_access_token(), c.mesh_describe()];
    for step in &s.steps {
        if let Some(a) = &step.run {
            all.extend(action_commands(&c, s, a, cfg.dns_zone.as_deref()));
        }
    }
    // A2 and C2 when a creation's kubeconfig entry was lost.
    all.extend(s.clusters.iter().map(|k| c.get_credentials(&k.name)));
    // Inventory, teardown and the leak check.
    all.extend([
        c.list_clusters(false),
        c.list_memberships(),
        c.list_operations(),
        c.wait_operation("operation-1234", &c.zone(&first)),
        c.fleet(
            &FleetOp::Unregister {
                membership: "MEMBERSHIP".into(),
            },
            Some("global"),
        ),
    ]);
    all.extend(s.clusters.iter().map(|k| c.delete_cluster(&k.name)));
    all.push(c.fleet(&FleetOp::DisableMesh, None));
    if let Some(z) = &cfg.dns_zone {
        all.push(c.delete_dns_record(z, &s.dns.domain));
    }
    all.extend(LOAD_BALANCER_KINDS.iter().map(|k| c.list_compute(k)));
    // `meshmig gc`: clusters of every run, deleted as listed, then their memberships.
    let gc = Commands::new(cfg, &[]);
    all.extend([
        gc.list_clusters(true),
        gc.delete_cluster_in(&c.cluster(&first), &c.zone(&first)),
        gc.list_memberships(),
        gc.delete_membership(&c.membership("MEMBERSHIP"), &region_of(&c.zone(&first))),
    ]);
    // `meshmig doctor --backend gke`.
    all.extend([Commands::version(), c.enabled_services()]);
    let mut seen = BTreeSet::new();
    all.into_iter()
        .filter(|cmd| cmd.program == "gcloud" && seen.insert(cmd.args.clone()))
        .collect()
}

/// What a step does on GKE, as lines: commands (`$ …`) and Kubernetes API calls (`api: …`).
pub fn plan_action(
    c: &Commands<'_>,
    s: &Scenario,
    a: &Action,
    dns_zone: Option<&str>,
) -> Vec<String> {
    let cmd = |c: Cmd| format!("$ {}", c.line());
    match a {
        Action::CreateCluster { cluster } => {
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                let mut v = vec![format!("(starts creating all {} clusters concurrently)", s.clusters.len())];
                v.extend(action_commands(c, s, a, dns_zone).into_iter().map(cmd));
                v
            } else {
                vec![format!("(waits for the creation of {cluster} started by the first create step)")]
            }
        }
        Action::RenameContext { cluster } => vec![
            "(once every creation has ended: each writes the kubeconfig when it ends)".into(),
            cmd(c.rename_context(cluster)),
            cmd(c.get_contexts()),
        ],
        Action::InstallIstio { cluster, profile } => vec![
            cmd(c.istioctl_install(cluster, profile)),
            format!("api: wait until Deployments in istio-system are Available and Service istio-ingressgateway has an ingress IP ({cluster})"),
        ],
        Action::FleetEnableMesh
        | Action::FleetRegister { .. }
        | Action::FleetMeshUpdate { .. }
        | Action::DeleteCluster { .. }
        | Action::FleetUnregister { .. }
        | Action::FleetDisableMesh => action_commands(c, s, a, dns_zone).into_iter().map(cmd).collect(),
        Action::WaitMeshActive { membership, .. } => vec![format!(
            "{} (repeated with backoff until {} is ACTIVE, at most {:?})",
            cmd(c.mesh_describe()),
            c.membership(membership),
            c.cfg.mesh_timeout
        )],
        Action::CreateNamespace { cluster, name } => vec![format!("api: create Namespace {name} ({cluster})")],
        Action::LabelNamespace { cluster, name, labels, remove } => vec![label_plan_line(name, labels, remove, &format!("({cluster})"))],
        Action::RestartWorkloads { cluster, namespace } => vec![restart_plan_line(namespace, &format!("({cluster})"))],
        Action::Apply { cluster, namespace, manifests, replace, patch, objects } => {
            let pairs: Vec<(String, String)> = replace.iter().map(|r| (r.from.clone(), r.to.clone())).collect();
            let mut out = Vec::new();
            for m in manifests {
                let mut objs = s.manifests.objects(m, &pairs).map(|(o, _)| o).unwrap_or_default();
                let _ = meshmig_core::manifest::patch_objects(&mut objs, patch);
                for o in objs {
                    out.push(format!(
                        "api: server-side apply {} {}/{} (field manager meshmig, from {m}) ({cluster})",
                        o.kind,
                        o.namespace.clone().or(namespace.clone()).unwrap_or_else(|| "default".into()),
                        o.name
                    ));
                }
            }
            for o in objects {
                out.push(format!(
                    "api: server-side apply {} {} (field manager meshmig, written in the scenario) ({cluster})",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ));
            }
            out.push(format!("api: wait until applied Deployments are Available and LoadBalancer Services have an ingress IP ({cluster})"));
            out
        }
        Action::Delete { cluster, namespace, kind, name } => vec![format!("api: delete {kind} {namespace}/{name} and wait until it is gone ({cluster})")],
        Action::ReadIngressIp { cluster, namespace, save_as } => vec![format!(
            "api: list Services in {namespace}, read .items[0].status.loadBalancer.ingress[0].ip into {save_as} ({cluster})"
        )],
        Action::DnsSetRecord { address, ttl } => match dns_zone {
            Some(z) => vec![format!(
                "$ gcloud dns record-sets create|update {}. --zone={z} --type=A --ttl={ttl} --rrdatas={address} --project={}",
                s.dns.domain, c.cfg.project
            )],
            None => vec![format!("embedded DNS: {}. {ttl} IN A {address}", s.dns.domain)],
        },
        Action::WaitDnsTtl | Action::WaitTtl { .. } => vec![meshmig_core::plan::action_line(s, a)],
    }
}

/// The whole plan for GKE, with the teardown and leak checks that follow every run.
pub fn plan(cfg: &GkeConfig, s: &Scenario) -> String {
    let c = Commands::new(cfg, &s.clusters);
    let mut out = format!(
        "plan: scenario {} on backend gke (project {}, run {}, kubeconfig of its own)\n",
        s.name, cfg.project, cfg.run_id
    );
    out.push_str(&format!("before: $ {}\n", c.list_memberships().line()));
    for step in &s.steps {
        out.push_str(&format!("{} {}\n", step.id, step.title));
        if let Some(a) = &step.run {
            for l in plan_action(&c, s, a, cfg.dns_zone.as_deref()) {
                out.push_str(&format!("    {l}\n"));
            }
        }
        for ch in &step.check {
            out.push_str(&format!(
                "    check {}\n",
                meshmig_core::plan::check_line(ch)
            ));
        }
    }
    let first = s
        .clusters
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    out.push_str(
        "teardown (always; each kind of resource on its own, a failure does not stop the rest):\n",
    );
    out.push_str(&format!(
        "    $ {}   (operations still running, e.g. a creation interrupted by Ctrl-C)\n    $ {}   (each of them)\n",
        c.list_operations().line(),
        c.wait_operation("OPERATION", "ZONE").line()
    ));
    out.push_str(&format!(
        "    $ {}\n    $ {}   (each membership of the run, where it is listed)\n",
        c.list_memberships().line(),
        c.delete_membership(&c.membership("MEMBERSHIP"), &region_of(&c.zone(&first)))
            .line()
    ));
    out.push_str(&format!("    $ {}\n", c.list_clusters(false).line()));
    out.push_str("    api: delete every LoadBalancer Service of the cluster and wait until it is gone (its forwarding rule, target pool and firewall rule go with it)\n");
    out.push_str("    $ gcloud container clusters delete NAME --zone=ZONE --project=PROJECT --quiet   (each cluster listed)\n");
    out.push_str(
        "    mesh feature: disabled only if this run enabled it and no other membership remains\n",
    );
    if let Some(z) = &cfg.dns_zone {
        out.push_str(&format!(
            "    $ {}   (if the run created it)\n",
            c.delete_dns_record(z, &s.dns.domain).line()
        ));
    }
    out.push_str(&format!(
        "    leak check (a listing that fails is reported NOT VERIFIED): $ {}; $ {}",
        c.list_clusters(false).line(),
        c.list_memberships().line()
    ));
    for what in LOAD_BALANCER_KINDS {
        out.push_str(&format!("; $ {}", c.list_compute(what).line()));
    }
    out.push_str("   (resources named after the run's LoadBalancer Services: a<uid>, k8s-fw-a<uid>; forwarding rules also by address)\n");
    out
}
