//! The `kwok` backend as the registry knows it: real control planes on this machine in a
//! network namespace of the process's own. Its preflight, doctor (also `meshmig tools list`),
//! plan and start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::backend::{Kwok, KwokConfig};
use super::KWOK_BINARIES;
use crate::entry::{doctor_exit, BackendEntry, Capabilities, EntryError};
use crate::options::BackendOptions;
use crate::preflight::{self, Host, PreflightError};
use crate::{Backend, BackendError};
use meshmig_core::scenario::Scenario;
use meshmig_core::tools::{Component, Tools};

/// The kwok backend.
pub struct Entry;

/// Its registry entry.
pub static ENTRY: Entry = Entry;

/// How long a kwok run waits for Deployments and load balancers.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Checks what a kwok cluster needs (Envoy, the real components built, a network namespace)
/// and enters the namespace, unless this process is already in one. The GKE rehearsal's
/// clusters are kwok clusters: its preflight runs this too.
pub fn enter_namespace() -> Result<(), PreflightError> {
    if meshmig_core::netns::inside() {
        return Ok(());
    }
    let tools = Tools::from_env();
    preflight::kwok(&Host, &KWOK_BINARIES, &|b| {
        tools.binary(b).map_err(|e| meshmig_core::error_chain(&e))
    })?;
    meshmig_core::netns::enter()
        .map(drop)
        .map_err(|e| PreflightError::Namespace {
            backend: "kwok",
            detail: meshmig_core::error_chain(&e),
            fix: preflight::USERNS_FIX.into(),
        })
}

/// The configuration of kwok clusters: the real components, Envoy, the default wait.
pub fn config() -> Result<KwokConfig, BackendError> {
    Ok(KwokConfig {
        tools: Tools::from_env(),
        envoy: meshmig_core::tools::find_envoy()?,
        ready_timeout: READY_TIMEOUT,
    })
}

#[async_trait]
impl BackendEntry for Entry {
    fn name(&self) -> &'static str {
        "kwok"
    }

    fn about(&self) -> &'static str {
        "Real API servers, istioctl, istiod and Envoy on this machine; kwok's fake kubelets"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            data_plane_faults: true,
            fleet_faults: true,
            keep_in_process: true,
            in_namespace: true,
            one_at_a_time: true,
            real_manifests: true,
            ..Capabilities::default()
        }
    }

    fn preflight(&self, _: &mut BackendOptions) -> Result<Option<String>, PreflightError> {
        enter_namespace().map(|()| None)
    }

    fn conformance_options(&self) -> Result<BackendOptions, String> {
        let tools = Tools::from_env();
        for b in KWOK_BINARIES {
            tools
                .binary(b)
                .map_err(|e| format!("the kwok trials run on the real components: {e}"))?;
        }
        Ok(BackendOptions::default())
    }

    async fn doctor(&self, _: &BackendOptions) -> i32 {
        doctor(&Tools::from_env())
    }

    fn plan(&self, s: &Scenario, _: &BackendOptions) -> Result<String, EntryError> {
        Ok(super::backend::plan(s, &Tools::from_env()))
    }

    async fn start(
        &self,
        s: &Scenario,
        _: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(Arc::new(Kwok::start(config()?, s).await?))
    }

    async fn release_kept(&self) -> Vec<String> {
        super::backend::stop_kept().await
    }
}

/// What the kwok backend needs: each real component built, with its version and size, the Go
/// toolchain, Envoy, and a network namespace (`meshmig doctor --backend kwok`, `meshmig tools
/// list`).
pub fn doctor(tools: &Tools) -> i32 {
    let mut missing = 0;
    match meshmig_core::tools::go_version() {
        Ok(v) if !v.is_empty() => println!("ok      go: {v}"),
        _ => println!("note    go: not found (needed only to build the components below)"),
    }
    println!("        tools folder: {}", tools.dir.display());
    for c in Component::ALL {
        let version = c.version(&tools.versions);
        match tools.built(c) {
            Some(b) => {
                println!(
                    "ok      {} {version} ({}): {}",
                    c.name(),
                    b.module,
                    b.sizes()
                );
            }
            None => {
                missing += 1;
                println!(
                    "MISSING {} {version}: build it with: meshmig tools install --only {}",
                    c.name(),
                    c.name()
                );
            }
        }
    }
    match meshmig_core::tools::find_envoy() {
        Ok(p) => println!("ok      envoy: {}", p.display()),
        Err(e) => {
            missing += 1;
            println!("MISSING {}", meshmig_core::error_chain(&e));
        }
    }
    match meshmig_core::netns::probe() {
        Ok(how) => println!("ok      network namespace: {how}"),
        Err(e) => {
            missing += 1;
            println!(
                "MISSING network namespace: {}",
                meshmig_core::error_chain(&e)
            );
        }
    }
    doctor_exit(missing)
}
