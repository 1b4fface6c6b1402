//! Cloud DNS, `dns/v1`: managed zones, record sets (the `rrsets` methods gcloud 528's
//! `record-sets create / update / delete` call) and changes.
//!
//! Paths from `googlecloudsdk/generated_clients/apis/dns/v1/dns_v1_client.py`
//! (`ManagedZonesService` Create/Get/List/Delete `projects/{project}/managedZones[/{managedZone}]`,
//! `ResourceRecordSetsService` Create/Get/List/Patch/Delete
//! `projects/{project}/managedZones/{managedZone}/rrsets[/{name}/{type}]`, `ChangesService`
//! Create/Get/List `.../changes[/{changeId}]`); messages from `dns_v1_messages.py`
//! (`ManagedZone`: `name`, `dnsName`, `description`, `id`, `visibility`, `nameServers`;
//! `ResourceRecordSet`: `name`, `type`, `ttl`, `rrdatas`; `Change`: `additions`, `deletions`,
//! `id`, `status`, `startTime`). As for compute, the override is the whole base, so no version
//! segment follows the stand-in's `/dns/` prefix.

use std::collections::BTreeMap;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_rfc3339, ApiError, Req, Shared};

/// Zones and their records.
#[derive(Default)]
pub(crate) struct Store {
    /// `(project, zone)` → the `ManagedZone`.
    zones: BTreeMap<(String, String), Value>,
    /// `(project, zone)` → `(name, type)` → the `ResourceRecordSet`.
    records: BTreeMap<(String, String), BTreeMap<(String, String), Value>>,
    /// Changes applied, per zone, in order.
    changes: BTreeMap<(String, String), Vec<Value>>,
}

impl Store {
    /// Adds a zone (as `managed-zones create` would).
    pub fn add_zone(&mut self, project: &str, zone: &str, dns_name: &str) {
        let dns_name = format!("{}.", dns_name.trim_end_matches('.'));
        let id = self.zones.len() + 1;
        self.zones.insert(
            (project.into(), zone.into()),
            json!({
                "kind": "dns#managedZone",
                "name": zone,
                "dnsName": dns_name,
                "description": "",
                "id": id.to_string(),
                "visibility": "public",
                "creationTime": now_rfc3339(),
                "nameServers": ["ns-cloud-a1.googledomains.com.", "ns-cloud-a2.googledomains.com."],
            }),
        );
        let recs = self
            .records
            .entry((project.into(), zone.into()))
            .or_default();
        // A new zone holds its SOA and NS records, as Cloud DNS creates them.
        recs.insert(
            (dns_name.clone(), "NS".into()),
            json!({"kind": "dns#resourceRecordSet", "name": dns_name, "type": "NS", "ttl": 21600,
                   "rrdatas": ["ns-cloud-a1.googledomains.com.", "ns-cloud-a2.googledomains.com."]}),
        );
        recs.insert(
            (dns_name.clone(), "SOA".into()),
            json!({"kind": "dns#resourceRecordSet", "name": dns_name, "type": "SOA", "ttl": 21600,
                   "rrdatas": ["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"]}),
        );
    }

