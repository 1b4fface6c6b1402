//! What runs in place of a pod's containers on a kwok cluster.
//!
//! - **Pod addresses.** A pod whose process runs in the run's namespace (istiod, a stand-in
//!   frontend) gets its IP on `lo` ([`claim_ip`]).
//! - **Gateway pods** get a network namespace of their own, like a real pod's, joined to the
//!   run's namespace by a veth pair (the pod's side `eth0` with the pod IP, a /32 route to it on
//!   the run's side, and a default route through a link-local next hop with a static neighbour
//!   entry, as Calico does). A real Envoy runs in it as the pod's router node, connected to its
//!   revision's istiod over plaintext xDS. Each gateway therefore binds its own `0.0.0.0:8080`,
//!   as in a cluster, without colliding with other pods.
//! - **istiod pods**: the real pilot-discovery, bound to the pod's IP, against the cluster's
//!   kubeconfig (Istio's external control plane model). Its mesh configuration is the install's
//!   own ConfigMap with what only Istio's Envoy build and sidecars can serve turned off: the
//!   Prometheus stats provider (the `istio.stats` filter is not in upstream Envoy) and auto mTLS
//!   (no sidecar runs beside the applications, so nothing would answer mTLS).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::proc::{Proc, ProcError};

/// Errors of a pod's stand-in.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// Setting up addresses failed.
    #[error("giving pod {pod} its address {ip}")]
    Net {
        /// The pod.
        pod: String,
        /// Its IP.
        ip: Ipv4Addr,
        /// Why.
        #[source]
        source: meshmig_core::netns::NetnsError,
    },
    /// A process failed.
    #[error("running pod {pod}'s stand-in")]
    Proc {
        /// The pod.
        pod: String,
        /// Why.
        #[source]
        source: ProcError,
    },
    /// A file could not be written.
    #[error("writing {path}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It did not become ready.
    #[error("waiting {waited:?} for pod {pod}'s {what}: {last}")]
    NotReady {
        /// The pod.
        pod: String,
        /// What.
        what: String,
        /// How long.
        waited: Duration,
        /// The last state seen.
        last: String,
    },
}

/// Makes `ip` an address of this namespace (for a pod whose process runs here).
pub fn claim_ip(pod: &str, ip: Ipv4Addr) -> Result<(), PodError> {
    match meshmig_core::netns::ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]) {
        Ok(()) => Ok(()),
        Err(meshmig_core::netns::NetnsError::Ip { message, .. })
            if message.contains("File exists") =>
        {
            Ok(())
        }
        Err(source) => Err(PodError::Net {
            pod: pod.into(),
            ip,
            source,
        }),
    }
}

/// Gives `ip` back (the pod is gone).
pub fn release_ip(ip: Ipv4Addr) {
    let _ = meshmig_core::netns::ip(&["addr", "del", &format!("{ip}/32"), "dev", "lo"]);
}

/// A pod's own network namespace, held by a `sleep` process, joined by a veth pair.
pub struct Sandbox {
    /// The pod.
    pub pod: String,
    /// Its IP.
    pub ip: Ipv4Addr,
    holder: Proc,
    host_if: String,
}

