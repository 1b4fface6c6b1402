//! One Kubernetes cluster of real control-plane processes, as kwokctl's binary runtime runs it:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and kwok for the kubelets,
//! inside the run's network namespace.
//!
//! - The API server listens on 127.0.0.1 (its self-signed serving certificate names that
//!   address), authenticates a static token of `system:masters`, and advertises an address from
//!   the cluster's range (EndpointSlices reject loopback addresses). It routes webhooks to
//!   Service endpoints (`--enable-aggregator-routing`), since there is no kube-proxy: istiod's
//!   injection webhook is reached at the istiod pod's IP, where the real istiod listens.
//! - One fake Node (`kwok-node-0`) with the cluster's pod CIDR and the Kubernetes version as its
//!   kubelet version (so Istio's native-sidecar detection sees a real version).
//! - kwok's Stage documents are read from the module cache at run time (the same files kwokctl
//!   injects: node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete).
//!
//! Address plan of cluster `i` (0 ≤ i ≤ 11): pods 10.(244+i).0.0/24 (the Node's podCIDR), node IP
//! 10.(244+i).255.1, API server advertise address 10.(244+i).255.2, Services 10.(96+i).0.0/16
//! (no proxy: never dialled), load balancers 198.18.i.0/24; etcd on 127.0.0.1:(12379+100i),
//! the API server on 127.0.0.1:(6443+i).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

use super::proc::{Proc, ProcError};
use crate::kube::{Kube, KubeError};
use meshmig_core::tools::Tools;

/// Errors bringing a cluster up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A tool is not built.
    #[error("finding the real components")]
    Tools(#[from] meshmig_core::tools::ToolsError),
    /// A file could not be written.
    #[error("{doing} ({path})")]
    Io {
        /// What was being done.
        doing: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A process failed.
    #[error("running cluster {cluster}'s control plane")]
    Proc {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: ProcError,
    },
    /// The namespace's addresses could not be set.
    #[error("adding cluster {cluster}'s addresses")]
    Net {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: meshmig_core::netns::NetnsError,
    },
    /// A component did not become ready in time.
    #[error("waiting {waited:?} for cluster {cluster}'s {what}: {last}")]
    NotReady {
        /// The cluster.
        cluster: String,
        /// What.
        what: String,
        /// How long.
        waited: Duration,
        /// The last state seen.
        last: String,
    },
    /// An API call failed.
    #[error("setting up cluster {cluster}")]
    Kube {
        /// The cluster.
        cluster: String,
        /// Why.
        #[source]
        source: KubeError,
    },
}

/// The addresses and ports of cluster `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The Node's pod CIDR.
    pub pod_cidr: String,
    /// The Node's InternalIP.
    pub node_ip: Ipv4Addr,
    /// The API server's advertise address.
    pub advertise: Ipv4Addr,
    /// The Service range.
    pub service_cidr: String,
    /// The first load-balancer address (the range is its /24).
    pub lb_base: Ipv4Addr,
    /// etcd's client port.
    pub etcd_port: u16,
    /// The API server's port.
    pub api_port: u16,
}

impl Addresses {
    /// The plan of cluster `index` (at most 11: the ranges are bounded, never wrapped).
    pub fn of(index: u8) -> Option<Self> {
        if index > 11 {
            return None;
        }
        let b = 244 + index;
        Some(Self {
            pod_cidr: format!("10.{b}.0.0/24"),
            node_ip: Ipv4Addr::new(10, b, 255, 1),
            advertise: Ipv4Addr::new(10, b, 255, 2),
            service_cidr: format!("10.{}.0.0/16", 96 + index),
            lb_base: Ipv4Addr::new(198, 18, index, 1),
            etcd_port: 12379 + 100 * u16::from(index),
            api_port: 6443 + u16::from(index),
        })
    }
}

/// kwok's Stage documents, in the module cache (never copied into the project).
pub fn kwok_stages(tools: &Tools) -> Result<Vec<PathBuf>, ClusterError> {
    let cache = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go/pkg/mod")))
        .unwrap_or_default();
    let root = cache.join(format!(
        "sigs.k8s.io/kwok@v{}/kustomize/stage",
        tools.versions.kwok
    ));
    let files: Vec<PathBuf> = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(ClusterError::Io {
            doing: format!(
                "reading kwok's Stage documents from the module cache (run `meshmig tools install --only kwok`, or `go mod download sigs.k8s.io/kwok@v{}`)",
                tools.versions.kwok
            ),
            path: missing.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Ok(files)
}

/// A running cluster.
pub struct Cluster {
    /// Its name (the procedure's).
    pub name: String,
    /// Its index.
    pub index: u8,
    /// Its addresses.
    pub addrs: Addresses,
    /// Its folder (logs, data, certificates).
    pub dir: PathBuf,
    /// A kubeconfig of its own (one context, named as the cluster).
    pub kubeconfig: PathBuf,
    /// The admin token.
    pub token: String,
    /// The API server's CA bundle.
    pub ca: PathBuf,
    procs: Vec<Proc>,
}

fn io(doing: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let doing = doing.to_string();
    let path = path.to_path_buf();
    move |source| ClusterError::Io {
        doing,
        path,
        source,
    }
}

/// The kubeconfig of one cluster.
pub fn kubeconfig_yaml(context: &str, api_port: u16, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}-admin\ncurrent-context: {context}\nusers:\n- name: {context}-admin\n  user:\n    token: {token}\n",
        ca.display()
    )
}

