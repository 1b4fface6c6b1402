//! What every GKE test shares: the recorded executor answering gcloud, the project's scenarios,
//! the run's configuration and gcloud's outputs as the backend reads them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshmig::backend::exec::{Cmd, Exec, ExecError, Ran};
use meshmig::backend::gke::{Gke, GkeConfig};
use meshmig::scenario::Scenario;

/// Answers by the first rule whose words all occur in the command line; records every line (and,
/// for a rule that takes time, `done: LINE` when it ends).
#[derive(Default)]
pub(crate) struct Recorded {
    rules: Vec<(Vec<&'static str>, i32, String, String, Duration)>,
    pub(crate) calls: Mutex<Vec<String>>,
    pub(crate) cmds: Mutex<Vec<Cmd>>,
}

impl Recorded {
    pub(crate) fn on(
        mut self,
        words: &[&'static str],
        code: i32,
        stdout: &str,
        stderr: &str,
    ) -> Self {
        self.rules.push((
            words.to_vec(),
            code,
            stdout.to_string(),
            stderr.to_string(),
            Duration::ZERO,
        ));
        self
    }
    /// As `on`, answering after `ms` milliseconds.
    pub(crate) fn slow(
        mut self,
        words: &[&'static str],
        ms: u64,
        stdout: &str,
        stderr: &str,
    ) -> Self {
        self.rules.push((
            words.to_vec(),
            0,
            stdout.to_string(),
            stderr.to_string(),
            Duration::from_millis(ms),
        ));
        self
    }
    /// The run's listings, empty: Compute Engine resources and cluster operations.
    pub(crate) fn empty_listings(self) -> Self {
        self.on(&["compute"], 0, "[]", "")
            .on(&["operations list"], 0, "[]", "")
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Exec for Recorded {
    async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError> {
        let line = cmd.line();
        self.calls.lock().unwrap().push(line.clone());
        self.cmds.lock().unwrap().push(cmd.clone());
        let rule = self
            .rules
            .iter()
            .find(|(w, ..)| w.iter().all(|w| line.contains(w)));
        Ok(match rule {
            Some((_, code, out, err, delay)) => {
                if !delay.is_zero() {
                    tokio::time::sleep(*delay).await;
                    self.calls.lock().unwrap().push(format!("done: {line}"));
                }
                Ran {
                    code: Some(*code),
                    stdout: out.clone(),
                    stderr: err.clone(),
                }
            }
            None => Ran {
                code: Some(0),
                stdout: String::new(),
                stderr: String::new(),
            },
        })
    }
}

/// A scenario of the project, with the fixtures beside `scenarios/` as its manifests.
pub(crate) fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    meshmig::runner::load(&path, None).unwrap()
}

pub(crate) fn cfg() -> GkeConfig {
    GkeConfig {
        run_id: "r2d2x9".into(),
        ..GkeConfig::new("demo-project")
    }
}

pub(crate) const CLUSTERS_JSON: &str = r#"[
  {"name": "cluster-with-csm-r2d2x9", "location": "us-central1-a", "zone": "us-central1-a", "status": "RUNNING",
   "createTime": "2026-11-27T00:10:00+00:00", "resourceLabels": {"meshmig-run": "r2d2x9"},
   "currentMasterVersion": "1.33.5-gke.1201000", "endpoint": "34.123.45.67"}
]"#;

// Memberships of GKE clusters are regional: `register` puts them in the cluster's region
// (surface/container/fleet/memberships/register.py of gcloud 528: "The default value for
// `--location` is the same as the cluster's region or zone"); the list asks location `-`.
pub(crate) const MEMBERSHIPS_JSON: &str = r#"[
  {"name": "projects/demo-project/locations/us-central1/memberships/cluster-with-csm-membership-r2d2x9",
   "endpoint": {"gkeCluster": {"resourceLink": "//container.googleapis.com/projects/demo-project/locations/us-central1-a/clusters/cluster-with-csm-r2d2x9"}},
   "state": {"code": "READY"}, "uniqueId": "a1b2c3"},
  {"name": "projects/demo-project/locations/global/memberships/someone-else", "state": {"code": "READY"}}
]"#;

pub(crate) const RULES_JSON: &str = r#"[
  {"name": "a3f0c1d2e3b4", "IPAddress": "34.70.1.2", "IPProtocol": "TCP", "portRange": "80-80",
   "description": "{\"kubernetes.io/service-name\":\"asm-ingress/asm-ingressgateway\"}"},
  {"name": "unrelated", "IPAddress": "35.1.1.1", "IPProtocol": "TCP"}
]"#;

// gcloud 528's text for deleting a cluster that does not exist: clusters/delete.py raises
// `util.Error(util.ConstructList('Some requests did not succeed:', errors))` around the error of
// api_adapter.py's CheckClusterOtherZones (NO_SUCH_CLUSTER_ERROR_MSG), printed as a list of the
// error's attributes (reproduced with the installed SDK's own code); the server's 404 message is
// as quoted in kubernetes-sigs/gcp-filestore-csi-driver#109.
// gcloud 528 adds the credential it used to a 404's message (seen in the GKE rehearsal against the
// real gcloud 528, with the token-file credential the rehearsal gives it; with a user account
// the sentence names the account).
pub(crate) const NOT_FOUND: &str = "ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - args: [\"ResponseError: code=404, message=Not found: projects/demo-project/zones/us-central1-a/clusters/cluster-with-managed-asm-r2d2x9. This command is authenticated with an access token from /tmp/meshmig-rehearsal-css47h/gcloud/gcp-stand-in-token specified by the [auth/access_token_file] property.\\nNo cluster named 'cluster-with-managed-asm-r2d2x9' in demo-project.\"]\n   exit_code: 1\n";

// What gcloud 528's progress tracker writes to a pipe (stderr not a terminal): the message and
// `...`, then the dots and `done.` on the next line (core/console/progress_tracker.py,
// _NonInteractiveProgressTracker; reproduced with the installed SDK).
pub(crate) const REGISTER_STDERR: &str = "Waiting for membership to be created...\n.................done.\nFinished registering to the Fleet.\n";

/// `kubectl config get-contexts --output=name` once both creations wrote their contexts.
pub(crate) const CONTEXTS: &str = "gke_demo-project_us-central1-a_cluster-with-csm-r2d2x9\ngke_demo-project_us-central1-a_cluster-with-istio-r2d2x9\n";

pub(crate) async fn backend(exec: Arc<Recorded>, s: &Scenario) -> Gke {
    Gke::with_exec(cfg(), s, exec, tempfile::tempdir().unwrap())
        .await
        .unwrap()
}