impl Sandbox {
    /// Makes the namespace of pod `pod` with address `ip`; `slot` names the veth (unique per run).
    pub async fn create(pod: &str, ip: Ipv4Addr, slot: u32, dir: &Path) -> Result<Self, PodError> {
        std::fs::create_dir_all(dir).map_err(|source| PodError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let proc_err = |source| PodError::Proc {
            pod: pod.into(),
            source,
        };
        let unshare =
            meshmig_core::tools::on_path("unshare").unwrap_or_else(|| PathBuf::from("unshare"));
        let holder = Proc::start(
            "sandbox",
            &unshare,
            &[
                "--net".into(),
                "--".into(),
                "sleep".into(),
                "infinity".into(),
            ],
            &[],
            None,
            dir,
        )
        .map_err(proc_err)?;
        let pid = holder.pid().unwrap_or_default();
        let ours = std::fs::read_link("/proc/self/ns/net").ok();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            if theirs.is_some() && theirs != ours {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PodError::NotReady {
                    pod: pod.into(),
                    what: "network namespace".into(),
                    waited: Duration::from_secs(10),
                    last: format!("/proc/{pid}/ns/net is still the run's"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let host_if = format!("mm{slot}");
        let mut s = Self {
            pod: pod.into(),
            ip,
            holder,
            host_if: host_if.clone(),
        };
        let net = |source| PodError::Net {
            pod: pod.into(),
            ip,
            source,
        };
        let pid_s = pid.to_string();
        let ns = format!("--net=/proc/{pid}/ns/net");
        let host = |args: &[&str]| meshmig_core::netns::ip(args);
        let inside = |args: &[&str]| -> Result<(), meshmig_core::netns::NetnsError> {
            let out = std::process::Command::new("nsenter")
                .arg(&ns)
                .arg("--")
                .arg("ip")
                .args(args)
                .output()
                .map_err(|e| meshmig_core::netns::NetnsError::Ip {
                    args: args.join(" "),
                    message: format!("nsenter: {e}"),
                })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(meshmig_core::netns::NetnsError::Ip {
                    args: args.join(" "),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                })
            }
        };
        let result = (|| {
            host(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pid_s,
            ])?;
            host(&["link", "set", &host_if, "up"])?;
            host(&["route", "add", &format!("{ip}/32"), "dev", &host_if])?;
            // /sys shows the host's interfaces, not this namespace's: ask ip.
            let link = meshmig_core::netns::ip_output(&["-o", "link", "show", "dev", &host_if])?;
            let mac = link
                .split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            inside(&["link", "set", "lo", "up"])?;
            inside(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
            inside(&[
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ])?;
            inside(&["neigh", "add", "169.254.1.1", "lladdr", &mac, "dev", "eth0"])?;
            inside(&[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ])
        })();
        if let Err(e) = result {
            s.remove().await;
            return Err(net(e));
        }
        Ok(s)
    }

    /// `nsenter --net=… --` to run a program in the pod's namespace.
    pub fn enter_args(&self) -> Vec<String> {
        vec![
            format!(
                "--net=/proc/{}/ns/net",
                self.holder.pid().unwrap_or_default()
            ),
            "--".into(),
        ]
    }

    /// Removes the namespace (its veth goes with it).
    pub async fn remove(&mut self) {
        let _ = meshmig_core::netns::ip(&["link", "del", &self.host_if]);
        self.holder.stop(Duration::from_secs(1)).await;
    }
}

/// The Envoy bootstrap of a gateway pod's router node, connected by ADS to istiod at `xds`.
pub fn router_bootstrap(
    pod: &str,
    namespace: &str,
    ip: Ipv4Addr,
    labels: &Value,
    service_account: &str,
    istio_version: &str,
    xds: SocketAddr,
) -> Value {
    let h2 = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}});
    let static_cluster = |name: &str, addr: String, port: u16| {
        json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": h2,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": addr, "port_value": port}}}}]}]}})
    };
    let workload = labels["app"].as_str().unwrap_or(pod).to_string();
    json!({
        "node": {
            "id": format!("router~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local"),
            "cluster": format!("{workload}.{namespace}"),
            "metadata": {
                "NAMESPACE": namespace,
                "INSTANCE_IPS": ip.to_string(),
                "ISTIO_VERSION": istio_version,
                "CLUSTER_ID": "Kubernetes",
                "LABELS": labels,
                "SERVICE_ACCOUNT": service_account,
                "WORKLOAD_NAME": workload,
                "NAME": pod,
                // pilot-agent sends the proxy's configuration; istiod lists only proxies that
                // carry it in `istioctl proxy-status` (`isProxy`, pilot/pkg/xds/statusgen.go).
                "PROXY_CONFIG": {"discoveryAddress": xds.to_string()},
            },
        },
        "admin": {"address": {"socket_address": {"address": ip.to_string(), "port_value": 15000}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [
            static_cluster("xds-grpc", xds.ip().to_string(), xds.port()),
            // Nothing serves SDS: a stray reference resolves to a cluster that never answers.
            static_cluster("sds-grpc", "127.0.0.1".into(), 1),
        ]},
    })
}

