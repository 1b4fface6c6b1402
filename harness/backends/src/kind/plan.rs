//! The kind plan: what a run will do, step by step, as `--plan` and dry runs print it.

use std::path::PathBuf;

use super::commands::{
    cloud_provider_container, cloud_provider_request, lb_containers_cmd, Commands,
};
use super::{
    KindConfig, CLOUD_PROVIDER_CHECK_EVERY, CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG,
    DOCKER_SOCKET, MANAGED_REVISION, RUN_LABEL,
};
use crate::exec::Cmd;
use meshmig_core::scenario::{Action, Scenario};

/// What a step does on kind, as lines.
pub fn plan_action(c: &Commands<'_>, s: &Scenario, a: &Action) -> Vec<String> {
    let cmd = |c: Cmd| format!("$ {}", c.line());
    match a {
        Action::CreateCluster { cluster } => {
            let mut v: Vec<String> = Vec::new();
            if s.clusters.first().is_some_and(|f| &f.name == cluster) {
                v.push(format!("(starts creating all {} clusters concurrently)", s.clusters.len()));
                v.extend(s.clusters.iter().map(|k| cmd(c.create(&k.name))));
            } else {
                v.push(format!("(waits for the creation of {cluster} started by the first create step)"));
            }
            v
        }
        Action::RenameContext { cluster } => vec![cmd(c.rename_context(cluster)), cmd(c.get_contexts())],
        Action::InstallIstio { cluster, profile } => vec![
            cmd(c.istio_install(cluster, profile)),
            format!("api: wait until Deployments in istio-system are Available and istio-ingressgateway has an ingress IP ({cluster})"),
        ],
        Action::FleetEnableMesh => vec!["stand-in: fleet mesh feature enabled".into()],
        Action::FleetRegister { cluster, membership } => vec![format!("stand-in: membership {membership} → {cluster}")],
        Action::FleetMeshUpdate { membership } => vec![format!(
            "stand-in: in the background, {} (cluster of {membership}; without the default tag where istio-system runs istiod already)",
            cmd(c.managed_install("CLUSTER", true))
        )],
        Action::WaitMeshActive { membership, .. } => vec![format!(
            "stand-in describe, repeated with backoff: {membership} ACTIVE once Deployment istio-system/istiod-{MANAGED_REVISION} is Available"
        )],
        Action::CreateNamespace { cluster, name } => vec![format!("api: create Namespace {name} ({cluster})")],
        Action::LabelNamespace { cluster, name, labels, remove } => vec![crate::clusters::label_plan_line(name, labels, remove, &format!("({cluster})"))],
        Action::RestartWorkloads { cluster, namespace } => vec![crate::clusters::restart_plan_line(namespace, &format!("({cluster})"))],
        Action::Apply { cluster, namespace, manifests, .. } => {
            let mut v: Vec<String> = manifests
                .iter()
                .map(|m| format!("api: server-side apply {m} (discovery per group/version) ({cluster}, namespace {})", namespace.as_deref().unwrap_or("default")))
                .collect();
            v.push(format!("api: wait until applied Deployments are Available and LoadBalancers have an ingress IP ({cluster})"));
            v.push("with --metadata-image: $ docker save -o RUN/metadata-image.tar IMAGE; $ kind load image-archive RUN/metadata-image.tar --name CLUSTER; api: apply Namespace meshmig-metadata with the gce-metadata Deployment and Service; apply GCE_METADATA_HOST on the frontend as field manager meshmig-metadata".into());
            v
        }
        Action::Delete { cluster, namespace, kind, name } => vec![format!("api: delete {kind} {namespace}/{name} and wait until it is gone ({cluster})")],
        Action::ReadIngressIp { cluster, namespace, save_as } => vec![format!("api: list Services in {namespace}, .items[0] ingress IP → {save_as} ({cluster})")],
        Action::DnsSetRecord { address, ttl } => vec![format!("embedded DNS: {}. {ttl} IN A {address}", s.dns.domain)],
        Action::WaitDnsTtl | Action::WaitTtl { .. } => vec![meshmig_core::plan::action_line(s, a)],
        Action::DeleteCluster { name } => vec![cmd(c.get_clusters()), format!("{} (when listed; else NotFound as gcloud answers)", cmd(c.delete(name)))],
        Action::FleetUnregister { membership } => vec![format!("stand-in: membership {membership} removed")],
        Action::FleetDisableMesh => vec!["stand-in: fleet mesh feature disabled".into()],
    }
}

