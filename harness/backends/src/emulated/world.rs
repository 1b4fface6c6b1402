//! The emulated world's state: virtual clusters with their object stores and running parts,
//! kubeconfig contexts, and the fleet's memberships and mesh feature.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::envoy::Envoy;
use super::store::Store;
use super::{Emulated, MANAGED_REVISION, PROJECT, PROJECT_NUMBER};
use crate::frontend::{Frontend, ReadyServices};
use crate::BackendError;
use meshmig_core::fleet::{describe_yaml, stand_in_state, StandInState};
use meshmig_core::scenario::ClusterSpec;

/// A fleet membership: its cluster, and since when the mesh manages it automatically.
pub(super) struct Membership {
    pub(super) cluster: String,
    pub(super) automatic_since: Option<Instant>,
}

/// One virtual cluster: its object store and the running parts reconciled from it.
pub(super) struct VirtualCluster {
    pub(super) spec: ClusterSpec,
    pub(super) store: Store,
    /// Control planes installed with istioctl (`default`).
    pub(super) revisions: BTreeSet<String>,
    pub(super) frontends: BTreeMap<String, Frontend>,
    pub(super) gateways: BTreeMap<String, Envoy>,
    pub(super) ready: ReadyServices,
}

/// Everything the emulated backend holds (behind its one lock).
pub(super) struct World {
    pub(super) clusters: BTreeMap<String, VirtualCluster>,
    pub(super) contexts: Vec<String>,
    pub(super) mesh_enabled: bool,
    pub(super) memberships: BTreeMap<String, Membership>,
}

impl Emulated {
    pub(super) fn revisions(&self, w: &World, cluster: &str) -> BTreeSet<String> {
        let mut revs = w
            .clusters
            .get(cluster)
            .map(|c| c.revisions.clone())
            .unwrap_or_default();
        let active = w
            .memberships
            .values()
            .any(|m| m.cluster == cluster && self.membership_state(w, m) == StandInState::Active);
        if w.mesh_enabled && active {
            revs.insert(MANAGED_REVISION.to_string());
        }
        revs
    }

    pub(super) fn cluster_mut<'a>(
        w: &'a mut World,
        name: &str,
        command: &str,
    ) -> Result<&'a mut VirtualCluster, BackendError> {
        w.clusters
            .get_mut(name)
            .ok_or_else(|| BackendError::Procedure {
                command: command.to_string(),
                message: format!("error: context \"{name}\" does not exist"),
            })
    }

    pub(super) async fn stop_cluster(vc: &mut VirtualCluster) {
        for (_, f) in std::mem::take(&mut vc.frontends) {
            f.stop().await;
        }
        for (_, mut e) in std::mem::take(&mut vc.gateways) {
            let _ = e.stop().await;
        }
    }

    /// The managed control plane's state for a membership (see `fleet::stand_in_state`).
    pub(super) fn membership_state(&self, w: &World, m: &Membership) -> StandInState {
        let pool = w
            .clusters
            .get(&m.cluster)
            .is_none_or(|c| c.spec.workload_pool);
        let up = m
            .automatic_since
            .and_then(|t| t.elapsed().checked_sub(self.opts.provisioning));
        stand_in_state(
            m.automatic_since.is_some(),
            meshmig_core::fleet::flapped_ready(
                up.is_some(),
                self.opts.flap.as_ref(),
                up.unwrap_or_default(),
            ),
            pool,
            self.opts.fault.as_ref(),
        )
    }

    pub(super) fn describe(&self, w: &World) -> String {
        let states: Vec<(String, StandInState)> = w
            .memberships
            .iter()
            .map(|(name, m)| (name.clone(), self.membership_state(w, m)))
            .collect();
        describe_yaml(PROJECT, PROJECT_NUMBER, w.mesh_enabled, &states)
    }
}
