//! The settings a run's backend is given (the command line's `--project`, `--zone`,
//! `--istio-version`…). Each backend reads the ones it knows in its own folder; the rest are
//! not its concern.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the real-cluster backends.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// GKE: the project.
    pub project: Option<String>,
    /// GKE: one zone for every cluster.
    pub zone: Option<String>,
    /// GKE: a Cloud DNS managed zone for the cut-over.
    pub dns_zone: Option<String>,
    /// The domain of the cut-over instead of the scenario's (with a Cloud DNS zone: a domain
    /// delegated to it, which the user controls; `example.com` cannot be).
    pub domain: Option<String>,
    /// GKE: how long the managed control plane may take (default 20 min).
    pub mesh_timeout: Option<Duration>,
    /// A fixed run id (default: a new one).
    pub run_id: Option<String>,
    /// kind and GKE: the Istio release to install (fetched with its checksum; default: istioctl on PATH).
    pub istio_version: Option<String>,
    /// kind: the folder of cluster configurations (default: kind-configs/ beside scenarios/).
    pub kind_configs: Option<PathBuf>,
    /// kind: a GCE metadata stand-in image to load (see kind-configs/metadata.Dockerfile).
    pub metadata_image: Option<String>,
    /// kind: a kit built by kind-configs/kit/build (default: MESHMIG_KIND_KIT).
    pub kind_kit: Option<PathBuf>,
    /// What the backend's preflight prepared before the process had threads (the GKE
    /// rehearsal's stand-in port and scratch folder, [`crate::gke_rehearsal`]).
    pub rehearsal: Option<Prepared>,
}

/// What a preflight set up before the process had threads: an address to serve on and a
/// scratch folder (the GKE rehearsal's Google Cloud stand-in).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Where the stand-in will serve.
    pub addr: SocketAddr,
    /// The scratch folder (gcloud's configuration, the token, the kwok clusters).
    pub dir: PathBuf,
}