/// The whole plan for kind.
pub fn plan(cfg: &KindConfig, s: &Scenario) -> String {
    let kc = PathBuf::from("RUN/kubeconfig");
    let c = Commands::new(cfg, &kc);
    let mut out = format!(
        "plan: scenario {} on backend kind (run {}, kubeconfig of its own)\n",
        s.name, cfg.run_id
    );
    out.push_str(&format!(
        "node image: {}\n",
        cfg.node_image
            .as_deref()
            .unwrap_or("the kind release's default (set MESHMIG_KIND_NODE_IMAGE to pin one)")
    ));
    match &cfg.kit {
        None => {
            let req = cloud_provider_request(&cfg.run_id);
            out.push_str(&format!(
                "before: cloud-provider-kind in a container (testcontainers), kept running for the run: LoadBalancer addresses\n    container {} from {}:{}, network {}, mount {DOCKER_SOCKET}:{DOCKER_SOCKET}, label {RUN_LABEL}={}; log → RUN/cloud-provider-kind.log; checked alive before the run and before each step, and every {}s while a step works in the clusters\n",
                cloud_provider_container(&cfg.run_id),
                CLOUD_PROVIDER_KIND_IMAGE,
                CLOUD_PROVIDER_KIND_TAG,
                req.network().as_deref().unwrap_or("default"),
                cfg.run_id,
                CLOUD_PROVIDER_CHECK_EVERY.as_secs(),
            ));
        }
        Some(kit) => {
            out.push_str(&format!(
                "kit: kind {} with KIND_EXPERIMENTAL_PROVIDER={}, configurations {}\n",
                kit.kind,
                kit.provider,
                cfg.config_dir.display()
            ));
            out.push_str("after each cluster is created (the kit):\n");
            for a in &kit.archives {
                out.push_str(&format!("    $ {}\n", c.load_archive(a, "NAME").line()));
            }
            for a in &kit.aliases {
                out.push_str(&format!(
                    "    $ {}   (each node of kind get nodes)\n",
                    c.alias("NODE", a).line()
                ));
            }
            out.push_str(&format!(
                "    LoadBalancer addresses: meshmig's node load balancer in place of cloud-provider-kind (needs Docker): the top {} addresses of `{}`, each put on the control-plane node ({}) and written to the Service's status; kube-proxy forwards them\n",
                super::node_lb::POOL_SIZE,
                super::node_lb::network_cmd(cfg.engine()).line(),
                super::node_lb::address_cmd(cfg.engine(), "NAME-control-plane", true, std::net::Ipv4Addr::new(10, 89, 0, 254)).line(),
            ));
        }
    }
    for step in &s.steps {
        out.push_str(&format!("{} {}\n", step.id, step.title));
        if let Some(a) = &step.run {
            for l in plan_action(&c, s, a) {
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
    out.push_str(&format!(
        "teardown (always):\n    $ {}\n    $ {}   (each cluster of the run listed)\n    $ {}   (must no longer list them)\n",
        c.get_clusters().line(),
        c.delete("NAME").line(),
        c.get_clusters().line(),
    ));
    match &cfg.kit {
        None => out.push_str(&format!(
            "    remove the cloud-provider-kind container {}\n    $ {}   (each cluster of the run: load balancer containers left)\n    $ docker rm -f ID…   (when any)\n",
            cloud_provider_container(&cfg.run_id),
            lb_containers_cmd(&format!("NAME-{}", cfg.run_id)).line(),
        )),
        // A kit's run has no cloud-provider-kind: its addresses were on the nodes, gone with
        // them; its registry and load balancers are processes of the run.
        Some(_) => out.push_str(
            "    stop the run's registry and its node load balancer (processes of the run; their addresses went with the nodes)\n",
        ),
    }
    out
}
