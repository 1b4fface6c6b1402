//! The kwok clusters' load balancers (`meshmig::backend::kwok::lb`) on a real cluster
//! (`--features real`): a Service of type LoadBalancer gets an address written to its status by
//! the API server, traffic to it reaches both ready pods round-robin, a scale to zero leaves the
//! address resetting connections, a deleted Service's listener and address are gone, `stop`
//! releases everything, and a restarted controller keeps the address a Service already holds.
//!
//! Needs the components (`meshmig tools install`), iproute2, util-linux (unshare) and openssl.
#![cfg(all(feature = "real", target_os = "linux"))]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshmig::backend::kube::Kube;
use meshmig::backend::kwok::cluster::Cluster;
use meshmig::backend::kwok::lb::LoadBalancers;
use meshmig::backend::kwok::pods::{claim_ip, release_ip};
use meshmig::tools::Tools;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[test]
fn real_load_balancers() {
    meshmig::netns::run_test_in_own_namespace("real_lb::real_load_balancers", load_balancers);
}

const MANIFESTS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: example.com/web:1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
";

/// A second load balancer, applied once `web` has its address: it gets the next free one.
const OTHER: &str = "\
apiVersion: v1
kind: Service
metadata: {name: other}
spec:
  type: LoadBalancer
  selector: {app: nothing}
  ports: [{name: https, port: 8443, targetPort: 8443}]
";

fn objects(text: &str) -> Vec<meshmig::manifest::Object> {
    meshmig::manifest::parse(Path::new("real_lb.yaml"), text).unwrap()
}

/// A pod's stand-in: answers every HTTP request with the pod's name, then closes.
async fn pod_server(ip: Ipv4Addr, name: String) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind((ip, 8080)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    })
}

/// Running pods of `app=web` with their IPs.
async fn running_pods(kube: &Kube) -> BTreeMap<String, Ipv4Addr> {
    kube.list("Pod", Some("default"))
        .await
        .unwrap()
        .iter()
        .filter(|p| {
            p["metadata"]["labels"]["app"] == "web"
                && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["status"]["podIP"].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Ready endpoint addresses of Service `web`, as the API server has them.
async fn ready_endpoints(kube: &Kube) -> Vec<String> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
        "endpointslices",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(kube.client(), "default", &ar);
    let slices = api
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    let mut out: Vec<String> = slices
        .items
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The load-balancer IP and mode a Service's status holds, read from the API server.
async fn status_of(kube: &Kube, name: &str) -> Option<(Ipv4Addr, String)> {
    let services = kube.list("Service", Some("default")).await.unwrap();
    let svc: &Value = services.iter().find(|s| s["metadata"]["name"] == name)?;
    let ingress = &svc["status"]["loadBalancer"]["ingress"][0];
    Some((
        ingress["ip"].as_str()?.parse().ok()?,
        ingress["ipMode"].as_str().unwrap_or_default().to_string(),
    ))
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP/1.1 request on a connection of its own: the body, or what went wrong.
async fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    match read {
        Err(_) => Err("no answer within 5 s".into()),
        Ok(Err(e)) => Err(format!("read: {e} (after {} bytes)", answer.len())),
        Ok(Ok(_)) if answer.is_empty() => Err("closed without an answer".into()),
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&answer).to_string();
            match text.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
                _ => Err(format!("unexpected answer {text:?}")),
            }
        }
    }
}

/// Whether `ip/32` is an address of `lo`.
fn on_lo(ip: Ipv4Addr) -> bool {
    meshmig::netns::ip_output(&["-o", "-4", "addr", "show", "dev", "lo"])
        .unwrap()
        .split_whitespace()
        .any(|w| w == format!("{ip}/32"))
}

/// Whether connecting to `addr` is refused (nothing listens, the address is routed locally).
async fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

async fn load_balancers() {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("meshmig-lb-")
        .tempdir()
        .unwrap();
    let mut cluster = Cluster::start("c", 0, &dir.path().join("c"), &Tools::from_env())
        .await
        .expect("starting the cluster");
    println!("cluster up in {:?}", t0.elapsed());
    let kube = cluster.kube().await.unwrap();
    // The range is routed locally, as in a run: an address without a listener refuses
    // connections (instead of being unreachable), whether or not it is on lo.
    meshmig::netns::add_local_range("198.18.0.0/24").unwrap();
    let (lb1, lb2) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));

    let (pods, servers) = start_pods(&kube).await;
    let lb = assign_addresses(&kube, &cluster, lb1, lb2).await;
    let web = SocketAddr::from((lb1, 80));
    round_robin(&kube, &pods, web).await;
    no_ready_endpoint(&kube, web, lb2).await;
    delete_web(&kube, &lb, web, lb1, lb2).await;
    stop_releases(lb, lb2).await;
    let lb = restarted(&kube, &cluster, lb2).await;
    no_longer_a_load_balancer(&kube, &lb, lb2).await;
    lb.stop().await;

    for s in servers {
        s.abort();
    }
    for ip in pods.values() {
        release_ip(*ip);
    }
    cluster.stop().await;
    println!("load-balancer test done in {:?}", t0.elapsed());
}

