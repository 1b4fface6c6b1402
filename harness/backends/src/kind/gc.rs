//! kind teardown and garbage collection: the run's clusters deleted and checked gone,
//! cloud-provider-kind and the load balancer containers it left removed; `meshmig gc --backend
//! kind` removes what crashed runs left.

use std::sync::Arc;
use std::time::Duration;

use super::backend::Kind;
use super::commands::{created_cmd, lb_containers_cmd, rm_containers_cmd};
use super::RUN_LABEL;
use crate::clusters::failed;
use crate::exec::{Cmd, Exec};
use crate::run_id::chrono_like::{self, Utc};
use crate::{BackendError, TeardownReport};

/// Removes the load balancer containers cloud-provider-kind left for these kind clusters
/// (found by [`LB_CLUSTER_LABEL`](super::LB_CLUSTER_LABEL)); what was removed and what failed,
/// as teardown reports them.
pub async fn remove_load_balancers(exec: &dyn Exec, kind_clusters: &[String]) -> TeardownReport {
    let mut report = TeardownReport::default();
    for cluster in kind_clusters {
        let ps = lb_containers_cmd(cluster);
        let ids: Vec<String> = match exec.run(&ps).await {
            Ok(r) if r.ok() => r
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Ok(r) => {
                report.failed.push(format!(
                    "load balancer containers of kind cluster {cluster}: {}",
                    failed(&ps, &r)
                ));
                continue;
            }
            Err(e) => {
                report.failed.push(format!(
                    "load balancer containers of kind cluster {cluster}: {}",
                    meshmig_core::error_chain(&e)
                ));
                continue;
            }
        };
        if ids.is_empty() {
            continue;
        }
        let rm = rm_containers_cmd(&ids);
        let what = format!(
            "cloud-provider-kind load balancer containers {} of kind cluster {cluster}",
            ids.join(", ")
        );
        match exec.run(&rm).await {
            Ok(r) if r.ok() => report.removed.push(what),
            Ok(r) => report.failed.push(format!("{what}: {}", failed(&rm, &r))),
            Err(e) => report
                .failed
                .push(format!("{what}: {}", meshmig_core::error_chain(&e))),
        }
    }
    report
}

impl Kind {
    /// The run's teardown (see [`crate::Backend::teardown`] on [`Kind`]): with `keep`,
    /// only what is kept; else the clusters, the fleet stand-in, cloud-provider-kind and its
    /// load balancer containers, then the embedded DNS server.
    pub(super) async fn tear_down(&self, keep: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        self.creations.settle().await;
        let listed = self.listed().await.unwrap_or_default();
        let cloud = self.cloud_provider.take();
        if let Some(k) = self.kit_services.get() {
            k.lbs.stop();
            if let Some(r) = &k.registry {
                r.stop();
                report.removed.push(format!(
                    "the run's registry (crane registry serve on {})",
                    r.address
                ));
            }
        }
        if keep {
            report.kept.extend(
                listed
                    .iter()
                    .map(|c| format!("kind cluster {}", self.cmds().cluster(c))),
            );
            report
                .kept
                .push(format!("kubeconfig {}", self.ops.kubeconfig.display()));
            if let Some(cp) = cloud {
                report.kept.push(format!(
                    "cloud-provider-kind container {0} (its log {1}; remove it with docker rm -f {0})",
                    cp.name(),
                    cp.log().display()
                ));
                // Kept clusters keep their load balancers: the container must outlive this
                // process, and dropping it would remove it.
                if let Ok(cp) = Arc::try_unwrap(cp) {
                    std::mem::forget(cp);
                }
            }
            self.scratch.keep();
            return report;
        }
        for c in &listed {
            match self.ops.run(self.cmds().delete(c)).await {
                Ok(_) => report
                    .removed
                    .push(format!("kind cluster {}", self.cmds().cluster(c))),
                Err(e) => report
                    .failed
                    .push(format!("kind cluster {}: {e}", self.cmds().cluster(c))),
            }
        }
        report.removed.extend(self.fleet.clear().await);
        match self.listed().await {
            Ok(left) => report
                .failed
                .extend(left.iter().map(|c| {
                    format!("LEAK: kind cluster {} still listed", self.cmds().cluster(c))
                })),
            Err(e) => report.failed.push(format!("kind get clusters: {e}")),
        }
        // cloud-provider-kind first (so it makes no more), then what it left behind.
        if let Some(cp) = cloud {
            match Arc::try_unwrap(cp) {
                Ok(cp) => match cp.remove().await {
                    Ok(name) => report
                        .removed
                        .push(format!("cloud-provider-kind container {name}")),
                    Err(e) => report.failed.push(meshmig_core::error_chain(&e)),
                },
                Err(cp) => report.failed.push(format!(
                    "cloud-provider-kind container {}: still in use by a step; removed when the run ends",
                    cp.name()
                )),
            }
        }
        // A kit's run has no cloud-provider-kind: its addresses went with the nodes.
        if self.cfg.kit.is_none() {
            let lbs = remove_load_balancers(self.ops.exec.as_ref(), &self.kind_clusters()).await;
            report.removed.extend(lbs.removed);
            report.failed.extend(lbs.failed);
        }
        self.dns.stop().await;
        let _ = self.scratch.remove();
        report
    }
}