    /// The zone's record sets.
    pub fn records(&self, project: &str, zone: &str) -> Vec<Value> {
        self.records
            .get(&(project.to_string(), zone.to_string()))
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Cloud DNS' 404 for a zone that does not exist: `The 'parameters.managedZone' resource named
/// 'xxx-com' does not exist.` (gcloud's `record-sets create`, quoted in
/// stacklok/sigstore-the-hard-way#10).
fn zone_not_found(zone: &str) -> ApiError {
    ApiError::not_found(format!(
        "The 'parameters.managedZone' resource named '{zone}' does not exist."
    ))
}

fn record_not_found(name: &str, typ: &str) -> ApiError {
    ApiError::not_found(format!(
        "The 'parameters.name' resource named '{name}' ({typ}) does not exist."
    ))
}

/// `ResourceRecordSet` as sent: `name`, `type`, `ttl`, `rrdatas`.
#[derive(Deserialize)]
struct RecordBody {
    name: String,
    #[serde(rename = "type")]
    typ: String,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    rrdatas: Vec<String>,
}

impl RecordBody {
    fn to_json(&self) -> Value {
        json!({"kind": "dns#resourceRecordSet", "name": self.name, "type": self.typ,
               "ttl": self.ttl.unwrap_or(300), "rrdatas": self.rrdatas})
    }
}

/// `Change` as sent: record sets to add and to delete.
#[derive(Deserialize)]
struct ChangeBody {
    #[serde(default)]
    additions: Vec<RecordBody>,
    #[serde(default)]
    deletions: Vec<RecordBody>,
}

/// `ManagedZone` as sent to create one.
#[derive(Deserialize)]
struct ZoneBody {
    name: String,
    #[serde(rename = "dnsName")]
    dns_name: String,
}

/// Serves `projects/P/managedZones...`.
pub(crate) fn route(shared: &Shared, req: &Req<'_>) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    let mut st = shared.lock();
    let dns = &mut st.dns;
    match req.segs.as_slice() {
        ["projects", p, "managedZones"] if m == Method::GET => Some(Ok(list_zones(dns, p))),
        ["projects", p, "managedZones"] if m == Method::POST => Some(create_zone(dns, req, p)),
        ["projects", p, "managedZones", z] if m == Method::GET => Some(
            dns.zones
                .get(&key(p, z))
                .cloned()
                .ok_or_else(|| zone_not_found(z)),
        ),
        ["projects", p, "managedZones", z] if m == Method::DELETE => Some(delete_zone(dns, p, z)),
        ["projects", p, "managedZones", z, "rrsets"] => record_sets(dns, req, p, z),
        ["projects", p, "managedZones", z, "rrsets", name, typ] => {
            record_set(dns, req, p, z, name, typ)
        }
        ["projects", p, "managedZones", z, "changes"] if m == Method::POST => {
            Some(create_change(dns, req, p, z))
        }
        ["projects", p, "managedZones", z, "changes", id] if m == Method::GET => Some(
            dns.changes
                .get(&key(p, z))
                .and_then(|cs| cs.iter().find(|c| c["id"] == *id).cloned())
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "The 'parameters.changeId' resource named '{id}' does not exist."
                    ))
                }),
        ),
        _ => None,
    }
}

/// The key of zone `z` of project `p`.
fn key(p: &str, z: &str) -> (String, String) {
    (p.to_string(), z.to_string())
}

/// `managedZones.list`.
fn list_zones(dns: &Store, p: &str) -> Value {
    let zones: Vec<Value> = dns
        .zones
        .iter()
        .filter(|((pp, _), _)| pp == p)
        .map(|(_, z)| z.clone())
        .collect();
    json!({"kind": "dns#managedZonesListResponse", "managedZones": zones})
}

/// `managedZones.create`.
fn create_zone(dns: &mut Store, req: &Req<'_>, p: &str) -> Result<Value, ApiError> {
    match req.json::<ZoneBody>() {
        Ok(z) if dns.zones.contains_key(&key(p, &z.name)) => {
            Err(ApiError::already_exists(format!(
                "The resource 'entity.managedZone' named '{}' already exists",
                z.name
            )))
        }
        Ok(z) => {
            dns.add_zone(p, &z.name, &z.dns_name);
            Ok(dns.zones[&key(p, &z.name)].clone())
        }
        Err(e) => Err(e),
    }
}

/// `managedZones.delete`: the zone and its records.
fn delete_zone(dns: &mut Store, p: &str, z: &str) -> Result<Value, ApiError> {
    if dns.zones.remove(&key(p, z)).is_none() {
        Err(zone_not_found(z))
    } else {
        dns.records.remove(&key(p, z));
        Ok(json!({}))
    }
}

