//! The kind backend's command lines: procedure names → kind names, the kind, kubectl, istioctl
//! and docker commands it runs, and the container cloud-provider-kind runs in.

use std::path::Path;
use std::time::Duration;

use testcontainers::core::Mount;
use testcontainers::{ContainerRequest, GenericImage, ImageExt};

use super::kit::{Alias, KindKit};
use super::{
    KindConfig, CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG, DOCKER_SOCKET,
    LB_CLUSTER_LABEL, RUN_LABEL,
};
use crate::cli_commands;
use crate::exec::Cmd;

/// The name of a run's cloud-provider-kind container.
pub fn cloud_provider_container(run_id: &str) -> String {
    format!("meshmig-cloud-provider-kind-{run_id}")
}

/// The container request of a run's cloud-provider-kind: its published image, host network and
/// the Docker socket mounted (as its README runs it), named and labelled after the run.
pub fn cloud_provider_request(run_id: &str) -> ContainerRequest<GenericImage> {
    GenericImage::new(CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG)
        .with_container_name(cloud_provider_container(run_id))
        .with_network("host")
        .with_mount(Mount::bind_mount(DOCKER_SOCKET, DOCKER_SOCKET))
        .with_label(RUN_LABEL, run_id)
        .with_startup_timeout(Duration::from_secs(120))
}

/// `docker ps -aq --filter label=io.x-k8s.cloud-provider-kind.cluster=CLUSTER`: the load
/// balancer containers cloud-provider-kind made for a kind cluster, running or not.
pub fn lb_containers_cmd(kind_cluster: &str) -> Cmd {
    Cmd::new(
        "docker",
        [
            "ps".to_string(),
            "-aq".into(),
            "--filter".into(),
            format!("label={LB_CLUSTER_LABEL}={kind_cluster}"),
        ],
    )
}

/// `docker rm -f ID…`.
pub fn rm_containers_cmd(ids: &[String]) -> Cmd {
    Cmd::new(
        "docker",
        ["rm".to_string(), "-f".into()]
            .into_iter()
            .chain(ids.iter().cloned()),
    )
}

/// Procedure names → kind names, and the commands of each action.
pub struct Commands<'a> {
    cfg: &'a KindConfig,
    kubeconfig: &'a Path,
}

impl<'a> Commands<'a> {
    /// Commands of a run.
    pub fn new(cfg: &'a KindConfig, kubeconfig: &'a Path) -> Self {
        Self { cfg, kubeconfig }
    }

    /// The kind program: the kit's, else `kind` from PATH.
    pub fn kind(&self) -> &str {
        self.cfg.kit.as_ref().map_or("kind", |k| k.kind.as_str())
    }

    /// The kind cluster name.
    pub fn cluster(&self, name: &str) -> String {
        format!("{name}-{}", self.cfg.run_id)
    }

    /// `kind create cluster`.
    pub fn create(&self, name: &str) -> Cmd {
        Cmd::new(
            self.kind(),
            [
                "create".to_string(),
                "cluster".into(),
                "--name".into(),
                self.cluster(name),
                "--config".into(),
                self.cfg
                    .config_dir
                    .join(format!("{name}.yaml"))
                    .display()
                    .to_string(),
                "--kubeconfig".into(),
                self.kubeconfig.display().to_string(),
                "--wait".into(),
                "5m".into(),
            ]
            .into_iter()
            .chain(
                self.cfg
                    .node_image
                    .iter()
                    .flat_map(|i| ["--image".to_string(), i.clone()]),
            ),
        )
    }

    /// The context kind writes.
    pub fn kind_context(&self, name: &str) -> String {
        format!("kind-{}", self.cluster(name))
    }

    /// A2, C2.
    pub fn rename_context(&self, name: &str) -> Cmd {
        cli_commands::rename_context(&self.kind_context(name), name)
    }

    /// A3.
    pub fn get_contexts(&self) -> Cmd {
        cli_commands::get_contexts()
    }

    fn istioctl(&self, args: &[&str]) -> Cmd {
        Cmd::new(
            &self.cfg.istioctl.display().to_string(),
            args.iter().copied(),
        )
    }

