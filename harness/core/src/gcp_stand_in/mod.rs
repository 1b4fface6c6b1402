//! A stand-in for the Google Cloud APIs the GKE backend drives through the real `gcloud`:
//! an in-process HTTP server with in-memory state, so `gcloud` 528 can be pointed at it with
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>` (`googlecloudsdk/core/properties.py`,
//! `_SectionApiEndpointOverrides`) and print its real output against clusters that are local.
//!
//! One submodule per API, each written from the request and message types of the generated
//! clients that ship with the SDK (`googlecloudsdk/generated_clients/apis/<api>/<version>/`),
//! cited next to every handler:
//! - [`container`]: GKE `container/v1` clusters and their long-running operations;
//! - [`gkehub`]: fleet memberships (`gkehub/v1`), the `servicemesh` feature (`v1`) and
//!   membership features (`v2`), with their operations;
//! - [`serviceusage`]: `serviceusage/v1` services get / enable and their operations;
//! - [`compute`]: the `compute/v1` lists the backend reads (empty unless seeded);
//! - [`dns`]: Cloud DNS `dns/v1` managed zones, record sets and changes;
//! - [`resourcemanager`]: project look-ups (`cloudresourcemanager/v1`) that fleet commands
//!   make to turn a project id into its number.
//!
//! Errors are Google's JSON error body (`{"error": {"code", "message", "status"}}`,
//! [`google::ApiError`]), which apitools turns into the `HttpError` gcloud prints as
//! `ResponseError: code=…, message=…` (`googlecloudsdk/api_lib/container/util.py`,
//! `HTTP_ERROR_FORMAT`).
//!
//! Long-running operations go PENDING → RUNNING → DONE at the durations of [`Timing`], so
//! gcloud's progress tracker prints its real dots and `done.`. A cluster's endpoint and CA come
//! from a [`ClusterProvider`] the stand-in calls when a cluster is created or deleted (later a
//! kwok cluster; [`FixedProvider`] for tests).
//!
//! ```no_run
//! # async fn demo() -> Result<(), meshmig_core::gcp_stand_in::StandInError> {
//! use meshmig_core::gcp_stand_in::{FixedProvider, GcpStandIn, Timing};
//! let s = GcpStandIn::start(FixedProvider::new("127.0.0.1:6443", "PEM"), Timing::default()).await?;
//! let env = s.endpoint_env(std::path::Path::new("/tmp/scratch"))?; // CLOUDSDK_* for gcloud
//! # let _ = env;
//! s.stop().await;
//! # Ok(()) }
//! ```

pub mod compute;
pub mod container;
pub mod dns;
pub mod gkehub;
pub mod google;
pub mod resourcemanager;
pub mod serviceusage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};

pub use google::ApiError;

/// The access token gcloud hands out with the stand-in's environment (and so what
/// gke-gcloud-auth-plugin gives kubectl): clusters behind the stand-in accept it.
pub const ACCESS_TOKEN: &str = "stand-in-access-token";

/// Errors starting or using the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    /// The listening socket could not be opened.
    #[error("binding the GCP stand-in to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A file gcloud needs (the dummy access token) could not be written.
    #[error("writing {path} for gcloud: {source}")]
    Write {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A membership named to [`GcpStandIn::set_mesh_state`] is not registered.
    #[error("no fleet membership named {membership} in the stand-in")]
    NoMembership {
        /// The name asked for.
        membership: String,
    },
}

/// How long the stand-in's long-running operations take: PENDING for `pending`, then RUNNING
/// for at least `running` (and until the provider has answered), then DONE. Real GKE takes
/// minutes; a rehearsal scales that down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time an operation is PENDING.
    pub pending: Duration,
    /// Least time an operation is RUNNING.
    pub running: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pending: Duration::from_millis(500),
            running: Duration::from_millis(1500),
        }
    }
}

impl Timing {
    /// Both phases' length.
    pub fn total(&self) -> Duration {
        self.pending + self.running
    }
}