/// A gateway pod's Envoy in its sandbox.
pub struct GatewayPod {
    /// The sandbox.
    pub sandbox: Sandbox,
    envoy: Proc,
    /// Envoy's admin address.
    pub admin: SocketAddr,
}

impl GatewayPod {
    /// Starts Envoy as the router node of the pod in `sandbox`.
    pub async fn start(
        sandbox: Sandbox,
        envoy: &Path,
        bootstrap: &Value,
        dir: &Path,
    ) -> Result<Self, PodError> {
        let pod = sandbox.pod.clone();
        let path = dir.join("bootstrap.json");
        std::fs::write(&path, serde_json::to_vec_pretty(bootstrap).expect("json")).map_err(
            |source| PodError::Io {
                path: path.clone(),
                source,
            },
        )?;
        let mut args = sandbox.enter_args();
        args.extend([
            envoy.display().to_string(),
            "-c".into(),
            path.display().to_string(),
            "--use-dynamic-base-id".into(),
            "--concurrency".into(),
            "1".into(),
            "--log-level".into(),
            "warning".into(),
            "--drain-time-s".into(),
            "1".into(),
        ]);
        let nsenter =
            meshmig_core::tools::on_path("nsenter").unwrap_or_else(|| PathBuf::from("nsenter"));
        let proc = Proc::start("envoy", &nsenter, &args, &[], None, dir).map_err(|source| {
            PodError::Proc {
                pod: pod.clone(),
                source,
            }
        })?;
        let admin = SocketAddr::new(sandbox.ip.into(), 15000);
        Ok(Self {
            sandbox,
            envoy: proc,
            admin,
        })
    }

