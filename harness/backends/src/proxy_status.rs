//! `istioctl proxy-status`: which istiod each proxy is connected to, as the istiods themselves
//! answer it (their `istio.io/debug/syncz`). Since 1.27 its table is `NAME CLUSTER ISTIOD
//! VERSION SUBSCRIBED TYPES`, where ISTIOD is the answering istiod's pod name (its `POD_NAME`;
//! istio/istio 1.31.0-rc.0, `istioctl/pkg/writer/pilot/status.go`). Without `--xds-address`,
//! istioctl port-forwards to every running `app=istiod` pod of `istio-system` and asks each.

use serde::Serialize;

use super::exec::{Cmd, Exec};
use super::BackendError;

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
    /// Each `istioctl proxy-status` run (one per istiod where each is asked at its address).
    pub runs: Vec<ProxyStatusRun>,
    /// Why no sidecar proxy runs on this backend, where none does (kwok: no kubelet runs the
    /// pods, so only the gateways' Envoys connect); a sidecar pod's connection is then not
    /// witnessed, and says so.
    pub no_sidecars: Option<String>,
}

/// `istioctl proxy-status --context=CONTEXT`, asking every istiod pod (port-forwarded), or only
/// the istiod at `xds` (`--xds-address=IP:15012`: its TLS port, authenticated by a token for
/// `istio-system`'s default service account, which istiod requires for its debug types).
pub fn command(istioctl: &str, context: &str, xds: Option<&str>) -> Cmd {
    let mut args = vec!["proxy-status".to_string(), format!("--context={context}")];
    if let Some(a) = xds {
        args.push(format!("--xds-address={a}"));
    }
    Cmd::new(istioctl, args)
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