/// Where a created cluster's API server is, as GKE reports it: `endpoint` (host or `host:port`;
/// gcloud writes `https://{endpoint}` to the kubeconfig, `api_lib/container/util.py`
/// `ClusterConfig`) and the CA that signs its serving certificate (PEM; the stand-in reports it
/// base64-encoded in `masterAuth.clusterCaCertificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// `Cluster.endpoint`.
    pub endpoint: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// Which cluster the stand-in asks a provider about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterId {
    /// Project id.
    pub project: String,
    /// Zone or region (`--zone`).
    pub location: String,
    /// Cluster name.
    pub name: String,
    /// `resourceLabels` the cluster was created with.
    pub labels: BTreeMap<String, String>,
}

/// What makes the clusters behind the stand-in real: called when gcloud creates or deletes a
/// cluster. An error fails the operation (its `statusMessage`, which gcloud prints). Calls run
/// on tasks of their own and may overlap (the GKE backend starts both creations of A1 at once);
/// the operation stays RUNNING until the call returns, however long that takes.
#[async_trait::async_trait]
pub trait ClusterProvider: Send + Sync {
    /// Brings up the cluster and says where its API server is.
    async fn create(&self, cluster: &ClusterId) -> Result<ClusterEndpoint, String>;
    /// Tears the cluster down.
    async fn delete(&self, cluster: &ClusterId) -> Result<(), String>;
}

/// A provider that gives every cluster the same endpoint and CA and keeps no cluster: for tests
/// of the API surface.
#[derive(Debug, Clone)]
pub struct FixedProvider {
    endpoint: ClusterEndpoint,
}

impl FixedProvider {
    /// Every cluster at `endpoint`, served under `ca_pem`.
    pub fn new(endpoint: &str, ca_pem: &str) -> Arc<Self> {
        Arc::new(FixedProvider {
            endpoint: ClusterEndpoint {
                endpoint: endpoint.into(),
                ca_pem: ca_pem.into(),
            },
        })
    }
}

#[async_trait::async_trait]
impl ClusterProvider for FixedProvider {
    async fn create(&self, _cluster: &ClusterId) -> Result<ClusterEndpoint, String> {
        Ok(self.endpoint.clone())
    }
    async fn delete(&self, _cluster: &ClusterId) -> Result<(), String> {
        Ok(())
    }
}

/// The managed mesh's state the stand-in reports for a membership in `fleet mesh describe`
/// (see [`crate::fleet::StandInState`]); set from outside with [`GcpStandIn::set_mesh_state`].
pub type MeshState = crate::fleet::StandInState;

/// Shared state of all APIs.
pub(crate) struct Shared {
    pub timing: Timing,
    /// `METHOD /path?query` of every request, in order.
    pub requests: Mutex<Vec<String>>,
    pub provider: Arc<dyn ClusterProvider>,
    pub state: Mutex<Inner>,
}

/// Every API's resources.
#[derive(Default)]
pub(crate) struct Inner {
    pub container: container::Store,
    pub hub: gkehub::Store,
    pub usage: serviceusage::Store,
    pub compute: compute::Store,
    pub dns: dns::Store,
    /// Operation ids handed out so far (they only need to be unique).
    pub next_id: u64,
}

impl Shared {
    /// Locks the state; a poisoned lock (a handler panicked) still holds consistent maps.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// A fresh operation id, shaped like GKE's (`operation-1700000000000-5f3c2a1b`).
    pub fn op_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("{prefix}-{ms}-{:08x}", 0x5eed_0000u32 + self.next_id as u32)
    }
}

/// The phase of an operation started at `started`, given the timing and whether its work is
/// finished.
pub(crate) fn phase(timing: &Timing, started: std::time::Instant, finished: bool) -> &'static str {
    if finished {
        "DONE"
    } else if started.elapsed() < timing.pending {
        "PENDING"
    } else {
        "RUNNING"
    }
}