/// `rrsets.list` (by name and type when asked) and `rrsets.create`; another method is not
/// served (once the zone is known to exist).
fn record_sets(
    dns: &mut Store,
    req: &Req<'_>,
    p: &str,
    z: &str,
) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    if !dns.zones.contains_key(&key(p, z)) {
        return Some(Err(zone_not_found(z)));
    }
    let recs = dns.records.entry(key(p, z)).or_default();
    Some(if m == Method::GET {
        let name = req.query.get("name");
        let typ = req.query.get("type");
        let list: Vec<Value> = recs
            .iter()
            .filter(|((n, t), _)| name.is_none_or(|x| x == n) && typ.is_none_or(|x| x == t))
            .map(|(_, v)| v.clone())
            .collect();
        Ok(json!({"kind": "dns#resourceRecordSetsListResponse", "rrsets": list}))
    } else if m == Method::POST {
        match req.json::<RecordBody>() {
            Ok(r) if recs.contains_key(&(r.name.clone(), r.typ.clone())) => {
                Err(ApiError::already_exists(format!(
                    "The resource 'entity.rrset' named '{} ({})' already exists",
                    r.name, r.typ
                )))
            }
            Ok(r) => {
                let v = r.to_json();
                recs.insert((r.name, r.typ), v.clone());
                Ok(v)
            }
            Err(e) => Err(e),
        }
    } else {
        return None;
    })
}

/// `rrsets.get`, `rrsets.patch` and `rrsets.delete` of record set `name` `typ`; another method
/// is not served (once the zone is known to exist).
fn record_set(
    dns: &mut Store,
    req: &Req<'_>,
    p: &str,
    z: &str,
    name: &str,
    typ: &str,
) -> Option<Result<Value, ApiError>> {
    let m = req.method;
    if !dns.zones.contains_key(&key(p, z)) {
        return Some(Err(zone_not_found(z)));
    }
    let recs = dns.records.entry(key(p, z)).or_default();
    let k = (name.to_string(), typ.to_string());
    Some(if m == Method::GET {
        recs.get(&k)
            .cloned()
            .ok_or_else(|| record_not_found(name, typ))
    } else if m == Method::PATCH {
        match req.json::<RecordBody>() {
            Ok(_) if !recs.contains_key(&k) => Err(record_not_found(name, typ)),
            Ok(r) => {
                let v = r.to_json();
                recs.remove(&k);
                recs.insert((r.name, r.typ), v.clone());
                Ok(v)
            }
            Err(e) => Err(e),
        }
    } else if m == Method::DELETE {
        match recs.remove(&k) {
            // ResourceRecordSetsDeleteResponse: empty.
            Some(_) => Ok(json!({})),
            None => Err(record_not_found(name, typ)),
        }
    } else {
        return None;
    })
}

/// `changes.create`: deletions (each must match its record exactly), then additions, recorded
/// as a change that is done at once.
fn create_change(dns: &mut Store, req: &Req<'_>, p: &str, z: &str) -> Result<Value, ApiError> {
    if !dns.zones.contains_key(&key(p, z)) {
        return Err(zone_not_found(z));
    }
    let c: ChangeBody = req.json()?;
    let recs = dns.records.entry(key(p, z)).or_default();
    // A deletion must match the record exactly (Cloud DNS' change semantics).
    for d in &c.deletions {
        if recs.get(&(d.name.clone(), d.typ.clone())) != Some(&d.to_json()) {
            return Err(ApiError {
                code: 412,
                status: "FAILED_PRECONDITION",
                message: format!(
                    "The resource 'entity.change.deletions[0]' named '{} ({})' does not exist.",
                    d.name, d.typ
                ),
            });
        }
    }
    for d in &c.deletions {
        recs.remove(&(d.name.clone(), d.typ.clone()));
    }
    for a in &c.additions {
        recs.insert((a.name.clone(), a.typ.clone()), a.to_json());
    }
    let changes = dns.changes.entry(key(p, z)).or_default();
    let change = json!({
        "kind": "dns#change",
        "id": (changes.len() + 1).to_string(),
        "status": "done",
        "startTime": now_rfc3339(),
        "additions": c.additions.iter().map(RecordBody::to_json).collect::<Vec<_>>(),
        "deletions": c.deletions.iter().map(RecordBody::to_json).collect::<Vec<_>>(),
    });
    changes.push(change.clone());
    Ok(change)
}