/// Applies `web`, waits for its 2 Running pods and starts their stand-ins on the pods' IPs.
async fn start_pods(kube: &Kube) -> (BTreeMap<String, Ipv4Addr>, Vec<tokio::task::JoinHandle<()>>) {
    kube.apply(&objects(MANIFESTS), "default").await.unwrap();
    let pods = wait_for("2 Running pods of web", Duration::from_secs(60), || async {
        let p = running_pods(kube).await;
        (p.len() == 2).then_some(p)
    })
    .await;
    println!("pods: {pods:?}");
    let mut servers = Vec::new();
    for (name, ip) in &pods {
        claim_ip(name, *ip).unwrap();
        servers.push(pod_server(*ip, name.clone()).await);
    }
    (pods, servers)
}

/// Starts the controller: `web` gets the first address, `other` the next, both on lo.
async fn assign_addresses(
    kube: &Kube,
    cluster: &Cluster,
    lb1: Ipv4Addr,
    lb2: Ipv4Addr,
) -> LoadBalancers {
    let lb = LoadBalancers::start(kube.clone(), "c", cluster.addrs.lb_base);
    let t_lb = Instant::now();
    let (ip, mode) = wait_for(
        "Service web's status.loadBalancer",
        Duration::from_secs(10),
        || status_of(kube, "web"),
    )
    .await;
    println!("status of web: {ip} {mode} after {:?}", t_lb.elapsed());
    assert_eq!((ip, mode.as_str()), (lb1, "VIP"));
    kube.apply(&objects(OTHER), "default").await.unwrap();
    let (ip2, _) = wait_for(
        "Service other's status.loadBalancer",
        Duration::from_secs(10),
        || status_of(kube, "other"),
    )
    .await;
    assert_eq!(ip2, lb2, "the next free address");
    assert_eq!(
        lb.addresses(),
        BTreeMap::from([("default/other".into(), lb2), ("default/web".into(), lb1)])
    );
    assert!(on_lo(lb1) && on_lo(lb2), "the addresses are on lo");
    lb
}

/// Both ready pods answer at `web`'s address, round-robin.
async fn round_robin(kube: &Kube, pods: &BTreeMap<String, Ipv4Addr>, web: SocketAddr) {
    // Both ready pods answer, round-robin, each request on a connection of its own.
    let mut want: Vec<String> = pods.values().map(|ip| ip.to_string()).collect();
    want.sort();
    wait_for(
        "2 ready endpoints of web",
        Duration::from_secs(30),
        || async { (ready_endpoints(kube).await == want).then_some(()) },
    )
    .await;

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..20 {
        let body = get(web).await.unwrap_or_else(|e| panic!("GET {web}: {e}"));
        *answers.entry(body).or_default() += 1;
    }
    println!("20 requests to http://{web}/: {answers:?}");
    assert_eq!(
        answers.keys().cloned().collect::<Vec<_>>(),
        pods.keys().cloned().collect::<Vec<_>>(),
        "both pods answer"
    );
    assert!(
        answers.values().all(|n| *n == 10),
        "round-robin: {answers:?}"
    );
}

/// Without a ready endpoint (`other`'s, then `web`'s after a scale to zero) the listener
/// accepts, then resets.
async fn no_ready_endpoint(kube: &Kube, web: SocketAddr, lb2: Ipv4Addr) {
    // A Service without a ready endpoint: its listener accepts, then resets.
    let other = get(SocketAddr::from((lb2, 8443))).await;
    println!("other (no endpoint): {other:?}");
    assert!(other.is_err(), "answered without an endpoint: {other:?}");

    // Scale to zero: once the API server has no ready endpoint, nothing answers, although
    // the pods' stand-ins still listen (a stale endpoint would be noticed).
    kube.apply(
        &objects(&MANIFESTS.replace("replicas: 2", "replicas: 0")),
        "default",
    )
    .await
    .unwrap();
    let t_scale = Instant::now();
    wait_for(
        "no ready endpoint of web",
        Duration::from_secs(60),
        || async { ready_endpoints(kube).await.is_empty().then_some(()) },
    )
    .await;
    println!("no ready endpoint after {:?}", t_scale.elapsed());
    for _ in 0..3 {
        let r = get(web).await;
        println!("after the scale to zero: {r:?}");
        let e = r.expect_err("an answer without a ready endpoint");
        // The reset may come before the connect completes (then connect says so), but the
        // listener is there: the connection is never refused.
        assert!(
            !e.contains("refused"),
            "the listener should accept, then reset: {e}"
        );
    }
}