/// A running stand-in.
pub struct GcpStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GcpStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start(
        provider: Arc<dyn ClusterProvider>,
        timing: Timing,
    ) -> Result<GcpStandIn, StandInError> {
        Self::start_at(
            "127.0.0.1:0".parse().expect("a static address"),
            provider,
            timing,
        )
        .await
    }

    /// Starts the stand-in on `at` (a rehearsal chooses its port before its threads start, to
    /// point gcloud there through the process's environment).
    pub async fn start_at(
        at: SocketAddr,
        provider: Arc<dyn ClusterProvider>,
        timing: Timing,
    ) -> Result<GcpStandIn, StandInError> {
        let listener =
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| StandInError::Bind {
                    addr: at.to_string(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StandInError::Bind {
            addr: at.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            timing,
            requests: Mutex::new(Vec::new()),
            provider,
            state: Mutex::new(Inner::default()),
        });
        let app = axum::Router::new()
            .fallback(dispatch)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(GcpStandIn {
            addr,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT/`; each API is served under `{url}{api}/` (`container`, `gkehub`,
    /// `serviceusage`, `compute`, `dns`, `cloudresourcemanager`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The environment that points gcloud at the stand-in, with a scratch configuration and a
    /// dummy access token written under `scratch` (created if missing): every
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_*` the backend's commands reach (property names from
    /// `googlecloudsdk/core/properties.py`, `_SectionApiEndpointOverrides`),
    /// `CLOUDSDK_AUTH_ACCESS_TOKEN_FILE` (`_SectionAuth.access_token_file`), `CLOUDSDK_CONFIG`,
    /// no prompts and no update check. Each API's override is its own prefix on the one port
    /// (`http://127.0.0.1:PORT/container/`), because GKE's and the fleet's operation paths are
    /// the same (`v1/projects/P/locations/L/operations/ID`).
    pub fn endpoint_env(&self, scratch: &Path) -> Result<Vec<(String, String)>, StandInError> {
        gcloud_env(&self.url(), scratch)
    }
}

/// [`GcpStandIn::endpoint_env`] for a stand-in that will serve `url` (`http://127.0.0.1:PORT/`).
pub fn gcloud_env(url: &str, scratch: &Path) -> Result<Vec<(String, String)>, StandInError> {
    let write_err = |path: &Path, source| StandInError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(scratch).map_err(|e| write_err(scratch, e))?;
    let token = scratch.join("gcp-stand-in-token");
    std::fs::write(&token, format!("{ACCESS_TOKEN}\n")).map_err(|e| write_err(&token, e))?;
    let mut env: Vec<(String, String)> = [
        "CONTAINER",
        "GKEHUB",
        "SERVICEUSAGE",
        "COMPUTE",
        "DNS",
        "CLOUDRESOURCEMANAGER",
    ]
    .iter()
    .map(|api| {
        (
            format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"),
            format!("{url}{}/", api.to_lowercase()),
        )
    })
    .collect();
    env.extend([
        (
            "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE".to_string(),
            token.display().to_string(),
        ),
        (
            "CLOUDSDK_CONFIG".into(),
            scratch.join("gcloud-config").display().to_string(),
        ),
        ("CLOUDSDK_CORE_DISABLE_PROMPTS".into(), "1".into()),
        (
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK".into(),
            "1".into(),
        ),
    ]);
    Ok(env)
}

impl GcpStandIn {
    /// Memberships asking for automatic management, with their GKE cluster's name.
    pub fn managed_memberships(&self) -> Vec<(String, String)> {
        self.shared.lock().hub.managed()
    }

    /// Sets what `fleet mesh describe` reports for a registered membership (its short name).
    pub fn set_mesh_state(&self, membership: &str, state: MeshState) -> Result<(), StandInError> {
        let mut st = self.shared.lock();
        st.hub
            .set_mesh_state(membership, state)
            .ok_or_else(|| StandInError::NoMembership {
                membership: membership.into(),
            })
    }

    /// Seeds a Compute Engine list (`forwardingRules`, `targetPools`, `backendServices`,
    /// `healthChecks`, `httpHealthChecks`, `firewalls`) with the items it returns.
    pub fn seed_compute(&self, collection: &str, items: Vec<serde_json::Value>) {
        self.shared
            .lock()
            .compute
            .seeded
            .insert(collection.into(), items);
    }

    /// Adds a Cloud DNS managed zone (`zone` named as `--zone=` names it, for `dns_name`).
    pub fn add_dns_zone(&self, project: &str, zone: &str, dns_name: &str) {
        self.shared.lock().dns.add_zone(project, zone, dns_name);
    }

    /// The record sets of a Cloud DNS zone (`ResourceRecordSet` messages).
    pub fn dns_records(&self, project: &str, zone: &str) -> Vec<serde_json::Value> {
        self.shared.lock().dns.records(project, zone)
    }

    /// Every request served so far, as `METHOD /api/path?query`, in order: what gcloud asked.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The clusters that exist now (full names `projects/P/locations/L/clusters/C`).
    pub fn cluster_names(&self) -> Vec<String> {
        self.shared
            .lock()
            .container
            .clusters
            .keys()
            .cloned()
            .collect()
    }

    /// The memberships that exist now (full names).
    pub fn membership_names(&self) -> Vec<String> {
        self.shared.lock().hub.membership_names()
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for GcpStandIn {
    fn drop(&mut self) {
        if self.shutdown.is_some() {
            self.task.abort();
        }
    }
}

/// A request as every API's handler sees it.
pub(crate) struct Req<'a> {
    pub method: &'a Method,
    /// Path segments after the leading `/`.
    pub segs: Vec<&'a str>,
    /// Query parameters (decoded).
    pub query: BTreeMap<String, String>,
    pub body: &'a Bytes,
}

impl Req<'_> {
    /// A query parameter that must be set and not empty, else Google's 400 with `message`.
    pub fn required_query(&self, key: &str, message: &str) -> Result<String, ApiError> {
        self.query
            .get(key)
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::invalid_argument(message))
    }

    /// The body parsed as `T`; a body that is not gives Google's 400.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            self.body
        };
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))
    }
}

