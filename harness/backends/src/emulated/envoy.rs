//! A real Envoy process serving one gateway workload, configured through Envoy's file-based
//! dynamic resources (LDS, RDS and CDS files in a watched directory).
//!
//! Updates are made before they are broken, so no request fails while they apply: first the
//! clusters of both the old and the new configuration, then the new routes and listeners, then
//! the new clusters alone. Each file is written beside its final name and renamed into place
//! (Envoy reloads on the move), and every stage waits until Envoy's admin interface reports the
//! new version, or reports the rejection with Envoy's own words.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::xds::{envoy_resources, Snapshot};

/// Errors of an Envoy process.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    /// Envoy could not be started.
    #[error("starting envoy ({binary}) for gateway {gateway}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The gateway.
        gateway: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Envoy exited or never became ready.
    #[error("envoy for gateway {gateway} did not become ready: {detail}")]
    NotReady {
        /// The gateway.
        gateway: String,
        /// Its last log lines or status.
        detail: String,
    },
    /// A configuration file could not be written.
    #[error("writing envoy configuration {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Envoy did not take a configuration update.
    #[error("envoy for gateway {gateway} did not apply configuration version {version}: {detail}")]
    Rejected {
        /// The gateway.
        gateway: String,
        /// The version.
        version: u64,
        /// Envoy's stats and log.
        detail: String,
    },
}

/// A running Envoy.
pub struct Envoy {
    gateway: String,
    dir: PathBuf,
    admin: SocketAddr,
    child: Child,
    version: u64,
    current: Snapshot,
    http: reqwest::Client,
}

