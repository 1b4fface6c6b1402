//! Compute Engine listings and Cloud DNS record sets through the real gcloud: what a load
//! balancer leaves behind, and the DNS cut-over of step G.

use std::path::Path;

use meshmig::gcp_stand_in::GcpStandIn;

use super::common::{gcloud, start};

/// Compute lists (what a LoadBalancer Service leaves behind, empty or seeded) and the DNS
/// cut-over of step G through Cloud DNS record sets, with Cloud DNS' 404 for a missing zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_lists_and_dns_record_sets() {
    let (s, dir) = start().await;
    let d = dir.path();

    compute_lists(&s, d).await;
    dns_without_zone(&s, d).await;
    dns_create_and_update(&s, d).await;
    dns_list_and_delete(&s, d).await;
    s.stop().await;
}

/// The Compute Engine listings of what a load balancer leaves: one seeded, the others empty.
async fn compute_lists(s: &GcpStandIn, d: &Path) {
    s.seed_compute(
        "forwardingRules",
        vec![serde_json::json!({"name": "a3f0c1d2e3b4", "IPAddress": "203.0.113.7", "IPProtocol": "TCP",
            "portRange": "80-80", "region": "https://compute.googleapis.com/compute/v1/projects/demo/regions/us-central1",
            "description": "{\"kubernetes.io/service-name\":\"asm-ingress/asm-ingressgateway\"}"})],
    );
    let o = gcloud(
        s,
        d,
        &[
            "compute",
            "forwarding-rules",
            "list",
            "--project=demo",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v[0]["name"], "a3f0c1d2e3b4");
    assert_eq!(v[0]["IPAddress"], "203.0.113.7");
    for what in [
        "target-pools",
        "backend-services",
        "health-checks",
        "http-health-checks",
        "firewall-rules",
    ] {
        let o = gcloud(
            s,
            d,
            &["compute", what, "list", "--project=demo", "--format=json"],
        )
        .await;
        assert_eq!((o.code, o.stdout.trim()), (0, "[]"), "{what}: {}", o.stderr);
        assert!(o.stderr.is_empty(), "{what}: {}", o.stderr);
    }
}

/// A record set created in a zone that does not exist: Cloud DNS' 404.
async fn dns_without_zone(s: &GcpStandIn, d: &Path) {
    // G through Cloud DNS: create, lower the TTL / move the address, delete.
    let o = gcloud(
        s,
        d,
        &[
            "dns",
            "record-sets",
            "create",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=300",
            "--rrdatas=203.0.113.7",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("ERROR: (gcloud.dns.record-sets.create) NOT_FOUND: The 'parameters.managedZone' resource named 'shop' does not exist."),
        "{}",
        o.stderr
    );
}

/// The zone added, the A record created, then its TTL lowered and its address moved.
async fn dns_create_and_update(s: &GcpStandIn, d: &Path) {
    s.add_dns_zone("demo", "shop", "example.com");
    let o = gcloud(
        s,
        d,
        &[
            "dns",
            "record-sets",
            "create",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=300",
            "--rrdatas=203.0.113.7",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["shop.example.com.", "A", "300", "203.0.113.7"]),
        "{}",
        o.stdout
    );
    let o = gcloud(
        s,
        d,
        &[
            "dns",
            "record-sets",
            "update",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--ttl=30",
            "--rrdatas=203.0.113.8",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let a: Vec<_> = s
        .dns_records("demo", "shop")
        .into_iter()
        .filter(|r| r["type"] == "A")
        .collect();
    assert_eq!(
        a,
        vec![
            serde_json::json!({"kind": "dns#resourceRecordSet", "name": "shop.example.com.", "type": "A", "ttl": 30, "rrdatas": ["203.0.113.8"]})
        ]
    );
}

/// The zone's record sets listed, then the A record deleted.
async fn dns_list_and_delete(s: &GcpStandIn, d: &Path) {
    let o = gcloud(
        s,
        d,
        &[
            "dns",
            "record-sets",
            "list",
            "--zone=shop",
            "--project=demo",
            "--format=json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON list");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    let o = gcloud(
        s,
        d,
        &[
            "dns",
            "record-sets",
            "delete",
            "shop.example.com.",
            "--zone=shop",
            "--type=A",
            "--project=demo",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.starts_with("Deleted [http://127.0.0.1:")
            && o.stderr
                .trim_end()
                .ends_with("/dns/projects/demo/managedZones/shop/rrsets/shop.example.com./A]."),
        "{}",
        o.stderr
    );
    assert!(s
        .dns_records("demo", "shop")
        .iter()
        .all(|r| r["type"] != "A"));
}
