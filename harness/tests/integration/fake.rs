//! The one fake backend of the integration tests: in memory, no processes, no sockets. Its reads
//! return what the test set (clusters, contexts, objects per cluster and kind, `fleet mesh
//! describe` answers in order, an inventory); its actions record a line each, and the behaviours a
//! test asks for (slow creations, a failing rename, a panicking install) are switched on by name.
//! `checks_fail` freezes a world with it; `engine` scripts a run with it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshmig::backend::witness::{Witness, Witnesses};
use meshmig::backend::{
    Backend, BackendError, FleetOp, Inventory, Kubernetes, Output, TeardownReport,
};
use meshmig::manifest::Object;
use meshmig::scenario::ClusterSpec;
use serde_json::Value;

#[derive(Default)]
pub struct Fake {
    /// Cluster name → status; creations add, deletions and teardown remove.
    pub clusters: Mutex<BTreeMap<String, String>>,
    pub contexts: Vec<String>,
    /// (cluster, kind) → the objects `list` returns (filtered by namespace).
    pub objects: BTreeMap<(String, String), Vec<Value>>,
    /// `fleet mesh describe` answers, in order; the last one repeats.
    pub describe: Mutex<Vec<String>>,
    /// How many times `mesh_describe` was asked.
    pub describes: AtomicUsize,
    /// The DNS server checks ask (default: a closed port on loopback).
    pub dns: Option<SocketAddr>,
    /// What `inventory` returns; when unset, the clusters that are still there.
    pub inventory: Option<Inventory>,
    /// One line per action: `create a`, `delete a`, `namespace n`.
    pub calls: Mutex<Vec<String>>,
    pub teardowns: AtomicUsize,
    /// Creations in flight now, and the most there ever were at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// How long a cluster creation takes.
    pub create_takes: Duration,
    /// Renaming a context fails as an infrastructure error ("kubeconfig is locked").
    pub rename_fails: bool,
    /// Installing Istio panics ("istioctl exploded").
    pub install_panics: bool,
}

impl Fake {
    /// `objects` listed in `cluster` as `kind`.
    pub fn with(mut self, cluster: &str, kind: &str, objects: Vec<Value>) -> Self {
        self.objects
            .insert((cluster.to_string(), kind.to_string()), objects);
        self
    }

    /// The cluster `name`, in state `status`.
    pub fn cluster(self, name: &str, status: &str) -> Self {
        self.clusters
            .lock()
            .unwrap()
            .insert(name.into(), status.into());
        self
    }

    /// `fleet mesh describe` answers `answer` every time.
    pub fn describing(self, answer: &str) -> Self {
        *self.describe.lock().unwrap() = vec![answer.into()];
        self
    }

    fn call(&self, line: String) {
        self.calls.lock().unwrap().push(line);
    }
}

#[async_trait]
impl Kubernetes for Fake {
    async fn create_namespace(&self, _: &str, name: &str) -> Result<Output, BackendError> {
        self.call(format!("namespace {name}"));
        Ok(Output::default())
    }

    async fn label_namespace(
        &self,
        _: &str,
        _: &str,
        _: &BTreeMap<String, String>,
        _: &[String],
    ) -> Result<Output, BackendError> {
        Ok(Output::default())
    }

    async fn restart_workloads(&self, _: &str, namespace: &str) -> Result<Output, BackendError> {
        self.call(format!("restart {namespace}"));
        Ok(Output::default())
    }

    async fn apply(&self, _: &str, _: Option<&str>, _: &[Object]) -> Result<Output, BackendError> {
        Ok(Output::default())
    }

    async fn delete(&self, _: &str, _: &str, _: &str, _: &str) -> Result<Output, BackendError> {
        Ok(Output::default())
    }

    async fn list(
        &self,
        cluster: &str,
        ns: Option<&str>,
        kind: &str,
    ) -> Result<Vec<Value>, BackendError> {
        let all = self
            .objects
            .get(&(cluster.to_string(), kind.to_string()))
            .cloned()
            .unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|o| ns.is_none_or(|n| o["metadata"]["namespace"] == n))
            .collect())
    }
}

#[async_trait]
impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn kubernetes(&self) -> &dyn Kubernetes {
        self
    }
    fn witnesses(&self) -> &Witnesses {
        static W: LazyLock<Witnesses> =
            LazyLock::new(|| Witnesses::uniform(Witness::harness("the test's fake backend")));
        &W
    }
    async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Output, BackendError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.create_takes).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.clusters
            .lock()
            .unwrap()
            .insert(spec.name.clone(), "RUNNING".into());
        self.call(format!("create {}", spec.name));
        Ok(Output::new("create", ""))
    }
    async fn delete_cluster(&self, name: &str) -> Result<Output, BackendError> {
        self.call(format!("delete {name}"));
        match self.clusters.lock().unwrap().remove(name) {
            Some(_) => Ok(Output::new("delete", "")),
            None => Err(BackendError::Procedure {
                command: format!("delete {name}"),
                message: "404".into(),
            }),
        }
    }
    async fn clusters(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self.clusters.lock().unwrap().clone())
    }
    async fn rename_context(&self, cluster: &str) -> Result<Output, BackendError> {
        if self.rename_fails {
            return Err(BackendError::infra(
                format!("renaming the context of {cluster}"),
                "kubeconfig is locked",
            ));
        }
        Ok(Output::default())
    }
    async fn contexts(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.contexts.clone())
    }
    async fn install_istio(&self, _: &str, _: &str) -> Result<Output, BackendError> {
        if self.install_panics {
            panic!("istioctl exploded");
        }
        Ok(Output::default())
    }
    async fn fleet(&self, _: &FleetOp) -> Result<Output, BackendError> {
        Ok(Output::default())
    }
    async fn mesh_describe(&self) -> Result<String, BackendError> {
        let n = self.describes.fetch_add(1, Ordering::SeqCst);
        let d = self.describe.lock().unwrap();
        Ok(d.get(n).or(d.last()).cloned().unwrap_or_default())
    }
    async fn dns_set(&self, _: &str, _: IpAddr, _: u32) -> Result<Output, BackendError> {
        Ok(Output::default())
    }
    fn dns_server(&self) -> SocketAddr {
        self.dns.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())
    }
    async fn inventory(&self) -> Result<Inventory, BackendError> {
        Ok(self.inventory.clone().unwrap_or_else(|| Inventory {
            clusters: self.clusters.lock().unwrap().clone(),
            ..Inventory::default()
        }))
    }
    async fn teardown(&self, _keep: bool) -> TeardownReport {
        self.teardowns.fetch_add(1, Ordering::SeqCst);
        self.clusters.lock().unwrap().clear();
        TeardownReport::default()
    }
    fn scratch_paths(&self) -> Vec<PathBuf> {
        vec![]
    }
}