/// `web` deleted: its listener and address go, `other`'s stay; the controller's events.
async fn delete_web(
    kube: &Kube,
    lb: &LoadBalancers,
    web: SocketAddr,
    lb1: Ipv4Addr,
    lb2: Ipv4Addr,
) {
    // Delete the Service: its listener goes, its address is released; the other stays.
    kube.delete("Service", "default", "web", Duration::from_secs(30))
        .await
        .unwrap();
    let t_del = Instant::now();
    wait_for(
        "web's listener and address to go",
        Duration::from_secs(10),
        || async { (refused(web).await && !on_lo(lb1)).then_some(()) },
    )
    .await;
    println!(
        "web's listener and address gone after {:?}",
        t_del.elapsed()
    );
    assert_eq!(
        lb.addresses(),
        BTreeMap::from([("default/other".into(), lb2)])
    );
    assert!(on_lo(lb2));
    assert!(!refused(SocketAddr::from((lb2, 8443))).await);

    let events = lb.events();
    println!("events:\n  {}", events.join("\n  "));
    for e in [
        "assigned 198.18.0.1 to default/web",
        "assigned 198.18.0.2 to default/other",
        "wrote status.loadBalancer.ingress 198.18.0.1 of default/web",
        "listening on 198.18.0.1:80 for default/web",
        "default/web:80: no ready endpoint, connections are reset",
        "stopped listening on 198.18.0.1:80 for default/web",
        "released 198.18.0.1 from default/web",
    ] {
        assert!(events.iter().any(|x| x == e), "no event {e:?}");
    }
    assert!(
        events
            .iter()
            .any(|x| x.starts_with("default/web:80: forwarding to 10.244.0.")),
        "no forwarding event"
    );
    assert!(lb.errors().is_empty(), "errors: {:?}", lb.errors());
}

/// `stop` closes every listener and releases every address.
async fn stop_releases(lb: LoadBalancers, lb2: Ipv4Addr) {
    // stop() closes every listener and releases every address.
    lb.stop().await;
    assert!(refused(SocketAddr::from((lb2, 8443))).await);
    assert!(!on_lo(lb2), "stop() releases the addresses");
}

/// A restarted controller keeps the address `other` holds.
async fn restarted(kube: &Kube, cluster: &Cluster, lb2: Ipv4Addr) -> LoadBalancers {
    // A controller started again keeps the address the Service holds (not the lowest free).
    let lb = LoadBalancers::start(kube.clone(), "c", cluster.addrs.lb_base);
    let kept = wait_for(
        "the restarted controller to serve other",
        Duration::from_secs(10),
        || async { lb.addresses().get("default/other").copied() },
    )
    .await;
    assert_eq!(kept, lb2);
    assert!(lb
        .events()
        .contains(&"kept 198.18.0.2 of default/other (from its status)".to_string()));
    wait_for("other's listener", Duration::from_secs(10), || async {
        (!refused(SocketAddr::from((lb2, 8443))).await).then_some(())
    })
    .await;
    lb
}

/// `other` made a ClusterIP Service loses its listener, address and status.
async fn no_longer_a_load_balancer(kube: &Kube, lb: &LoadBalancers, lb2: Ipv4Addr) {
    // A Service that stops being a load balancer loses its listener, address and status.
    kube.apply(
        &objects(&OTHER.replace("type: LoadBalancer", "type: ClusterIP")),
        "default",
    )
    .await
    .unwrap();
    wait_for(
        "other's address and status to go",
        Duration::from_secs(10),
        || async {
            (lb.addresses().is_empty()
                && !on_lo(lb2)
                && status_of(kube, "other").await.is_none()
                && refused(SocketAddr::from((lb2, 8443))).await)
                .then_some(())
        },
    )
    .await;
    let events = lb.events();
    println!(
        "events of the restarted controller:\n  {}",
        events.join("\n  ")
    );
    assert!(events.contains(&"released 198.18.0.2 from default/other".to_string()));
    assert!(lb.errors().is_empty(), "errors: {:?}", lb.errors());
}
