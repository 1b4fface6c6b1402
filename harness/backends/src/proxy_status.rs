//! `istioctl proxy-status`: which istiod each proxy is connected to, as the istiods themselves
//! answer it (their `istio.io/debug/syncz`). Since 1.27 its table is `NAME CLUSTER ISTIOD
//! VERSION SUBSCRIBED TYPES`, where ISTIOD is the answering istiod's pod name (its `POD_NAME`;
//! istio/istio 1.31.0-rc.0, `istioctl/pkg/writer/pilot/status.go`). Without `--xds-address`,
//! istioctl port-forwards to the running `app=istiod` pods of `istio-system` **of one revision**
//! (`--revision`; when not given, the cluster's default revision, the one the `default` tag
//! points to, else `default`: `RevisionOrDefault`, `istioctl/pkg/cli/context.go`;
//! `GetIstioPods` adds `istio.io/rev=REVISION` to the selector, `pkg/kube/client.go`) and asks
//! each. A proxy connected to another revision's istiod
//! is not listed, as the first kind run of canary-control-plane showed: the frontend, injected by
//! and connected to asm-managed, was missing from a plain `istioctl proxy-status`. So every
//! revision that runs an istiod is asked in turn.

use std::collections::BTreeSet;

use serde::Serialize;

use super::clusters::ClusterOps;
use super::exec::{Cmd, Exec};
use super::{BackendError, Kubernetes};

/// One `istioctl proxy-status` as it ran: the command and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyStatusRun {
    /// The command line.
    pub command: String,
    /// Its standard output (the table).
    pub stdout: String,
}

/// What a backend's istiods say of the proxies connected to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyStatus {
    /// Each `istioctl proxy-status` run: one per revision, or one per istiod where each is asked
    /// at its address.
    pub runs: Vec<ProxyStatusRun>,
    /// Why no sidecar proxy runs on this backend, where none does (kwok: no kubelet runs the
    /// pods, so only the gateways' Envoys connect); a sidecar pod's connection is then not
    /// witnessed, and says so.
    pub no_sidecars: Option<String>,
}

/// Which istiods one `istioctl proxy-status` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'a> {
    /// The istiod pods of this revision, port-forwarded (`--revision=REV`).
    Revision(&'a str),
    /// The istiod at this address (`--xds-address=IP:15012`: its TLS port, authenticated by a
    /// token for `istio-system`'s default service account, which istiod requires for its debug
    /// types).
    Address(&'a str),
    /// What istioctl asks by itself: the `default` revision's istiod pods, or, where none runs,
    /// the XDS address of that revision's webhook.
    Default,
}

/// `istioctl proxy-status --context=CONTEXT`, asking the istiods `ask` names.
pub fn command(istioctl: &str, context: &str, ask: Ask<'_>) -> Cmd {
    let mut args = vec!["proxy-status".to_string(), format!("--context={context}")];
    match ask {
        Ask::Revision(r) => args.push(format!("--revision={r}")),
        Ask::Address(a) => args.push(format!("--xds-address={a}")),
        Ask::Default => {}
    }
    Cmd::new(istioctl, args)
}

/// An istiod pod's revision: its `istio.io/rev` label, `default` without one; `None` for a pod
/// that is not an istiod (`app=istiod`).
pub fn istiod_revision(pod: &serde_json::Value) -> Option<String> {
    let labels = &pod["metadata"]["labels"];
    (labels["app"] == "istiod").then(|| {
        labels["istio.io/rev"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    })
}

/// `istioctl proxy-status --revision=REV` for every revision whose istiod pods run in the
/// cluster, port-forwarded; once without `--revision` where no istiod pod runs (managed CSM,
/// where istioctl asks the XDS address of the revision's webhook instead).
pub async fn ask_every_revision(
    ops: &ClusterOps,
    istioctl: &str,
    cluster: &str,
) -> Result<ProxyStatus, BackendError> {
    let pods = ops.list(cluster, Some("istio-system"), "Pod").await?;
    let revisions: BTreeSet<String> = pods.iter().filter_map(istiod_revision).collect();
    let mut runs = Vec::new();
    let asks: Vec<Ask<'_>> = if revisions.is_empty() {
        vec![Ask::Default]
    } else {
        revisions.iter().map(|r| Ask::Revision(r)).collect()
    };
    for ask in asks {
        runs.push(run(ops.exec.as_ref(), &command(istioctl, cluster, ask)).await?);
    }
    Ok(ProxyStatus {
        runs,
        no_sidecars: None,
    })
}

/// Runs `cmd`; an exit other than 0 is an infrastructure failure naming istioctl's error.
pub async fn run(exec: &dyn Exec, cmd: &Cmd) -> Result<ProxyStatusRun, BackendError> {
    let doing = format!(
        "asking the istiods which proxies are connected ({})",
        cmd.line()
    );
    let ran = exec
        .run(cmd)
        .await
        .map_err(|e| BackendError::infra(doing.clone(), meshmig_core::error_chain(&e)))?;
    if !ran.ok() {
        let why = ran
            .stderr
            .lines()
            .chain(ran.stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output")
            .to_string();
        return Err(BackendError::infra(
            doing,
            format!("exited {:?}: {why}", ran.code),
        ));
    }
    Ok(ProxyStatusRun {
        command: cmd.line(),
        stdout: ran.stdout,
    })
}