impl Envoy {
    /// Starts Envoy for `gateway` with its files in `dir` and its admin interface on `admin`,
    /// remembered in `children` (so teardown ends it even if this handle is dropped unwaited).
    pub async fn start(
        binary: &Path,
        gateway: &str,
        dir: &Path,
        admin: SocketAddr,
        children: &crate::exec::Children,
    ) -> Result<Self, EnvoyError> {
        std::fs::create_dir_all(dir).map_err(|e| EnvoyError::Write {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let empty = json!({"version_info": "0", "resources": []});
        for f in ["lds.json", "rds.json", "cds.json"] {
            write_atomic(&dir.join(f), &empty)?;
        }
        let bootstrap = json!({
            "node": {"id": format!("router~{}~{gateway}~cluster.local", admin.ip()), "cluster": gateway},
            "admin": {"address": {"socket_address": {"address": admin.ip().to_string(), "port_value": admin.port()}}},
            "dynamic_resources": {
                "lds_config": {"resource_api_version": "V3",
                    "path_config_source": {"path": dir.join("lds.json"), "watched_directory": {"path": dir}}},
                "cds_config": {"resource_api_version": "V3",
                    "path_config_source": {"path": dir.join("cds.json"), "watched_directory": {"path": dir}}},
            },
            "layered_runtime": {"layers": [{"name": "static", "static_layer": {
                "overload.global_downstream_max_connections": 10000}}]},
        });
        let bootstrap_path = dir.join("bootstrap.json");
        write_atomic(&bootstrap_path, &bootstrap)?;
        let log = std::fs::File::create(dir.join("envoy.log")).map_err(|e| EnvoyError::Write {
            path: dir.join("envoy.log"),
            source: e,
        })?;
        let log2 = log.try_clone().map_err(|e| EnvoyError::Write {
            path: dir.join("envoy.log"),
            source: e,
        })?;
        let mut cmd = Command::new(binary);
        cmd.arg("-c")
            .arg(&bootstrap_path)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
            ])
            .args(["--drain-time-s", "1", "--parent-shutdown-time-s", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        // If the harness dies without tearing down, the kernel ends Envoy too.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| EnvoyError::Spawn {
            binary: binary.to_path_buf(),
            gateway: gateway.to_string(),
            source: e,
        })?;
        if let Some(pid) = child.id() {
            children.track(pid);
        }
        let mut envoy = Self {
            gateway: gateway.to_string(),
            dir: dir.to_path_buf(),
            admin,
            child,
            version: 0,
            current: Snapshot::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds"),
        };
        if let Err(e) = envoy.wait_ready().await {
            // Not left to kill_on_drop, which does not wait for the exit.
            let _ = envoy.stop().await;
            return Err(e);
        }
        Ok(envoy)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    async fn wait_ready(&mut self) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EnvoyError::NotReady {
                    gateway: self.gateway.clone(),
                    detail: format!("exited with {status}: {}", self.log_tail()),
                });
            }
            let url = format!("http://{}/ready", self.admin);
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(EnvoyError::NotReady {
                    gateway: self.gateway.clone(),
                    detail: format!(
                        "admin {} not LIVE after 20s: {}",
                        self.admin,
                        self.log_tail()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Makes Envoy serve `next`, make-before-break; returns once Envoy reports it applied.
    pub async fn apply(&mut self, next: &Snapshot) -> Result<(), EnvoyError> {
        if *next == self.current && self.version > 0 {
            return Ok(());
        }
        // Stage 1: old and new clusters together.
        let mut union = next.clone();
        for c in &self.current.clusters {
            if !union.clusters.iter().any(|n| n.name == c.name) {
                union.clusters.push(c.clone());
            }
        }
        self.version += 1;
        let (_, _, cds) = envoy_resources(&union, self.version, &self.dir);
        write_atomic(&self.dir.join("cds.json"), &cds)?;
        self.wait_version("cluster_manager.cds.version_text")
            .await?;
        // Stage 2: routes, then listeners.
        let (lds, rds, _) = envoy_resources(next, self.version, &self.dir);
        write_atomic(&self.dir.join("rds.json"), &rds)?;
        write_atomic(&self.dir.join("lds.json"), &lds)?;
        self.wait_version("listener_manager.lds.version_text")
            .await?;
        for port in next.routes.keys() {
            let stat = format!(
                "http.outbound_0.0.0.0_{port}.rds.{}.version_text",
                super::xds::route_name(*port)
            );
            if next.listeners.iter().any(|l| l.port == *port) {
                self.wait_version(&stat).await?;
            }
        }
        // Stage 3: drop the clusters no route uses any more.
        if union.clusters.len() != next.clusters.len() {
            self.version += 1;
            let (_, _, cds) = envoy_resources(next, self.version, &self.dir);
            write_atomic(&self.dir.join("cds.json"), &cds)?;
            self.wait_version("cluster_manager.cds.version_text")
                .await?;
        }
        self.wait_listening(next).await?;
        self.current = next.clone();
        Ok(())
    }

    async fn stats(&self, filter: &str) -> Option<String> {
        let url = format!("http://{}/stats?filter={filter}", self.admin);
        self.http.get(&url).send().await.ok()?.text().await.ok()
    }

    /// Waits until a `version_text` stat shows at least the current version.
    async fn wait_version(&mut self, stat: &str) -> Result<(), EnvoyError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = self.version;
        loop {
            let text = self.stats("version_text").await.unwrap_or_default();
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
                .map(|v| v.trim_matches('"').parse::<u64>().unwrap_or(0));
            if got.is_some_and(|g| g >= want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let rejected = self.stats("update_rejected").await.unwrap_or_default();
                return Err(EnvoyError::Rejected {
                    gateway: self.gateway.clone(),
                    version: want,
                    detail: format!("{stat} is {got:?}; {rejected}; log: {}", self.log_tail()),
                });
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EnvoyError::NotReady {
                    gateway: self.gateway.clone(),
                    detail: format!("exited with {status}: {}", self.log_tail()),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_listening(&self, snap: &Snapshot) -> Result<(), EnvoyError> {
        for l in &snap.listeners {
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(l.addr).await.is_err() {
                if Instant::now() > deadline {
                    return Err(EnvoyError::Rejected {
                        gateway: self.gateway.clone(),
                        version: self.version,
                        detail: format!(
                            "listener {} is not accepting connections: {}",
                            l.addr,
                            self.log_tail()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    /// Kills Envoy at once (SIGKILL), as a fault would; [`Envoy::stop`] still reaps it.
    pub fn kill(&mut self) -> Result<(), std::io::Error> {
        self.child.start_kill()
    }

    /// Stops Envoy and waits for it to exit.
    pub async fn stop(&mut self) -> Result<(), std::io::Error> {
        if self.child.try_wait()?.is_none() {
            self.child.start_kill()?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        Ok(())
    }

    /// The current configuration's summary, for evidence.
    pub fn describe(&self) -> Value {
        json!({"gateway": self.gateway, "admin": self.admin.to_string(), "version": self.version,
               "pid": self.pid()})
    }
}

fn write_atomic(path: &Path, v: &Value) -> Result<(), EnvoyError> {
    let tmp = path.with_extension("json.tmp");
    let werr = |e| EnvoyError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(v).expect("JSON values serialize"),
    )
    .map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(|e| EnvoyError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}
