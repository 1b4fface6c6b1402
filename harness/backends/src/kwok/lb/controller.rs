//! The reconciling task: addresses assigned and released, statuses written and cleared, and
//! each Service's listeners kept in line with its ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::forward::{sync_listeners, Lb};
use super::service::{
    call, is_ours, key_of, service_resource, status_ip, status_is, str_at, tcp_ports,
};
use super::{lock, pick, LbError, Shared, API_TIMEOUT, PERIOD};
use crate::kube::Kube;
use crate::kwok::pods::{claim_ip, release_ip};

/// The reconciling task.
pub(super) struct Controller {
    pub(super) kube: Kube,
    pub(super) range: Vec<Ipv4Addr>,
    pub(super) lbs: BTreeMap<String, Lb>,
    pub(super) shared: Arc<Shared>,
    pub(super) cancel: CancellationToken,
}

impl Controller {
    pub(super) async fn run(mut self) {
        loop {
            // A reconcile is never cut short (its API calls are bounded): what it claims is
            // always recorded, so the cleanup below releases it.
            self.reconcile().await;
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        for (key, lb) in std::mem::take(&mut self.lbs) {
            self.remove(&key, lb).await;
        }
    }

    async fn reconcile(&mut self) {
        let services =
            match tokio::time::timeout(API_TIMEOUT, self.kube.list("Service", None)).await {
                Ok(Ok(s)) => {
                    self.shared.resolved("list");
                    s
                }
                Ok(Err(source)) => {
                    let e = LbError::List {
                        doing: "listing the cluster's Services".into(),
                        source,
                    };
                    self.shared.error("list", &e);
                    return;
                }
                Err(_) => {
                    let e = LbError::Timeout {
                        doing: "listing the cluster's Services".into(),
                        waited: API_TIMEOUT,
                    };
                    self.shared.error("list", &e);
                    return;
                }
            };
        let wanted: BTreeMap<String, &Value> = services
            .iter()
            .filter(|s| is_ours(s))
            .map(|s| (key_of(s), s))
            .collect();

        // (3) Services gone or no longer load balancers.
        let gone: Vec<String> = self
            .lbs
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(lb) = self.lbs.remove(&key) {
                let ip = lb.ip;
                self.remove(&key, lb).await;
                if let Some(svc) = services.iter().find(|s| key_of(s) == key) {
                    if status_ip(svc) == Some(ip) && svc["metadata"]["deletionTimestamp"].is_null()
                    {
                        self.clear_status(&key, svc).await;
                    }
                }
            }
        }
        // What was recorded about Services no longer served is forgotten (subjects read
        // `what namespace/name[:port]`).
        self.shared.retain(|subject| match subject.split_once(' ') {
            Some((_, rest)) => {
                let key = rest.split(':').next().unwrap_or(rest);
                wanted.contains_key(key) || self.lbs.contains_key(key)
            }
            None => true,
        });

        // (1) Addresses: first those the Services already hold, then new ones.
        for adopt in [true, false] {
            for (key, svc) in &wanted {
                if !self.lbs.contains_key(key) {
                    self.assign(key, svc, adopt);
                }
            }
        }

        // Status, then (2) listeners.
        for (key, svc) in &wanted {
            let Some(lb) = self.lbs.get_mut(key) else {
                continue;
            };
            if !status_is(svc, lb.ip) {
                let subject = format!("status {key}");
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.kube.client(), &lb.namespace, &service_resource());
                let patch = json!({"status": {"loadBalancer": {"ingress": [
                    {"ip": lb.ip.to_string(), "ipMode": "VIP"}
                ]}}});
                match call(
                    format!("writing the status of Service {key}"),
                    api.patch_status(&lb.name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await
                {
                    Ok(_) => {
                        self.shared.resolved(&subject);
                        self.shared.event(format!(
                            "wrote status.loadBalancer.ingress {} of {key}",
                            lb.ip
                        ));
                    }
                    Err(e) => self.shared.error(&subject, &e),
                }
            }
            sync_listeners(
                key,
                lb,
                &tcp_ports(svc),
                &self.kube.client(),
                &self.shared,
                &self.cancel,
            )
            .await;
        }
    }

    /// Gives `svc` an address: with `adopt`, only the one its status already holds (when in
    /// the range and free); otherwise `spec.loadBalancerIP` when in the range and free, or the
    /// lowest free one.
    fn assign(&mut self, key: &str, svc: &Value, adopt: bool) {
        let used: BTreeSet<Ipv4Addr> = self.lbs.values().map(|l| l.ip).collect();
        let free = |ip: &Ipv4Addr| self.range.contains(ip) && !used.contains(ip);
        let (ip, adopted) = if adopt {
            match status_ip(svc).filter(free) {
                Some(ip) => (ip, true),
                None => return,
            }
        } else {
            let requested = svc
                .pointer("/spec/loadBalancerIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .filter(free);
            match requested.or_else(|| pick(&self.range, &used)) {
                Some(ip) => (ip, false),
                None => {
                    let e = LbError::Exhausted {
                        service: key.to_string(),
                        first: self.range.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        last: self.range.last().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        size: self.range.len(),
                    };
                    self.shared.error(&format!("address {key}"), &e);
                    return;
                }
            }
        };
        let subject = format!("address {key}");
        if let Err(source) = claim_ip(key, ip) {
            let e = LbError::Claim {
                service: key.to_string(),
                ip,
                source: Box::new(source),
            };
            self.shared.error(&subject, &e);
            return;
        }
        self.shared.resolved(&subject);
        self.lbs.insert(
            key.to_string(),
            Lb {
                namespace: str_at(svc, "/metadata/namespace").to_string(),
                name: str_at(svc, "/metadata/name").to_string(),
                ip,
                listeners: BTreeMap::new(),
            },
        );
        lock(&self.shared.addresses).insert(key.to_string(), ip);
        self.shared.event(if adopted {
            format!("kept {ip} of {key} (from its status)")
        } else {
            format!("assigned {ip} to {key}")
        });
    }

    /// Stops `lb`'s listeners and releases its address.
    async fn remove(&self, key: &str, lb: Lb) {
        for (port, l) in lb.listeners {
            l.stop().await;
            self.shared
                .event(format!("stopped listening on {}:{port} for {key}", lb.ip));
        }
        release_ip(lb.ip);
        lock(&self.shared.addresses).remove(key);
        self.shared.event(format!("released {} from {key}", lb.ip));
    }

    /// Clears the load-balancer status of a Service that is no longer a load balancer.
    async fn clear_status(&self, key: &str, svc: &Value) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.client(),
            str_at(svc, "/metadata/namespace"),
            &service_resource(),
        );
        let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
        let subject = format!("clear {key}");
        match call(
            format!("clearing the load-balancer status of Service {key}"),
            api.patch_status(
                str_at(svc, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await
        {
            Ok(_) => {
                self.shared.resolved(&subject);
                self.shared
                    .event(format!("cleared status.loadBalancer of {key}"));
            }
            Err(e) => self.shared.error(&subject, &e),
        }
    }
}