/// Puts the Node's and the API server's addresses of the cluster on `lo`.
fn add_addresses(name: &str, addrs: &Addresses) -> Result<(), ClusterError> {
    let net = |source| ClusterError::Net {
        cluster: name.into(),
        source,
    };
    for a in [addrs.node_ip, addrs.advertise] {
        meshmig_core::netns::ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]).map_err(net)?;
    }
    Ok(())
}

/// A fresh admin token: 32 lowercase letters and digits.
fn random_token() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[r.random_range(0..36)]))
        .collect()
}

/// Writes the API server's static token file (`DIR/tokens.csv`): the admin's `token`, then
/// each of `tokens`, all members of `system:masters`.
fn write_token_file(dir: &Path, token: &str, tokens: &[String]) -> Result<PathBuf, ClusterError> {
    let mut lines = format!("{token},admin,admin,\"system:masters\"\n");
    for (i, t) in tokens.iter().enumerate() {
        lines.push_str(&format!("{t},user-{i},user-{i},\"system:masters\"\n"));
    }
    let tokens = dir.join("tokens.csv");
    crate::write_private(&tokens, lines).map_err(io("writing the token file", &tokens))?;
    Ok(tokens)
}

/// Generates the service-account signing key (`DIR/sa.key`, private) with openssl.
fn generate_service_account_key(dir: &Path) -> Result<PathBuf, ClusterError> {
    let sa_key = dir.join("sa.key");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&sa_key)
        .arg("2048")
        .output()
        .map_err(io("generating the service-account key (openssl)", &sa_key))?;
    if !out.status.success() {
        return Err(ClusterError::Io {
            doing: format!(
                "generating the service-account key: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            path: sa_key,
            source: std::io::Error::other("openssl failed"),
        });
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sa_key, std::fs::Permissions::from_mode(0o600))
            .map_err(io("making the service-account key private", &sa_key))?;
    }
    Ok(sa_key)
}

impl Cluster {
    /// Starts cluster `name` as cluster `index` in `dir`, and waits until its Node is Ready.
    pub async fn start(
        name: &str,
        index: u8,
        dir: &Path,
        tools: &Tools,
    ) -> Result<Self, ClusterError> {
        Self::start_accepting(name, index, dir, tools, &[]).await
    }