/// Routes a request to the API named by its first path segment.
async fn dispatch(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = parse_query(uri.query().unwrap_or_default());
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let req = Req {
        method: &method,
        segs,
        query,
        body: &body,
    };
    tracing::debug!(target: "gcp_stand_in", "{method} {uri}");
    shared
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(format!("{method} {uri}"));
    // Each API is served under its own prefix (`/container/`, `/gkehub/`, ...: see
    // [`GcpStandIn::endpoint_env`]), since their paths overlap (GKE's and the fleet's
    // `v1/projects/P/locations/L/operations`).
    let api = req.segs.first().copied().unwrap_or_default().to_string();
    let req = Req {
        segs: req.segs[1.min(req.segs.len())..].to_vec(),
        ..req
    };
    let answer = match api.as_str() {
        "container" => container::route(&shared, &req),
        "gkehub" => gkehub::route(&shared, &req),
        "serviceusage" => serviceusage::route(&shared, &req),
        "compute" => compute::route(&shared, &req),
        "dns" => dns::route(&shared, &req),
        "cloudresourcemanager" => resourcemanager::route(&req),
        _ => None,
    };
    match answer {
        Some(Ok(v)) => google::json_response(axum::http::StatusCode::OK, &v),
        Some(Err(e)) => e.into_response(),
        None => ApiError::not_found(format!(
            "The requested URL {path} was not found on this server (meshmig GCP stand-in)."
        ))
        .into_response(),
    }
}

