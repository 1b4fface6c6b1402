//! Stand-in Online Boutique frontend replicas: one real HTTP server per ready frontend pod.
//!
//! Each renders the home page with the footer exactly as the real frontend's template does, in the
//! variant its cluster is set to (PROCEDURE.md, "The footer"). Like the real frontend, the home
//! page needs the services it calls (product catalog, currency, cart, ads, recommendations): while
//! one of them has no ready endpoint it answers 500 with Online Boutique's error page.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rand::Rng;

use meshmig_core::scenario::FooterVariant;

/// Services the home page calls (their Service names in Online Boutique).
pub const HOME_PAGE_DEPENDENCIES: [&str; 5] = [
    "productcatalogservice",
    "currencyservice",
    "cartservice",
    "adservice",
    "recommendationservice",
];

/// Services with ready endpoints, by namespace, shared with the cluster that updates it.
pub type ReadyServices = Arc<RwLock<BTreeSet<(String, String)>>>;

/// What one replica prints about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Cluster name (GCE metadata `cluster-name`).
    pub cluster: String,
    /// Zone.
    pub zone: String,
    /// Pod name (hostname).
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// Footer variant.
    pub variant: FooterVariant,
}

/// What the home page finds about the services it calls.
#[async_trait::async_trait]
pub trait Dependencies: Send + Sync {
    /// None when every service the home page calls answers; else what Online Boutique's error
    /// page shows for the first one that does not.
    async fn failure(&self, namespace: &str) -> Option<String>;
}

#[async_trait::async_trait]
impl Dependencies for RwLock<BTreeSet<(String, String)>> {
    /// A service without a ready endpoint fails as the real frontend's lookup does.
    async fn failure(&self, namespace: &str) -> Option<String> {
        let ready = self.read().expect("ready-services lock is never poisoned");
        HOME_PAGE_DEPENDENCIES
            .iter()
            .find(|d| !ready.contains(&(namespace.to_string(), d.to_string())))
            .map(|m| format!("could not retrieve data: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp: lookup {m} on 10.96.0.10:53: no such host\""))
    }
}

#[derive(Clone)]
struct AppState {
    id: Arc<Identity>,
    deps: Arc<dyn Dependencies>,
    failing: Arc<Failing>,
}

/// An injected fault: the next `left` requests are answered with `status`.
#[derive(Default)]
struct Failing {
    status: AtomicU16,
    left: AtomicU64,
}

impl Failing {
    /// The status to fail this request with, if the fault still lasts.
    fn take(&self) -> Option<u16> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| self.status.load(Ordering::SeqCst))
    }
}

/// A running replica.
pub struct Frontend {
    /// Where it listens.
    pub addr: SocketAddr,
    failing: Arc<Failing>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a stopping replica lets its requests in flight finish.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Frontend {
    /// Starts a replica on `addr`.
    pub async fn start(
        addr: SocketAddr,
        id: Identity,
        ready: ReadyServices,
    ) -> std::io::Result<Self> {
        Self::start_with(addr, id, ready).await
    }

    /// Starts a replica on `addr` whose home page asks `deps` about the services it calls.
    pub async fn start_with(
        addr: SocketAddr,
        id: Identity,
        deps: Arc<dyn Dependencies>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let failing = Arc::new(Failing::default());
        let state = AppState {
            id: Arc::new(id),
            deps,
            failing: failing.clone(),
        };
        let app = Router::new()
            .route("/", get(home))
            .route("/_healthz", get(|| async { "ok" }))
            .with_state(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            failing,
            shutdown: Some(tx),
            task,
        })
    }

    /// A fault: the replica answers its next `requests` requests with `status`, then recovers.
    pub fn fail_next(&self, status: u16, requests: u64) {
        self.failing.status.store(status, Ordering::SeqCst);
        self.failing.left.store(requests, Ordering::SeqCst);
    }

    /// Stops the replica and waits until its socket is closed: requests in flight finish
    /// (axum's graceful shutdown) within [`STOP_GRACE`], then whatever is left is cut.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }
}

/// A fault: the first replica by pod name answers its next `requests` requests with `status`.
/// What was done, or why nothing could be.
pub fn fail_first<'a>(
    replicas: impl IntoIterator<Item = (&'a String, &'a Frontend)>,
    status: u16,
    requests: u64,
) -> Result<String, String> {
    let (pod, f) = replicas
        .into_iter()
        .min_by_key(|(k, _)| *k)
        .ok_or_else(|| "no frontend replica runs".to_string())?;
    f.fail_next(status, requests);
    Ok(format!(
        "frontend replica {pod} answers its next {requests} requests with {status}"
    ))
}

fn uuid() -> String {
    let mut r = rand::rng();
    let b: [u8; 16] = r.random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix("shop_session-id=")
                .map(str::to_string)
        })
}

