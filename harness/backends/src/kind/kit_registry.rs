//! The registry a kit's run serves images from, for the pods that pull even an image their node
//! holds: an `image: auto` gateway (the API server defaults an untagged image to
//! `imagePullPolicy: Always`, and Istio's injection keeps the pod's policy) and `busybox:latest`
//! (Online Boutique v0.5.0's init container) pull on every start. No registry is reachable on a
//! kit's machine, so the run serves the kit's images itself:
//!
//! 1. `crane registry serve --address GATEWAY:0` (go-containerregistry's registry, in memory),
//!    on the kind network's gateway address, which every node reaches;
//! 2. `crane push --insecure ARCHIVE GATEWAY:PORT/REPOSITORY:TAG` for each image the kit lists;
//! 3. on every node, `/etc/containerd/certs.d/HOST/hosts.toml` names that registry as the host's
//!    mirror for pulls (containerd's hosts directory, turned on by kind-configs/local/).
//!
//! The registry stops with the run (its process is killed when dropped).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::kit::RegistryImage;
use crate::clusters::ClusterOps;
use crate::exec::Cmd;
use crate::BackendError;

/// How long the registry may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running registry.
pub struct KitRegistry {
    /// `GATEWAY:PORT`.
    pub address: String,
    child: std::sync::Mutex<tokio::process::Child>,
}

/// The registry host and the repository path of an image name as containerd reads it:
/// `localhost/meshmig/proxyv2:1.31.0` → (`localhost`, `meshmig/proxyv2:1.31.0`);
/// `docker.io/library/busybox:latest` → (`docker.io`, `library/busybox:latest`).
pub fn host_and_path(image: &str) -> (&str, &str) {
    image.split_once('/').unwrap_or(("docker.io", image))
}

/// The `hosts.toml` that sends a host's pulls to the run's registry (plain HTTP), keeping the
/// host itself as the server for anything else.
pub fn hosts_toml(host: &str, registry: &str) -> String {
    let server = if host == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{host}")
    };
    format!(
        "# Written by meshmig for this run: pulls come from the run's registry.\nserver = \"{server}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// `ENGINE exec NODE sh -c 'mkdir -p DIR && printf %s "$1" > DIR/hosts.toml' sh TEXT`.
pub fn write_hosts_cmd(engine: &str, node: &str, host: &str, text: &str) -> Cmd {
    let dir = format!("/etc/containerd/certs.d/{host}");
    Cmd::new(
        engine,
        [
            "exec".to_string(),
            node.to_string(),
            "sh".into(),
            "-c".into(),
            format!("mkdir -p {dir} && printf %s \"$1\" > {dir}/hosts.toml"),
            "sh".into(),
            text.to_string(),
        ],
    )
}

/// `crane push --insecure ARCHIVE REGISTRY/PATH`.
pub fn push_cmd(crane: &str, archive: &Path, registry: &str, image: &str) -> Cmd {
    let (_, path) = host_and_path(image);
    Cmd::new(
        crane,
        [
            "push".to_string(),
            "--insecure".into(),
            archive.display().to_string(),
            format!("{registry}/{path}"),
        ],
    )
}

/// The port in crane's "serving on port N" line (cmd/crane/cmd/serve.go at v0.22.1:
/// `log.Printf("serving on port %s", port)`).
pub fn served_port(line: &str) -> Option<u16> {
    line.split("serving on port ").nth(1)?.trim().parse().ok()
}

impl KitRegistry {
    /// Starts `crane registry serve` on `gateway` and pushes `images` into it through `ops`.
    pub async fn start(
        ops: &ClusterOps,
        crane: &Path,
        gateway: Ipv4Addr,
        images: &[RegistryImage],
    ) -> Result<Self, BackendError> {
        let doing = format!(
            "starting the run's registry ({} registry serve)",
            crane.display()
        );
        let mut child = tokio::process::Command::new(crane)
            .args(["registry", "serve", "--address", &format!("{gateway}:0")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::infra(&doing, e.to_string()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(START_TIMEOUT, async {
            let mut seen = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(p) = served_port(&l) {
                    return Ok(p);
                }
                seen.push(l);
            }
            Err(seen.join("\n"))
        })
        .await
        .map_err(|_| BackendError::infra(&doing, "it said nothing for 30 s"))?
        .map_err(|said| BackendError::infra(&doing, format!("it ended: {said}")))?;
        // Keep reading its log, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let address = format!("{gateway}:{port}");
        for i in images {
            ops.run(push_cmd(
                &crane.display().to_string(),
                &i.archive,
                &address,
                &i.image,
            ))
            .await?;
        }
        Ok(Self {
            address,
            child: std::sync::Mutex::new(child),
        })
    }

    /// Points every node's containerd at this registry for the hosts of `images`.
    pub async fn configure_nodes(
        &self,
        ops: &ClusterOps,
        engine: &str,
        nodes: &[String],
        images: &[RegistryImage],
    ) -> Result<(), BackendError> {
        let hosts: BTreeSet<&str> = images.iter().map(|i| host_and_path(&i.image).0).collect();
        for node in nodes {
            for host in &hosts {
                ops.run(write_hosts_cmd(
                    engine,
                    node,
                    host,
                    &hosts_toml(host, &self.address),
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Stops it (SIGKILL: it keeps nothing).
    pub fn stop(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.start_kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_map_to_their_registry_host_and_path() {
        assert_eq!(
            host_and_path("localhost/meshmig/proxyv2:1.31.0"),
            ("localhost", "meshmig/proxyv2:1.31.0")
        );
        assert_eq!(
            host_and_path("docker.io/library/busybox:latest"),
            ("docker.io", "library/busybox:latest")
        );
        assert_eq!(
            push_cmd("crane", Path::new("/kit/registry/proxyv2.tar"), "10.89.0.1:40000", "localhost/meshmig/proxyv2:1.31.0").line(),
            "crane push --insecure /kit/registry/proxyv2.tar 10.89.0.1:40000/meshmig/proxyv2:1.31.0"
        );
    }

    #[test]
    fn hosts_toml_sends_pulls_to_the_runs_registry_over_http() {
        let t = hosts_toml("docker.io", "10.89.0.1:40000");
        assert!(
            t.contains("server = \"https://registry-1.docker.io\""),
            "{t}"
        );
        assert!(
            t.contains(
                "[host.\"http://10.89.0.1:40000\"]\n  capabilities = [\"pull\", \"resolve\"]"
            ),
            "{t}"
        );
        let c = write_hosts_cmd("podman", "n-worker", "localhost", "x");
        assert_eq!(c.args[4], "mkdir -p /etc/containerd/certs.d/localhost && printf %s \"$1\" > /etc/containerd/certs.d/localhost/hosts.toml");
        assert_eq!(c.args.last().map(String::as_str), Some("x"));
    }

    #[test]
    fn the_port_comes_from_cranes_log_line() {
        // crane logs with Go's log package: date, time, message.
        assert_eq!(
            served_port("2026/12/07 06:52:10 serving on port 40123"),
            Some(40123)
        );
        assert_eq!(
            served_port("2026/12/07 06:52:10 storing blobs in /tmp/x"),
            None
        );
    }
}
