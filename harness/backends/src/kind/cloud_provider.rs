//! cloud-provider-kind for a run on Docker: its container (started through `testcontainers`,
//! its log streamed to the run's scratch folder), whether it is still alive, and what `meshmig
//! doctor --backend kind` says of it on macOS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::commands::{cloud_provider_container, cloud_provider_request};
use super::{KindError, CLOUD_PROVIDER_KIND_IMAGE, CLOUD_PROVIDER_KIND_TAG};

/// What Docker says about the cloud-provider-kind container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderState {
    /// Running.
    Running,
    /// Stopped, with its exit code when Docker has one.
    Exited {
        /// The exit code.
        code: Option<i64>,
    },
    /// Docker could not say (the container is gone, the engine is unreachable…).
    Unknown {
        /// Why.
        why: String,
    },
}

/// Whether cloud-provider-kind is alive; when not, an error naming it, with how it ended and the
/// last lines of its log.
pub fn liveness(state: &ProviderState, container: &str, log: &Path) -> Result<(), KindError> {
    let how = match state {
        ProviderState::Running => return Ok(()),
        ProviderState::Exited { code: Some(c) } => format!("exited with code {c}"),
        ProviderState::Exited { code: None } => "stopped".to_string(),
        ProviderState::Unknown { why } => format!("Docker cannot inspect it ({why})"),
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail: String = lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("\n    {l}"))
        .collect();
    Err(KindError::CloudProviderDied {
        container: container.to_string(),
        how,
        log: log.to_path_buf(),
        tail,
    })
}

/// A run's cloud-provider-kind: its container (removed when dropped), name and log.
pub struct CloudProvider {
    container: ContainerAsync<GenericImage>,
    name: String,
    log: PathBuf,
}

impl CloudProvider {
    /// Starts it from [`cloud_provider_request`], its output streamed to `log`, and checks it is
    /// still running a moment later (it exits at once when it finds no Docker engine).
    pub async fn start(run_id: &str, log: &Path) -> Result<Self, KindError> {
        let name = cloud_provider_container(run_id);
        let file = std::fs::File::create(log).map_err(|source| KindError::Log {
            log: log.to_path_buf(),
            source,
        })?;
        let file = std::sync::Mutex::new(file);
        let consumer = move |frame: &testcontainers::core::logs::LogFrame| {
            use std::io::Write;
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(frame.bytes());
            }
        };
        let container = cloud_provider_request(run_id)
            .with_log_consumer(consumer)
            .start()
            .await
            .map_err(|source| KindError::CloudProviderStart {
                image: format!("{CLOUD_PROVIDER_KIND_IMAGE}:{CLOUD_PROVIDER_KIND_TAG}"),
                container: name.clone(),
                source: Box::new(source),
            })?;
        let cp = Self {
            container,
            name,
            log: log.to_path_buf(),
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        cp.check().await?;
        Ok(cp)
    }

    /// Its container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What Docker says about it now.
    pub async fn state(&self) -> ProviderState {
        match self.container.is_running().await {
            Ok(true) => ProviderState::Running,
            Ok(false) => ProviderState::Exited {
                code: self.container.exit_code().await.ok().flatten(),
            },
            Err(e) => ProviderState::Unknown {
                why: meshmig_core::error_chain(&e),
            },
        }
    }

    /// Ok while it runs; the error naming it once it has died.
    pub async fn check(&self) -> Result<(), KindError> {
        liveness(&self.state().await, &self.name, &self.log)
    }

    /// Resolves (with the error naming it) only when it has died, checking every `every`.
    pub async fn died(&self, every: Duration) -> KindError {
        loop {
            if let Err(e) = self.check().await {
                return e;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Removes the container: SIGTERM first, so it stops its controllers ("Exiting: received
    /// signal", cmd/app.go), SIGKILL after 10 s, then the container itself.
    pub async fn remove(self) -> Result<String, KindError> {
        let name = self.name.clone();
        // A container that already died cannot be stopped; removing it is what matters.
        let _ = self.container.stop_with_timeout(Some(10)).await;
        self.container
            .rm()
            .await
            .map_err(|source| KindError::CloudProviderRemove {
                container: name.clone(),
                source: Box::new(source),
            })?;
        Ok(name)
    }
}

/// What `meshmig doctor --backend kind` adds on this machine's platform.
pub fn doctor_notes() -> Vec<String> {
    doctor_notes_for(std::env::consts::OS)
}

/// What `meshmig doctor --backend kind` adds on a platform (`std::env::consts::OS`): on macOS,
/// what cloud-provider-kind's README (v0.7.0, "Mac, Windows and WSL2 support") says of it there.
pub fn doctor_notes_for(os: &str) -> Vec<String> {
    if os != "macos" {
        return Vec::new();
    }
    vec![
        "note    cloud-provider-kind on macOS: its README says \"On macOS and WSL2 you must run cloud-provider-kind using `sudo`\" (the binary stops with \"Please run this again with `sudo`.\" otherwise, cmd/app.go). meshmig runs it as a container (registry.k8s.io/cloud-provider-kind/cloud-controller-manager:v0.7.0) inside Docker Desktop's VM, which needs no sudo.".to_string(),
        "note    LoadBalancer addresses on macOS: its README says \"Mac and Windows run the containers inside a VM and, on the contrary to Linux, the KIND nodes are not reachable from the host, so the LoadBalancer assigned IP is not working for users\"; the split checks send requests from this machine to those addresses, so run the kind backend on Linux (a Linux VM or CI).".to_string(),
    ]
}
