//! A real Envoy takes configuration changes while serving, without a restart and without failing
//! a request: traffic moves from one frontend to another and to a 50/50 split under constant load.

// Linux only: these bind loopback addresses beyond 127.0.0.1 (127.RUN.x.y), which Linux routes
// to `lo` by default and macOS does not (its lo0 has 127.0.0.1 alone).
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use meshmig::backend::emulated::envoy::Envoy;
use meshmig::backend::emulated::xds::{Cluster, Listener, Route, Snapshot, VirtualHost};
use meshmig::backend::frontend::{Frontend, Identity, HOME_PAGE_DEPENDENCIES};
use meshmig::scenario::FooterVariant;
use meshmig::tools::find_envoy;

fn snapshot(listener: SocketAddr, a: SocketAddr, b: SocketAddr, weights: (u32, u32)) -> Snapshot {
    let mut clusters = vec![];
    let mut routes = vec![];
    if weights.0 > 0 {
        clusters.push(Cluster {
            name: "outbound|80||a".into(),
            endpoints: vec![a],
        });
        routes.push(("outbound|80||a".to_string(), weights.0));
    }
    if weights.1 > 0 {
        clusters.push(Cluster {
            name: "outbound|80||b".into(),
            endpoints: vec![b],
        });
        routes.push(("outbound|80||b".to_string(), weights.1));
    }
    Snapshot {
        listeners: vec![Listener {
            addr: listener,
            port: 8081,
        }],
        routes: BTreeMap::from([(
            8081,
            vec![VirtualHost {
                name: "*:8081".into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    path: ("prefix", "/".into()),
                    clusters: routes,
                    ..Default::default()
                }],
            }],
        )]),
        clusters,
        warnings: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_under_load_fail_no_request() {
    let run: u8 = 64 + (std::process::id() % 180) as u8;
    let ip = |last: u8| IpAddr::V4(Ipv4Addr::new(127, run, 250, last));
    let ready = Arc::new(RwLock::new(
        HOME_PAGE_DEPENDENCIES
            .iter()
            .map(|d| ("ns".to_string(), d.to_string()))
            .collect::<BTreeSet<_>>(),
    ));
    let id = |pod: &str| Identity {
        cluster: "c".into(),
        zone: "z".into(),
        pod: pod.into(),
        namespace: "ns".into(),
        variant: FooterVariant::PodOnly,
    };
    let (a, b) = (SocketAddr::new(ip(2), 8080), SocketAddr::new(ip(3), 8080));
    let fa = Frontend::start(a, id("frontend-a"), ready.clone())
        .await
        .unwrap();
    let fb = Frontend::start(b, id("frontend-b"), ready.clone())
        .await
        .unwrap();
    let listener = SocketAddr::new(ip(1), 8081);
    let scratch = tempfile::tempdir().unwrap();
    let mut envoy = Envoy::start(
        &find_envoy().unwrap(),
        "test/gw",
        scratch.path(),
        SocketAddr::new(ip(1), 15000),
        &meshmig::backend::exec::Children::default(),
    )
    .await
    .unwrap();
    envoy
        .apply(&snapshot(listener, a, b, (100, 0)))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, seen) = (stop.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let key = match client.get(format!("http://{listener}/")).send().await {
                    Ok(r) if r.status().is_success() => {
                        let body = r.text().await.unwrap_or_default();
                        meshmig::footer::parse(&body)
                            .ok()
                            .and_then(|f| f.pod)
                            .unwrap_or_else(|| "no pod".into())
                    }
                    Ok(r) => format!("status {}", r.status().as_u16()),
                    Err(e) => format!("error {e}"),
                };
                *seen.lock().unwrap().entry(key).or_default() += 1;
            }
        }));
    }
    let phase = |weights| snapshot(listener, a, b, weights);
    for w in [(0, 100), (50, 50), (100, 0), (0, 100)] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        envoy.apply(&phase(w)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before: BTreeMap<String, u64> = seen.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_last: BTreeMap<String, u64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let all = seen.lock().unwrap().clone();
    envoy.stop().await.unwrap();
    fa.stop().await;
    fb.stop().await;

    let failures: Vec<(&String, &u64)> = all
        .iter()
        .filter(|(k, _)| !k.starts_with("frontend-"))
        .collect();
    assert!(
        failures.is_empty(),
        "requests failed during updates: {failures:?} of {all:?}"
    );
    assert!(
        all.get("frontend-a").copied().unwrap_or(0) > 50
            && all.get("frontend-b").copied().unwrap_or(0) > 50,
        "{all:?}"
    );
    assert_eq!(
        after_last.keys().collect::<Vec<_>>(),
        vec!["frontend-b"],
        "{after_last:?}"
    );
}

#[tokio::test]
async fn the_home_page_answers_500_while_a_service_it_calls_has_no_ready_endpoint() {
    let run: u8 = 64 + (std::process::id() % 180) as u8;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, run, 251, 2)), 8080);
    let ready: Arc<RwLock<BTreeSet<(String, String)>>> = Arc::default();
    let id = Identity {
        cluster: "cluster-with-csm".into(),
        zone: "us-central1-a".into(),
        pod: "frontend-abc-12345".into(),
        namespace: "ns".into(),
        variant: FooterVariant::Gke,
    };
    let f = Frontend::start(addr, id, ready.clone()).await.unwrap();
    {
        let mut r = ready.write().unwrap();
        for d in HOME_PAGE_DEPENDENCIES.iter().filter(|d| **d != "adservice") {
            r.insert(("ns".to_string(), d.to_string()));
        }
    }
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Uh, oh!") && body.contains("adservice"),
        "{body}"
    );
    assert_eq!(
        meshmig::footer::parse(&body).unwrap().cluster.as_deref(),
        Some("cluster-with-csm")
    );

    ready
        .write()
        .unwrap()
        .insert(("ns".to_string(), "adservice".to_string()));
    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("shop_session-id="));
    f.stop().await;
}
