//! GKE teardown and garbage collection: what a run made is deleted kind by kind, listed again
//! and what is left reported as a LEAK; `meshmig gc` removes what crashed runs left.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::backend::Gke;
use super::commands::{membership_parts, Commands};
use super::{GkeConfig, LOAD_BALANCER_KINDS, RUN_LABEL};
use crate::exec::Exec;
use crate::run_id::chrono_like;
use crate::{Backend, BackendError, FleetOp, Kubernetes, TeardownReport};

/// The name Kubernetes' service controller gives the cloud load balancer of a Service
/// (`DefaultLoadBalancerName` in k8s.io/cloud-provider's cloud.go: `a` + the Service's UID
/// without dashes, at most 32 characters). GKE names the forwarding rule and target pool so,
/// and the firewall rule `k8s-fw-` + it.
pub fn load_balancer_name(uid: &str) -> String {
    let mut n = format!("a{}", uid.replace('-', ""));
    n.truncate(32);
    n
}

/// The resources of a Compute Engine listing (`what`: `forwarding-rules`, `firewall-rules`, ...)
/// made for the run's LoadBalancer Services: named after one of `lb_names` (GKE's `a<uid>`,
/// `k8s-fw-a<uid>`), or, for forwarding rules, holding one of the addresses the run saw.
pub fn left_for_run(
    what: &str,
    items: &[Value],
    lb_names: &[String],
    ips: &BTreeSet<String>,
) -> Vec<String> {
    items
        .iter()
        .filter(|r| {
            let n = r["name"].as_str().unwrap_or("");
            lb_names.iter().any(|lb| n.contains(lb.as_str()))
                || r["IPAddress"].as_str().is_some_and(|ip| ips.contains(ip))
        })
        .map(|r| {
            format!(
                "{} {}",
                what.trim_end_matches('s'),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The warning of a Compute Engine listing that left some requests out, if it has one.
///
/// `gcloud compute KIND list` of an aggregated kind (forwarding rules, target pools, backend
/// services, health checks) asks every scope, and by default a request that fails there is only
/// a warning: gcloud 528 prints `WARNING: Some requests did not succeed.` and ` - MESSAGE` lines
/// to stderr, whatever it did list (possibly `[]`) to stdout, and exits 0
/// (`googlecloudsdk/api_lib/compute/lister.py` calls `utils.WarnIfPartialRequestFail` when the
/// hidden property `compute/allow_partial_error`, default true in `core/properties.py`, allows
/// it; seen here with the real gcloud 528 against an endpoint answering HTTP 400). Such a listing
/// cannot show that nothing is left.
pub fn partial_listing(stderr: &str) -> Option<String> {
    let start = stderr.find("Some requests did not succeed")?;
    let warning: Vec<&str> = stderr[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    Some(meshmig_core::redact::scrubbed(warning.join(" ")))
}

impl Gke {
    /// The run's teardown (see [`Backend::teardown`] on [`Gke`]): with `keep`, only what is
    /// kept; else each kind of resource on its own, in order, then the leak check.
    pub(super) async fn tear_down(&self, keep: bool) -> TeardownReport {
        if keep {
            return self.keep_all().await;
        }
        let mut report = TeardownReport::default();
        self.wait_for_operations(&mut report).await;
        self.delete_memberships(&mut report).await;
        self.delete_clusters(&mut report).await;
        self.disable_mesh_feature(&mut report).await;
        self.delete_cloud_dns_record(&mut report).await;
        if let Some(d) = &self.dns {
            d.stop().await;
        }
        self.report_leaks(&mut report).await;
        if let Some(c) = &self.companion {
            report.removed.extend(c.stop().await);
        }
        let _ = self.scratch.remove();
        report
    }

    /// `--keep`: lists what stays (clusters, memberships, the kubeconfig) and keeps the scratch
    /// folder.
    async fn keep_all(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        match self.clusters().await {
            Ok(cs) => report.kept.extend(
                cs.keys()
                    .map(|c| format!("cluster {}", self.cmds().cluster(c))),
            ),
            Err(e) => report.failed.push(format!("listing clusters: {e}")),
        }
        match self.run_memberships().await {
            Ok(ms) => report.kept.extend(
                ms.iter()
                    .map(|(_, real, l)| format!("membership {real} ({l})")),
            ),
            Err(e) => report
                .failed
                .push(format!("listing fleet memberships: {e}")),
        }
        report
            .kept
            .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
        self.scratch.keep();
        report
    }

    /// Waits for the run's cluster operations still running (a creation interrupted by Ctrl-C
    /// goes on in Google Cloud).
    async fn wait_for_operations(&self, report: &mut TeardownReport) {
        match self.ops.run_json(self.cmds().list_operations()).await {
            Ok(ops) => {
                for op in ops {
                    let (Some(name), Some(zone)) = (
                        op["name"].as_str(),
                        op["zone"].as_str().or(op["location"].as_str()),
                    ) else {
                        continue;
                    };
                    let what = format!(
                        "operation {name} ({} of {})",
                        op["operationType"].as_str().unwrap_or("?"),
                        op["targetLink"]
                            .as_str()
                            .unwrap_or("?")
                            .rsplit('/')
                            .next()
                            .unwrap_or("?")
                    );
                    match self.run(self.cmds().wait_operation(name, zone)).await {
                        Ok(_) => report.removed.push(format!("waited for {what}")),
                        Err(e) => report.failed.push(format!("waiting for {what}: {e}")),
                    }
                }
            }
            Err(e) => report
                .failed
                .push(format!("listing running cluster operations: {e}")),
        }
    }

    /// Deletes the run's fleet memberships where they are listed.
    async fn delete_memberships(&self, report: &mut TeardownReport) {
        match self.run_memberships().await {
            Ok(ms) => {
                for (_, real, location) in ms {
                    match self
                        .run(self.cmds().delete_membership(&real, &location))
                        .await
                    {
                        Ok(_) => report
                            .removed
                            .push(format!("fleet membership {real} ({location})")),
                        Err(e) => report
                            .failed
                            .push(format!("fleet membership {real} ({location}): {e}")),
                    }
                }
            }
            Err(e) => report
                .failed
                .push(format!("listing fleet memberships: {e}")),
        }
    }

    /// Deletes each of the run's clusters, its LoadBalancer Services first.
    async fn delete_clusters(&self, report: &mut TeardownReport) {
        match self.clusters().await {
            Ok(cs) => {
                for c in cs.keys() {
                    self.delete_load_balancers(c, report).await;
                    match self.delete_cluster(c).await {
                        Ok(_) => report
                            .removed
                            .push(format!("cluster {}", self.cmds().cluster(c))),
                        Err(e) => report
                            .failed
                            .push(format!("cluster {}: {e}", self.cmds().cluster(c))),
                    }
                }
            }
            Err(e) => report.failed.push(format!("listing clusters: {e}")),
        }
    }

    /// Disables the fleet's mesh feature, only if this run enabled it and no other membership
    /// uses it.
    async fn disable_mesh_feature(&self, report: &mut TeardownReport) {
        if *self.mesh_enabled_by_run.lock().await {
            match self.ops.run_json(self.cmds().list_memberships()).await {
                Ok(others) if others.is_empty() => match self.fleet(&FleetOp::DisableMesh).await {
                    Ok(_) => report
                        .removed
                        .push("fleet mesh feature (enabled by this run)".into()),
                    Err(e) => report.failed.push(format!("fleet mesh feature: {e}")),
                },
                Ok(_) => report
                    .kept
                    .push("fleet mesh feature (other memberships use it)".into()),
                Err(e) => report.failed.push(format!(
                    "fleet mesh feature left enabled: listing memberships failed: {e}"
                )),
            }
        }
    }

    /// Deletes the domain's A record from the Cloud DNS zone, if the run created it.
    async fn delete_cloud_dns_record(&self, report: &mut TeardownReport) {
        if let Some(zone) = &self.cfg.dns_zone {
            if *self.cloud_dns_created.lock().await {
                match self
                    .run(self.cmds().delete_dns_record(zone, &self.domain))
                    .await
                {
                    Ok(_) => report.removed.push(format!(
                        "Cloud DNS A record {}. in zone {zone}",
                        self.domain
                    )),
                    Err(e) => report.failed.push(format!(
                        "Cloud DNS A record {}. in zone {zone}: {e}",
                        self.domain
                    )),
                }
            }
        }
    }

    /// Deletes a cluster's LoadBalancer Services and waits until they are gone: GKE's service
    /// controller then deletes their forwarding rules, target pools and firewall rules, which
    /// deleting the cluster alone can leave behind.
    async fn delete_load_balancers(&self, cluster: &str, report: &mut TeardownReport) {
        // The run reaches a cluster only through its renamed context (A2, C2): without it (a run
        // interrupted while the clusters were being created) the run made no Service there.
        if let Ok(contexts) = self.contexts().await {
            if !contexts.iter().any(|c| c == cluster) {
                return;
            }
        }
        let svcs = match self.ops.list(cluster, None, "Service").await {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!(
                    "listing the Services of {cluster} (their load balancers may stay): {e}"
                ));
                return;
            }
        };
        for svc in svcs.iter().filter(|s| s["spec"]["type"] == "LoadBalancer") {
            let (ns, name) = meshmig_core::manifest::namespace_and_name(svc);
            match self.ops.delete(cluster, &ns, "Service", &name).await {
                Ok(_) => report
                    .removed
                    .push(format!("LoadBalancer Service {ns}/{name} of {cluster}")),
                Err(e) => report.failed.push(format!(
                    "LoadBalancer Service {ns}/{name} of {cluster}: {e}"
                )),
            }
        }
    }

    /// Lists every kind again after teardown: what is left is a LEAK; a listing that fails says
    /// the kind could not be verified.
    async fn report_leaks(&self, report: &mut TeardownReport) {
        match self.clusters().await {
            Ok(cs) => report.failed.extend(
                cs.iter()
                    .map(|(c, st)| format!("LEAK: cluster {} ({st})", self.cmds().cluster(c))),
            ),
            Err(e) => report
                .failed
                .push(format!("NOT VERIFIED: clusters (listing failed: {e})")),
        }
        match self.run_memberships().await {
            Ok(ms) => report.failed.extend(
                ms.iter()
                    .map(|(_, real, l)| format!("LEAK: fleet membership {real} ({l})")),
            ),
            Err(e) => report.failed.push(format!(
                "NOT VERIFIED: fleet memberships (listing failed: {e})"
            )),
        }
        for l in self.load_balancer_leaks().await {
            match l {
                Ok(left) => report
                    .failed
                    .extend(left.into_iter().map(|r| format!("LEAK: {r}"))),
                Err(m) => report.failed.push(format!("NOT VERIFIED: {m}")),
            }
        }
    }

    /// Cloud load-balancing resources made for the run's Services (by the names GKE gives them,
    /// and forwarding rules by the addresses seen), per listing; a listing that fails is
    /// reported as such, never as "none".
    pub(super) async fn load_balancer_leaks(&self) -> Vec<Result<Vec<String>, String>> {
        let names: Vec<String> = self
            .ops
            .lb_uids
            .lock()
            .await
            .iter()
            .map(|u| load_balancer_name(u))
            .collect();
        let ips = self.ops.lb_ips.lock().await.clone();
        let mut out = Vec::new();
        for what in LOAD_BALANCER_KINDS {
            out.push(match self.compute_listing(what).await {
                Ok(items) => Ok(left_for_run(what, &items, &names, &ips)),
                Err(e) => Err(format!("listing {what}: {e}")),
            });
        }
        out
    }

    /// A Compute Engine listing; one that gcloud says is partial ([`partial_listing`]) is an
    /// error, never a short list.
    async fn compute_listing(&self, what: &str) -> Result<Vec<Value>, BackendError> {
        let cmd = self.cmds().list_compute(what);
        let ran = self.ops.exec.run(&cmd).await.map_err(|e| {
            BackendError::infra(
                format!("running {}", cmd.program),
                meshmig_core::error_chain(&e),
            )
        })?;
        if ran.ok() {
            if let Some(warning) = partial_listing(&ran.stderr) {
                return Err(BackendError::Infrastructure {
                    doing: format!("running {}", cmd.line()),
                    message: format!("gcloud listed only part of them: {warning}"),
                });
            }
        }
        crate::clusters::read_json(&cmd, &ran)
    }
}

/// `meshmig gc`: deletes clusters of any run older than `older_than` (by the `meshmig-run` label
/// and their creation time) and the fleet memberships named after their run ids.
pub async fn gc(
    exec: &dyn Exec,
    project: &str,
    older_than: Duration,
    now: chrono_like::Utc,
) -> Result<Vec<String>, BackendError> {
    let cfg = GkeConfig::new(project);
    let c = Commands::new(&cfg, &[]);
    let listed = crate::clusters::run_json(exec, &c.list_clusters(true)).await?;
    let mut done = Vec::new();
    let mut runs = BTreeSet::new();
    for cl in listed {
        let (Some(name), Some(zone), Some(created), Some(run)) = (
            cl["name"].as_str(),
            cl["zone"].as_str().or(cl["location"].as_str()),
            cl["createTime"].as_str(),
            cl["resourceLabels"][RUN_LABEL].as_str(),
        ) else {
            continue;
        };
        let Some(age) = chrono_like::age(created, now) else {
            continue;
        };
        if age < older_than {
            continue;
        }
        runs.insert(run.to_string());
        let del = c.delete_cluster_in(name, zone);
        let r = exec.run(&del).await.map_err(|e| {
            BackendError::infra("deleting a cluster", meshmig_core::error_chain(&e))
        })?;
        done.push(format!(
            "{} cluster {name} (run {run}, {}h old)",
            if r.ok() {
                "deleted"
            } else {
                "FAILED to delete"
            },
            age.as_secs() / 3600
        ));
    }
    for m in crate::clusters::run_json(exec, &c.list_memberships()).await? {
        let Some((name, location)) = m["name"].as_str().and_then(membership_parts) else {
            continue;
        };
        if runs.iter().any(|r| name.ends_with(&format!("-{r}"))) {
            let r = exec
                .run(&c.delete_membership(name, location))
                .await
                .map_err(|e| {
                    BackendError::infra("deleting a membership", meshmig_core::error_chain(&e))
                })?;
            done.push(format!(
                "{} fleet membership {name} ({location})",
                if r.ok() {
                    "deleted"
                } else {
                    "FAILED to delete"
                }
            ));
        }
    }
    Ok(done)
}
