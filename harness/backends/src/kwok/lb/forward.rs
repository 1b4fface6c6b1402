//! Forwarding: one listener per Service port, each accepted connection forwarded to a ready
//! backend read afresh from the Service's EndpointSlices.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::service::{call, endpoint_slice_resource, ready_backends};
use super::{lock, LbError, Shared, CONNECT_TIMEOUT};

/// One Service's load balancer.
pub(super) struct Lb {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) ip: Ipv4Addr,
    pub(super) listeners: BTreeMap<u16, Listener>,
}

/// One port's listener and its connections.
pub(super) struct Listener {
    port_name: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Closes the listening socket and every open connection, and waits until they are.
    pub(super) async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Where one port's connections go.
struct Target {
    /// `namespace/name:port`.
    subject: String,
    service: String,
    port_name: String,
    slices: Api<DynamicObject>,
    next: AtomicUsize,
    /// The last backends read (used when the API does not answer).
    last: Mutex<Vec<SocketAddr>>,
    shared: Arc<Shared>,
}

/// Connects to `backend` from `source` (any port), or from the kernel's choice without one.
async fn connect_from(source: Option<IpAddr>, backend: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match backend {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == backend.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(backend).await
}

impl Target {
    /// The ready backends, read now.
    async fn backends(&self) -> Vec<SocketAddr> {
        let lp =
            ListParams::default().labels(&format!("kubernetes.io/service-name={}", self.service));
        let read = call(
            format!("reading the EndpointSlices of {}", self.subject),
            self.slices.list(&lp),
        )
        .await;
        let subject = format!("endpoints {}", self.subject);
        match read {
            Ok(list) => {
                self.shared.resolved(&subject);
                let slices: Vec<Value> = list
                    .items
                    .iter()
                    .filter_map(|s| serde_json::to_value(s).ok())
                    .collect();
                let backends = ready_backends(&slices, &self.port_name);
                let state = if backends.is_empty() {
                    format!("{}: no ready endpoint, connections are reset", self.subject)
                } else {
                    format!(
                        "{}: forwarding to {}",
                        self.subject,
                        backends
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                self.shared.state(&subject, state);
                *lock(&self.last) = backends.clone();
                backends
            }
            Err(e) => {
                self.shared.error(&subject, &e);
                lock(&self.last).clone()
            }
        }
    }

    /// Forwards one accepted connection, or resets it when no backend takes it.
    async fn forward(&self, mut client: TcpStream) {
        let backends = self.backends().await;
        let n = backends.len();
        // Connections to backends leave from the load balancer's own address (the one the client
        // reached), as a cloud load balancer's do. Left to the kernel, the source could be any
        // address on `lo`, such as another cluster's, and deleting that cluster's addresses
        // would strand the connection: its replies no longer reach a local address, and the
        // client waits until its timeout.
        let source = client.local_addr().ok().map(|a| a.ip());
        if n > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let backend = backends[(start + i) % n];
                match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(source, backend)).await {
                    Ok(Ok(mut upstream)) => {
                        let _ = client.set_nodelay(true);
                        let _ = upstream.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(lb = %self.subject, %backend, "backend refused: {e}")
                    }
                    Err(_) => {
                        tracing::debug!(lb = %self.subject, %backend, "backend timed out")
                    }
                }
            }
        }
        // A reset, as a load balancer without a healthy backend answers.
        let _ = client.set_zero_linger();
    }
}

/// Accepts connections until cancelled, then closes the listener and cuts the connections.
async fn accept_loop(listener: TcpListener, target: Arc<Target>, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let t = target.clone();
                    conns.spawn(async move { t.forward(stream).await });
                }
                Err(e) => {
                    tracing::warn!(lb = %target.subject, "accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Opens the listener of `port` (named `port_name`) of `lb`.
fn listen(
    lb: &Lb,
    port: u16,
    port_name: &str,
    client: &Client,
    shared: &Arc<Shared>,
    parent: &CancellationToken,
) -> Result<Listener, LbError> {
    let addr = SocketAddr::from((lb.ip, port));
    let service = format!("{}/{}", lb.namespace, lb.name);
    let fail = |source| LbError::Listen {
        service: service.clone(),
        addr,
        source,
    };
    let std_listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    std_listener.set_nonblocking(true).map_err(fail)?;
    let listener = TcpListener::from_std(std_listener).map_err(fail)?;
    let target = Arc::new(Target {
        subject: format!("{service}:{port}"),
        service: lb.name.clone(),
        port_name: port_name.to_string(),
        slices: Api::namespaced_with(client.clone(), &lb.namespace, &endpoint_slice_resource()),
        next: AtomicUsize::new(0),
        last: Mutex::new(Vec::new()),
        shared: shared.clone(),
    });
    let cancel = parent.child_token();
    let task = tokio::spawn(accept_loop(listener, target, cancel.clone()));
    Ok(Listener {
        port_name: port_name.to_string(),
        cancel,
        task,
    })
}

/// Makes `lb`'s listeners those of `ports`: stops the others, opens the missing ones.
pub(super) async fn sync_listeners(
    key: &str,
    lb: &mut Lb,
    ports: &BTreeMap<u16, String>,
    client: &Client,
    shared: &Arc<Shared>,
    parent: &CancellationToken,
) {
    let stale: Vec<u16> = lb
        .listeners
        .iter()
        .filter(|(p, l)| ports.get(p) != Some(&l.port_name))
        .map(|(p, _)| *p)
        .collect();
    for port in stale {
        if let Some(l) = lb.listeners.remove(&port) {
            l.stop().await;
            shared.event(format!("stopped listening on {}:{port} for {key}", lb.ip));
        }
    }
    for (port, name) in ports {
        if lb.listeners.contains_key(port) {
            continue;
        }
        let subject = format!("listen {key}:{port}");
        match listen(lb, *port, name, client, shared, parent) {
            Ok(l) => {
                shared.resolved(&subject);
                lb.listeners.insert(*port, l);
                shared.event(format!("listening on {}:{port} for {key}", lb.ip));
            }
            Err(e) => shared.error(&subject, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forwarder's connection to a backend leaves from the given source address (on
    /// Linux every 127/8 address is local, so 127.0.0.2 stands for a load balancer's address).
    #[tokio::test]
    async fn backends_see_the_load_balancers_address() {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = backend.local_addr().unwrap();
        let lb: IpAddr = "127.0.0.2".parse().unwrap();
        let (conn, accepted) = tokio::join!(connect_from(Some(lb), at), backend.accept());
        conn.unwrap();
        assert_eq!(accepted.unwrap().1.ip(), lb);
        let (conn, accepted) = tokio::join!(connect_from(None, at), backend.accept());
        conn.unwrap();
        assert_ne!(accepted.unwrap().1.ip(), lb);
    }
}