async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(status) = s.failing.take() {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "fault injected by meshmig: frontend replica {} answers {status}\n",
                s.id.pod
            ),
        )
            .into_response();
    }
    let (session, new_session) = match session_of(&headers) {
        Some(id) => (id, false),
        None => (uuid(), true),
    };
    let (status, main) = match s.deps.failure(&s.id.namespace).await {
        None => (StatusCode::OK, HOME_MAIN.to_string()),
        Some(detail) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "    <main role=\"main\">\n        <div class=\"container\">\n            <h3>Uh, oh!</h3>\n            <p>Something has failed. Below are some details for debugging.</p>\n            <p><strong>HTTP Status:</strong> 500 Internal Server Error</p>\n            <pre class=\"border border-danger p-3\">{detail}</pre>\n        </div>\n    </main>\n"
            ),
        ),
    };
    let body = page(&main, &footer(&s.id, &session));
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if new_session {
        if let Ok(v) = format!("shop_session-id={session}; Max-Age=172800").parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

const HOME_MAIN: &str = r#"    <main role="main" class="home">
        <div class="container-fluid">
            <div class="row">
                <div class="col-12 col-lg-8 home-desktop-hero-banner d-none d-lg-block">
                    <h3>Hot Products</h3>
                    <div class="row hot-products-row px-xl-6">
                        <div class="col-md-4 hot-product-card">
                            <a href="/product/OLJCESPC7Z"><img alt="" src="/static/img/products/sunglasses.jpg"></a>
                            <div><div class="hot-product-card-name">Sunglasses</div><div class="hot-product-card-price">$19.99</div></div>
                        </div>
                        <div class="col-md-4 hot-product-card">
                            <a href="/product/9SIQT8TOJO"><img alt="" src="/static/img/products/bamboo-glass-jar.jpg"></a>
                            <div><div class="hot-product-card-name">Bamboo Glass Jar</div><div class="hot-product-card-price">$5.49</div></div>
                        </div>
                    </div>
                </div>
            </div>
        </div>
    </main>
"#;

fn page(main: &str, footer: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n    <meta charset=\"UTF-8\">\n    <title>Online Boutique</title>\n</head>\n<body>\n    <header>\n        <div class=\"navbar sub-navbar\"><a href=\"/\" class=\"navbar-brand\"><img src=\"/static/icons/Hipster_NavLogo.svg\" alt=\"\" class=\"top-left-logo\" /></a></div>\n    </header>\n{main}\n{footer}\n</body>\n</html>\n"
    )
}

/// The footer, as the frontend's `footer.html` template renders it for each variant.
fn footer(id: &Identity, session: &str) -> String {
    let details = match id.variant {
        FooterVariant::Gke => format!(
            "\n                    \n                        \n                        <b>Cluster: </b>{}<br/>\n                        \n                        \n                        <b>Zone: </b>{}<br/>\n                        \n                        \n                        <b>Pod: </b>{}\n                        \n                    \n",
            id.cluster, id.zone, id.pod
        ),
        FooterVariant::PodOnly => format!(
            "\n                    \n                        \n                        \n                        \n                        <b>Pod: </b>{}\n                        \n                    \n",
            id.pod
        ),
        FooterVariant::Loading => "\n                    \n                    Deployment details are still loading.\n                    Try refreshing this page.\n                    \n".to_string(),
        FooterVariant::EmptyCluster => format!(
            "\n                    \n                    <b>Cluster: </b><br/>\n                    <b>Zone: </b><br/>\n                    <b>Pod: </b>{}\n                    \n",
            id.pod
        ),
        FooterVariant::None => "\n".to_string(),
    };
    format!(
        "<footer class=\"py-5\">\n    <div class=\"footer-top\">\n        <div class=\"container footer-social\">\n            <p class=\"footer-text\">This website is hosted for demo purposes only. It is not an actual shop. This is not a Google product.</p>\n            <p class=\"footer-text\">\n                <small>\n                    session-id: {session} — \n                    request-id: {}\n                </small>\n                <br/>\n                <small>{details}                </small>\n            </p>\n        </div>\n    </div>\n</footer>",
        uuid()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmig_core::footer::{parse, FooterState};
    use rstest::rstest;

    #[rstest]
    #[case(
        FooterVariant::Gke,
        FooterState::Identified,
        Some("c1"),
        Some("frontend-abc-12345")
    )]
    #[case(
        FooterVariant::PodOnly,
        FooterState::Identified,
        None,
        Some("frontend-abc-12345")
    )]
    #[case(
        FooterVariant::EmptyCluster,
        FooterState::Identified,
        None,
        Some("frontend-abc-12345")
    )]
    #[case(FooterVariant::Loading, FooterState::Loading, None, None)]
    #[case(FooterVariant::None, FooterState::Absent, None, None)]
    fn rendered_footers_read_back(
        #[case] variant: FooterVariant,
        #[case] state: FooterState,
        #[case] cluster: Option<&str>,
        #[case] pod: Option<&str>,
    ) {
        let id = Identity {
            cluster: "c1".into(),
            zone: "us-central1-a".into(),
            pod: "frontend-abc-12345".into(),
            namespace: "ob".into(),
            variant,
        };
        let info = parse(&page(HOME_MAIN, &footer(&id, "s"))).unwrap();
        assert_eq!(info.state, state);
        assert_eq!(info.cluster.as_deref(), cluster);
        assert_eq!(info.pod.as_deref(), pod);
    }
}