/// `a=b&c=d`, percent-decoded.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` and `+`.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Now as RFC 3339 with nanoseconds, as Google's APIs write timestamps
/// (`2026-01-01T00:00:00.000000000Z`).
pub(crate) fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Standard base64 with padding (RFC 4648 §4), for `masterAuth.clusterCaCertificate`.
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A project's number, stable for its id: Google keys fleet resources by number
/// (`projects/123456789123/...` in `mesh describe`).
pub fn project_number(project: &str) -> String {
    // FNV-1a, folded into 12 digits that do not start with 0.
    let h = project.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}", 100_000_000_000 + h % 900_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-01-01T00:00:00.000000000Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }

    #[test]
    fn query_is_decoded() {
        let q = parse_query("alt=json&filter=a%3Db+c&x");
        assert_eq!(q["alt"], "json");
        assert_eq!(q["filter"], "a=b c");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn project_numbers_are_stable_and_twelve_digits() {
        let n = project_number("demo");
        assert_eq!(n, project_number("demo"));
        assert_eq!(n.len(), 12);
        assert_ne!(n, project_number("demo-2"));
    }

    /// A provider whose clusters never come up.
    struct Failing;

    #[async_trait::async_trait]
    impl ClusterProvider for Failing {
        async fn create(&self, _c: &ClusterId) -> Result<ClusterEndpoint, String> {
            Err("kwok cluster did not start".into())
        }
        async fn delete(&self, _c: &ClusterId) -> Result<(), String> {
            Ok(())
        }
    }

    async fn call(
        s: &GcpStandIn,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let c = reqwest::Client::new();
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = c
            .request(m, format!("{}{path}", s.url()))
            .body(body.to_string())
            .send()
            .await
            .expect("stand-in answers");
        let code = r.status().as_u16();
        let text = r.text().await.expect("body");
        (code, serde_json::from_str(&text).expect("JSON answer"))
    }

    #[tokio::test]
    async fn bad_requests_get_googles_400_and_unknown_paths_its_404() {
        let s = GcpStandIn::start(FixedProvider::new("e", "ca"), Timing::default())
            .await
            .expect("starts");
        let clusters = "container/v1/projects/p/locations/us-central1-a/clusters";
        let (code, v) = call(&s, "POST", clusters, "not json").await;
        assert_eq!(code, 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid JSON payload received.")));
        let (code, v) = call(&s, "POST", clusters, r#"{"cluster": {}}"#).await;
        assert_eq!(
            (code, v["error"]["message"].as_str()),
            (400, Some("Cluster.name must be set."))
        );
        let (code, v) = call(
            &s,
            "POST",
            "gkehub/v1/projects/p/locations/global/memberships",
            "{}",
        )
        .await;
        assert_eq!(
            (code, v["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (code, v) = call(&s, "GET", "nowhere/v1/x", "").await;
        assert_eq!(
            (code, v["error"]["status"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        s.stop().await;
    }

    #[tokio::test]
    async fn operations_go_pending_running_done_and_a_provider_failure_fails_them() {
        let timing = Timing {
            pending: Duration::from_millis(200),
            running: Duration::from_millis(200),
        };
        let s = GcpStandIn::start(Arc::new(Failing), timing)
            .await
            .expect("starts");
        let base = "container/v1/projects/p/locations/us-central1-a";
        let (code, op) = call(
            &s,
            "POST",
            &format!("{base}/clusters"),
            r#"{"cluster": {"name": "c"}}"#,
        )
        .await;
        assert_eq!((code, op["status"].as_str()), (200, Some("PENDING")));
        let name = op["name"].as_str().expect("name").to_string();
        let (_, c) = call(
            &s,
            "POST",
            &format!("{base}/clusters"),
            r#"{"cluster": {"name": "c"}}"#,
        )
        .await;
        assert_eq!(
            c["error"]["message"],
            "Already exists: projects/p/zones/us-central1-a/clusters/c."
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, op) = call(&s, "GET", &format!("{base}/operations/{name}"), "").await;
        assert_eq!(op["status"], "RUNNING");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, op) = call(&s, "GET", &format!("{base}/operations/{name}"), "").await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(op["statusMessage"], "kwok cluster did not start");
        let (_, c) = call(&s, "GET", &format!("{base}/clusters/c"), "").await;
        assert_eq!(c["status"], "ERROR");
        s.stop().await;
    }
}