    /// As [`Cluster::start`], the API server also accepting these bearer tokens as members of
    /// `system:masters` (a GKE rehearsal's: what gke-gcloud-auth-plugin hands kubectl).
    pub async fn start_accepting(
        name: &str,
        index: u8,
        dir: &Path,
        tools: &Tools,
        tokens: &[String],
    ) -> Result<Self, ClusterError> {
        let addrs = Addresses::of(index).ok_or_else(|| ClusterError::NotReady {
            cluster: name.into(),
            what: "address range".into(),
            waited: Duration::ZERO,
            last: format!("cluster index {index} is beyond the 12 ranges of a run"),
        })?;
        let bin = |b: &str| tools.binary(b);
        let (etcd, apiserver, cm, sched, kwok) = (
            bin("etcd")?,
            bin("kube-apiserver")?,
            bin("kube-controller-manager")?,
            bin("kube-scheduler")?,
            bin("kwok")?,
        );
        let stages = kwok_stages(tools)?;
        std::fs::create_dir_all(dir).map_err(io("creating the cluster's folder", dir))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("creating the cluster's folder", &logs))?;
        add_addresses(name, &addrs)?;
        let token = random_token();
        let token_file = write_token_file(dir, &token, tokens)?;
        let sa_key = generate_service_account_key(dir)?;
        let cert_dir = dir.join("pki");
        let ca = cert_dir.join("apiserver.crt");
        let kubeconfig = dir.join("kubeconfig");
        crate::write_private(
            &kubeconfig,
            kubeconfig_yaml(name, addrs.api_port, &ca, &token),
        )
        .map_err(io("writing the cluster's kubeconfig", &kubeconfig))?;
        let mut c = Self {
            name: name.into(),
            index,
            addrs: addrs.clone(),
            dir: dir.to_path_buf(),
            kubeconfig: kubeconfig.clone(),
            token,
            ca: ca.clone(),
            procs: Vec::new(),
        };
        let home = [("HOME".to_string(), dir.display().to_string())];
        c.start_etcd(&etcd, &home).await?;
        c.start_apiserver(&apiserver, &token_file, &sa_key, &home)
            .await?;
        c.start_managers(&cm, &sched, &sa_key, &home)?;
        c.start_kwok(&kwok, &stages, &home)?;
        c.create_node(&tools.versions.kubernetes).await?;
        Ok(c)
    }

    /// Starts etcd and waits until it is healthy.
    async fn start_etcd(
        &mut self,
        etcd: &Path,
        home: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let s = |p: &Path| p.display().to_string();
        let addrs = self.addrs.clone();
        let peer = addrs.etcd_port + 1;
        let data_dir = self.dir.join("etcd");
        self.spawn(
            "etcd",
            etcd,
            &[
                "--name=node0".into(),
                format!("--data-dir={}", s(&data_dir)),
                format!("--listen-client-urls=http://127.0.0.1:{}", addrs.etcd_port),
                format!(
                    "--advertise-client-urls=http://127.0.0.1:{}",
                    addrs.etcd_port
                ),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=node0=http://127.0.0.1:{peer}"),
                "--auto-compaction-retention=1".into(),
                "--quota-backend-bytes=2147483648".into(),
                "--unsafe-no-fsync=true".into(),
                "--listen-metrics-urls=".into(),
            ],
            home,
        )?;
        self.wait_http(
            "etcd",
            &format!("http://127.0.0.1:{}/health", addrs.etcd_port),
            None,
            Duration::from_secs(30),
        )
        .await
    }

    /// Starts the API server (static tokens in `token_file`, service accounts signed with
    /// `sa_key`) and waits until its certificate is written and it is ready.
    async fn start_apiserver(
        &mut self,
        apiserver: &Path,
        token_file: &Path,
        sa_key: &Path,
        home: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let s = |p: &Path| p.display().to_string();
        let addrs = self.addrs.clone();
        let cert_dir = self.dir.join("pki");
        let ca = self.ca.clone();
        self.spawn(
            "kube-apiserver",
            apiserver,
            &[
                format!("--etcd-servers=http://127.0.0.1:{}", addrs.etcd_port),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", addrs.api_port),
                format!("--advertise-address={}", addrs.advertise),
                format!("--cert-dir={}", s(&cert_dir)),
                format!("--token-auth-file={}", s(token_file)),
                "--authorization-mode=Node,RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", s(sa_key)),
                format!("--service-account-signing-key-file={}", s(sa_key)),
                format!("--service-cluster-ip-range={}", addrs.service_cidr),
                "--allow-privileged=true".into(),
                "--enable-aggregator-routing=true".into(),
                "--profiling=false".into(),
            ],
            home,
        )?;
        self.wait_file(&ca, Duration::from_secs(60)).await?;
        self.wait_http(
            "kube-apiserver",
            &format!("https://127.0.0.1:{}/readyz", addrs.api_port),
            Some(&ca),
            Duration::from_secs(120),
        )
        .await
    }

    /// Starts kube-controller-manager (signing service-account tokens with `sa_key`) and
    /// kube-scheduler.
    fn start_managers(
        &mut self,
        cm: &Path,
        sched: &Path,
        sa_key: &Path,
        home: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let s = |p: &Path| p.display().to_string();
        let kc = s(&self.kubeconfig);
        let ca = s(&self.ca);
        self.spawn(
            "kube-controller-manager",
            cm,
            &[
                format!("--kubeconfig={kc}"),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                format!("--root-ca-file={ca}"),
                format!("--service-account-private-key-file={}", s(sa_key)),
                "--use-service-account-credentials=false".into(),
                "--node-monitor-period=5s".into(),
                "--node-monitor-grace-period=40s".into(),
                "--concurrent-deployment-syncs=10".into(),
                "--concurrent-replicaset-syncs=10".into(),
            ],
            home,
        )?;
        self.spawn(
            "kube-scheduler",
            sched,
            &[
                format!("--kubeconfig={kc}"),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
            ],
            home,
        )
    }

    /// Starts kwok, the kubelets' stand-in, with its Stage documents.
    fn start_kwok(
        &mut self,
        kwok: &Path,
        stages: &[PathBuf],
        home: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let s = |p: &Path| p.display().to_string();
        let mut kwok_args = vec![
            format!("--kubeconfig={}", s(&self.kubeconfig)),
            "--manage-all-nodes=true".into(),
            "--node-lease-duration-seconds=40".into(),
            format!("--cidr={}", self.addrs.pod_cidr),
            format!("--node-ip={}", self.addrs.node_ip),
        ];
        kwok_args.extend(stages.iter().map(|p| format!("--config={}", s(p))));
        self.spawn("kwok", kwok, &kwok_args, home)
    }

    fn spawn(
        &mut self,
        role: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let p = Proc::start(
            role,
            program,
            args,
            env,
            Some(&self.dir),
            &self.dir.join("logs"),
        )
        .map_err(|source| ClusterError::Proc {
            cluster: self.name.clone(),
            source,
        })?;
        self.procs.push(p);
        Ok(())
    }

    /// An error naming the first control-plane process that has exited.
    pub fn check_alive(&mut self) -> Result<(), ClusterError> {
        for p in &mut self.procs {
            p.check_alive().map_err(|source| ClusterError::Proc {
                cluster: self.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    async fn wait_file(&mut self, path: &Path, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !path.is_file() {
            self.check_alive()?;
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    cluster: self.name.clone(),
                    what: format!("{} to be written", path.display()),
                    waited: timeout,
                    last: "absent".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The file is written in one go, but give the writer a moment to finish it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    async fn wait_http(
        &mut self,
        what: &str,
        url: &str,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(io("reading the API server's CA", ca))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(|e| ClusterError::NotReady {
            cluster: self.name.clone(),
            what: what.into(),
            waited: Duration::ZERO,
            last: e.to_string(),
        })?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last: String;
        loop {
            self.check_alive()?;
            match client.get(url).bearer_auth(&self.token).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = meshmig_core::error_chain(&e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    cluster: self.name.clone(),
                    what: what.into(),
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client of the cluster.
    pub async fn kube(&self) -> Result<Kube, ClusterError> {
        Kube::from_kubeconfig(&self.kubeconfig, &self.name)
            .await
            .map_err(|source| ClusterError::Kube {
                cluster: self.name.clone(),
                source,
            })
    }

    async fn create_node(&mut self, kubernetes: &str) -> Result<(), ClusterError> {
        let kube = self.kube().await?;
        let (ar, _) = crate::kube::known_resource("Node").expect("Node is known");
        let api: Api<DynamicObject> = Api::all_with(kube.client(), &ar);
        let node: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "kwok-node-0",
                "labels": {
                    "kubernetes.io/hostname": "kwok-node-0",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {"kwok.x-k8s.io/node": "fake"},
            },
            "spec": {"podCIDR": self.addrs.pod_cidr, "podCIDRs": [self.addrs.pod_cidr]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.addrs.node_ip.to_string()}],
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                "nodeInfo": {
                    "kubeletVersion": format!("v{kubernetes}"),
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "containerRuntimeVersion": "kwok",
                },
            },
        }))
        .expect("a static Node");
        let kube_err = |cluster: &str| {
            let cluster = cluster.to_string();
            move |e: kube::Error| ClusterError::Kube {
                cluster,
                source: KubeError::Api {
                    doing: "creating the fake Node kwok-node-0".into(),
                    source: e,
                },
            }
        };
        api.create(&PostParams::default(), &node)
            .await
            .map_err(kube_err(&self.name))?;
        let timeout = Duration::from_secs(60);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let n = api.get("kwok-node-0").await.map_err(kube_err(&self.name))?;
            let v = serde_json::to_value(&n).unwrap_or_default();
            let ready = v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let tainted = v["spec"]["taints"]
                .as_array()
                .is_some_and(|t| !t.is_empty());
            if ready && !tainted {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    cluster: self.name.clone(),
                    what: "Node kwok-node-0 to be Ready and untainted".into(),
                    waited: timeout,
                    last: format!(
                        "conditions {}, taints {}",
                        v["status"]["conditions"], v["spec"]["taints"]
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every process (kwok and the controllers first, etcd last), waits for each, and
    /// gives the node's and API server's addresses back to the namespace.
    pub async fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5)).await;
        }
        for a in [self.addrs.node_ip, self.addrs.advertise] {
            let _ = meshmig_core::netns::ip(&["addr", "del", &format!("{a}/32"), "dev", "lo"]);
        }
    }

    /// Each process's role and peak resident memory (KiB).
    pub fn memory_kib(&self) -> Vec<(String, u64)> {
        self.procs
            .iter()
            .map(|p| (p.name.clone(), p.memory_kib().map_or(0, |(_, hwm)| hwm)))
            .collect()
    }

    /// Pids of its processes (tests prove they are gone).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().filter_map(Proc::pid).collect()
    }
}