    /// The kit's `--set` settings (none without a kit).
    fn kit_sets(&self) -> Vec<String> {
        self.cfg
            .kit
            .as_ref()
            .map(KindKit::istioctl_sets)
            .unwrap_or_default()
    }

    /// A4, with the kit's settings.
    pub fn istio_install(&self, context: &str, profile: &str) -> Cmd {
        let mut cmd = cli_commands::istioctl_install(
            &self.cfg.istioctl.display().to_string(),
            context,
            profile,
        );
        cmd.args.extend(self.kit_sets());
        cmd
    }

    /// The managed-mesh stand-in: a control plane of revision asm-managed, no gateways, tagged
    /// default unless the cluster runs Istio already; with the kit's settings.
    pub fn managed_install(&self, context: &str, tag_default: bool) -> Cmd {
        let mut args = crate::clusters::managed_install_args(context, tag_default);
        args.extend(self.kit_sets());
        self.istioctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `kind load image-archive ARCHIVE --name CLUSTER`.
    pub fn load_archive(&self, archive: &Path, name: &str) -> Cmd {
        Cmd::new(
            self.kind(),
            [
                "load".to_string(),
                "image-archive".into(),
                archive.display().to_string(),
                "--name".into(),
                self.cluster(name),
            ],
        )
    }

    /// `kind get nodes --name CLUSTER`.
    pub fn nodes(&self, name: &str) -> Cmd {
        Cmd::new(self.kind(), ["get", "nodes", "--name", &self.cluster(name)])
    }

    /// `ENGINE exec NODE ctr --namespace=k8s.io images tag IMAGE ALIAS`: a second name for a
    /// loaded image in a node's containerd, where the kubelet's CRI looks images up.
    pub fn alias(&self, node: &str, alias: &Alias) -> Cmd {
        Cmd::new(
            self.cfg.engine(),
            [
                "exec",
                node,
                "ctr",
                "--namespace=k8s.io",
                "images",
                "tag",
                &alias.image,
                &alias.alias,
            ],
        )
    }

    /// Loads the GCE metadata stand-in image into a cluster.
    ///
    /// `docker save` then `kind load image-archive`: `kind load docker-image` fails with Docker's
    /// containerd image store, the default since Docker 29 (kind#3795).
    pub fn load_image(&self, image: &str, name: &str, archive: &Path) -> [Cmd; 2] {
        [
            Cmd::new(
                self.cfg.engine(),
                ["save", "-o", &archive.display().to_string(), image],
            ),
            self.load_archive(archive, name),
        ]
    }

    /// G4, H.
    pub fn delete(&self, name: &str) -> Cmd {
        Cmd::new(
            self.kind(),
            [
                "delete".to_string(),
                "cluster".into(),
                "--name".into(),
                self.cluster(name),
                "--kubeconfig".into(),
                self.kubeconfig.display().to_string(),
            ],
        )
    }

    /// `kind get clusters`.
    pub fn get_clusters(&self) -> Cmd {
        Cmd::new(self.kind(), ["get", "clusters"])
    }
}

/// `ENGINE inspect --format … CLUSTER-control-plane`: when a kind cluster's first control-plane
/// node container was created (kind names it `CLUSTER-control-plane`,
/// pkg/cluster/internal/providers/common/namer.go at v0.30.0), as RFC 3339. Docker's
/// `{{.Created}}` is that string already; podman's is a Go `time.Time`, which `{{.Created}}`
/// prints as `2026-12-07 15:23:17.987292846 +0000 UTC` (podman 4.3.1 here), so podman is asked
/// to format it.
pub fn created_cmd(engine: &str, kind_cluster: &str) -> Cmd {
    let format = if engine == "podman" {
        r#"{{.Created.Format "2006-01-02T15:04:05.999999999Z07:00"}}"#
    } else {
        "{{.Created}}"
    };
    Cmd::new(
        engine,
        [
            "inspect".to_string(),
            "--format".into(),
            format.into(),
            format!("{kind_cluster}-control-plane"),
        ],
    )
}