    /// Waits until Envoy has listeners from istiod (`listener_manager.total_listeners_active`
    /// ≥ `min`), failing early if Envoy exits.
    pub async fn wait_listeners(&mut self, min: u64, timeout: Duration) -> Result<(), PodError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain client");
        let url = format!(
            "http://{}/stats?filter=listener_manager.total_listeners_active",
            self.admin
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no answer from Envoy's admin");
        loop {
            self.envoy.check_alive().map_err(|source| PodError::Proc {
                pod: self.sandbox.pod.clone(),
                source,
            })?;
            if let Ok(r) = client.get(&url).send().await {
                let t = r.text().await.unwrap_or_default();
                let n: u64 = t
                    .split(':')
                    .nth(1)
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if n >= min {
                    return Ok(());
                }
                last = t.trim().to_string();
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PodError::NotReady {
                    pod: self.sandbox.pod.clone(),
                    what: format!("Envoy to have {min} listener(s) from istiod"),
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Envoy's `config_dump`.
    pub async fn config_dump(&self) -> Result<Value, PodError> {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain client")
            .get(format!("http://{}/config_dump", self.admin))
            .send()
            .await;
        let text = match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        serde_json::from_str(&text).map_err(|e| PodError::NotReady {
            pod: self.sandbox.pod.clone(),
            what: "config_dump".into(),
            waited: Duration::ZERO,
            last: e.to_string(),
        })
    }

    /// Kills Envoy at once (SIGKILL), as a fault would; its pid. [`GatewayPod::stop`] still
    /// reaps it and removes the sandbox.
    pub fn kill(&mut self) -> std::io::Result<Option<u32>> {
        let pid = self.envoy.pid();
        self.envoy.kill().map(|_| pid)
    }

    /// Stops Envoy, then removes the sandbox.
    pub async fn stop(&mut self) {
        self.envoy.stop(Duration::from_secs(3)).await;
        self.sandbox.remove().await;
    }
}

/// istiod's mesh configuration for a run without Istio's Envoy build and without sidecars: the
/// install's `mesh` with `defaultProviders` (the Prometheus stats filter) removed and
/// `enableAutoMtls: false`.
pub fn mesh_for_upstream_envoy(mesh_yaml: &str) -> Result<String, String> {
    let mut v: serde_json::Value =
        meshmig_core::yaml::from_str(mesh_yaml).map_err(|e| e.to_string())?;
    let m = v
        .as_object_mut()
        .ok_or("the mesh configuration is not a mapping")?;
    m.remove("defaultProviders");
    m.insert("enableAutoMtls".into(), false.into());
    meshmig_core::yaml::to_string(&v).map_err(|e| e.to_string())
}

/// A real istiod for an istiod pod.
pub struct Istiod {
    /// The pod.
    pub pod: String,
    /// Its IP (where it listens).
    pub ip: Ipv4Addr,
    proc: Proc,
}

impl Istiod {
    /// Starts pilot-discovery for pod `pod` of revision `revision`, listening on `ip`, with the
    /// cluster's kubeconfig and the mesh configuration in `mesh_file`. `ctrlz_port` must be
    /// unique in the run.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        binary: &Path,
        pod: &str,
        ip: Ipv4Addr,
        revision: &str,
        kubeconfig: &Path,
        mesh_file: &Path,
        ctrlz_port: u16,
        dir: &Path,
    ) -> Result<Self, PodError> {
        std::fs::create_dir_all(dir).map_err(|source| PodError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let env: Vec<(String, String)> = [
            ("POD_NAMESPACE", "istio-system"),
            ("POD_NAME", pod),
            ("REVISION", revision),
            ("CLUSTER_ID", "Kubernetes"),
            ("PILOT_ENABLE_ALPN_FILTER", "false"),
            ("PILOT_ENABLE_METADATA_EXCHANGE", "false"),
            ("KUBECONFIG", &kubeconfig.display().to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let args: Vec<String> = vec![
            "discovery".into(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--meshConfig={}", mesh_file.display()),
            format!("--httpAddr={ip}:18080"),
            format!("--grpcAddr={ip}:15010"),
            format!("--secureGRPCAddr={ip}:15012"),
            format!("--httpsAddr={ip}:15017"),
            format!("--monitoringAddr={ip}:15014"),
            format!("--ctrlz_port={ctrlz_port}"),
            "--domain=cluster.local".into(),
            "--log_output_level=default:info".into(),
        ];
        let proc =
            Proc::start("istiod", binary, &args, &env, Some(dir), dir).map_err(|source| {
                PodError::Proc {
                    pod: pod.into(),
                    source,
                }
            })?;
        Ok(Self {
            pod: pod.into(),
            ip,
            proc,
        })
    }

    /// Waits until istiod answers `/ready`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), PodError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain client");
        let url = format!("http://{}:18080/ready", self.ip);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last: String;
        loop {
            self.proc.check_alive().map_err(|source| PodError::Proc {
                pod: self.pod.clone(),
                source,
            })?;
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = r.status().to_string(),
                Err(e) => last = meshmig_core::error_chain(&e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PodError::NotReady {
                    pod: self.pod.clone(),
                    what: "istiod /ready".into(),
                    waited: timeout,
                    last: format!(
                        "{last}; log tail:\n{}",
                        super::proc::tail(&self.proc.log, 15)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Its peak resident memory (KiB).
    pub fn memory_kib(&self) -> Option<u64> {
        self.proc.memory_kib().map(|(_, hwm)| hwm)
    }

    /// Its log.
    pub fn log(&self) -> &Path {
        &self.proc.log
    }

    /// Stops it.
    pub async fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(5)).await;
    }
}