/// The run id of a kind cluster named `NAME-RUN` after one of the procedure's `names` (RUN:
/// lowercase letters and digits, as [`crate::run_id::new_run_id`] makes them); None for any other
/// cluster on the machine.
pub fn run_of<'a>(kind_cluster: &'a str, names: &[String]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        let run = kind_cluster.strip_prefix(n.as_str())?.strip_prefix('-')?;
        (!run.is_empty()
            && run
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        .then_some(run)
    })
}

/// The programs `meshmig gc --backend kind` runs: kind, and the container engine its nodes run
/// in. Without a kit, `kind` and `docker` with cloud-provider-kind beside them; with a kit, the
/// kit's kind and provider (podman here, `KIND_EXPERIMENTAL_PROVIDER` set by the caller), and
/// no cloud-provider-kind (a kit's run gives LoadBalancer addresses from its own process).
#[derive(Debug, Clone)]
pub struct GcTools {
    /// The kind binary.
    pub kind: String,
    /// The container engine (`docker`, `podman`).
    pub engine: String,
    /// Whether runs had cloud-provider-kind containers to remove.
    pub cloud_provider: bool,
}

impl Default for GcTools {
    fn default() -> Self {
        Self {
            kind: "kind".into(),
            engine: "docker".into(),
            cloud_provider: true,
        }
    }
}

/// `meshmig gc --backend kind`: deletes the kind clusters of crashed runs (`NAME-RUN` after one
/// of the procedure's `names`, see [`run_of`]) whose control-plane container is older than
/// `older_than`, then (with cloud-provider-kind) the load balancer containers it left for them
/// and their runs' cloud-provider-kind containers (label [`RUN_LABEL`]). Other clusters are
/// never touched. One line per thing done, as `meshmig gc` prints them.
pub async fn gc(
    exec: &dyn Exec,
    tools: &GcTools,
    names: &[String],
    older_than: Duration,
    now: Utc,
) -> Result<Vec<String>, BackendError> {
    let run = |cmd: Cmd| async move {
        exec.run(&cmd).await.map(|r| (cmd.clone(), r)).map_err(|e| {
            BackendError::infra(
                format!("running {}", cmd.program),
                meshmig_core::error_chain(&e),
            )
        })
    };
    let (cmd, listed) = run(Cmd::new(&tools.kind, ["get", "clusters"])).await?;
    if !listed.ok() {
        return Err(failed(&cmd, &listed));
    }
    let mut done = Vec::new();
    let mut runs = std::collections::BTreeSet::new();
    for cluster in listed.stdout.lines().map(str::trim) {
        let Some(run_id) = run_of(cluster, names) else {
            continue;
        };
        let (_, created) = run(created_cmd(&tools.engine, cluster)).await?;
        let age = created
            .ok()
            .then(|| chrono_like::age(created.stdout.trim(), now))
            .flatten();
        let Some(age) = age else {
            done.push(format!(
                "kept kind cluster {cluster}: its age is unknown ({})",
                created.stderr.trim()
            ));
            continue;
        };
        if age < older_than {
            continue;
        }
        let (del, r) = run(Cmd::new(
            &tools.kind,
            ["delete", "cluster", "--name", cluster],
        ))
        .await?;
        if r.ok() {
            done.push(format!(
                "deleted kind cluster {cluster} (run {run_id}, {}h old)",
                age.as_secs() / 3600
            ));
        } else {
            done.push(format!(
                "FAILED to delete kind cluster {cluster}: {}",
                failed(&del, &r)
            ));
        }
        if !tools.cloud_provider {
            continue;
        }
        runs.insert(run_id.to_string());
        let lbs = remove_load_balancers(exec, &[cluster.to_string()]).await;
        done.extend(lbs.removed.into_iter().map(|l| format!("removed {l}")));
        done.extend(
            lbs.failed
                .into_iter()
                .map(|l| format!("FAILED to remove {l}")),
        );
    }
    for run_id in runs {
        let (ps, r) = run(Cmd::new(
            "docker",
            [
                "ps",
                "-aq",
                "--filter",
                &format!("label={RUN_LABEL}={run_id}"),
            ],
        ))
        .await?;
        if !r.ok() {
            done.push(format!(
                "FAILED to list the cloud-provider-kind container of run {run_id}: {}",
                failed(&ps, &r)
            ));
            continue;
        }
        let ids: Vec<String> = r.stdout.split_whitespace().map(str::to_string).collect();
        if ids.is_empty() {
            continue;
        }
        let (rm, r) = run(rm_containers_cmd(&ids)).await?;
        done.push(if r.ok() {
            format!(
                "removed cloud-provider-kind container {} of run {run_id}",
                ids.join(", ")
            )
        } else {
            format!(
                "FAILED to remove the cloud-provider-kind container of run {run_id}: {}",
                failed(&rm, &r)
            )
        });
    }
    Ok(done)
}
