//! The kwok backend's machinery: real control planes on this machine.
//!
//! - [`cluster`]: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as local
//!   processes, one set per cluster, inside the run's network namespace ([`meshmig_core::netns`]);
//! - [`pods`]: what stands in for pods' containers: the real istiod bound to its pod's IP, a real
//!   Envoy per gateway pod in a network namespace of its own, pod addresses for stand-ins;
//! - [`proc`]: child processes with logs, stopped and waited for explicitly.
//!
//! Every Kubernetes operation on these clusters goes through the same kube-rs layer
//! ([`crate::kube`]) as on kind and GKE.

pub mod backend;
pub mod cluster;
pub mod entry;
pub mod lb;
pub mod pods;
pub mod proc;
pub mod provider;
pub mod stand_ins;
pub mod witness;

/// The kwok backend's binaries, as `meshmig tools install` builds them.
pub const KWOK_BINARIES: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "istioctl",
    "pilot-discovery",
];
