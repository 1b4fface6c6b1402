//! The `gke-rehearsal` backend as the registry knows it: the GKE backend's code with the real
//! gcloud against the local Google Cloud stand-in, whose clusters are kwok clusters. Its
//! preflight (the kwok namespace, then gcloud's environment), doctor, plan and start.

use std::sync::Arc;

use async_trait::async_trait;

use crate::entry::{doctor_exit, BackendEntry, Capabilities, EntryError};
use crate::gke::entry as gke;
use crate::gke::Gke;
use crate::kwok::entry as kwok;
use crate::options::BackendOptions;
use crate::preflight::PreflightError;
use crate::{Backend, BackendError, Companion};
use meshmig_core::scenario::Scenario;
use meshmig_core::tools::{on_path, Tools};

/// The GKE rehearsal.
pub struct Entry;

/// Its registry entry.
pub static ENTRY: Entry = Entry;

#[async_trait]
impl BackendEntry for Entry {
    fn name(&self) -> &'static str {
        "gke-rehearsal"
    }

    fn about(&self) -> &'static str {
        "The gke backend with the real gcloud against a local Google Cloud stand-in whose clusters are kwok clusters"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Its clusters are kwok clusters in this process's namespace; a rehearsal leaves
            // nothing in a project for gc.
            gc: false,
            in_namespace: true,
            ..gke::CAPABILITIES
        }
    }

    fn preflight(&self, opts: &mut BackendOptions) -> Result<Option<String>, PreflightError> {
        kwok::enter_namespace()?;
        if opts.rehearsal.is_none() {
            let prepared = super::prepare().map_err(|e| PreflightError::Prepare {
                backend: "gke-rehearsal",
                detail: meshmig_core::error_chain(&e),
            })?;
            opts.rehearsal = Some(prepared);
        }
        Ok(None)
    }

    fn conformance_options(&self) -> Result<BackendOptions, String> {
        Ok(BackendOptions {
            project: Some("demo".into()),
            ..BackendOptions::default()
        })
    }

    async fn doctor(&self, _: &BackendOptions) -> i32 {
        let kwok = kwok::doctor(&Tools::from_env());
        let mut missing = 0;
        for tool in ["gcloud", "gke-gcloud-auth-plugin", "kubectl"] {
            match on_path(tool) {
                Some(p) => println!("ok      {tool}: {}", p.display()),
                None => {
                    missing += 1;
                    println!("MISSING {tool} (the rehearsal runs the real Google Cloud CLI; see docs/gke.md)");
                }
            }
        }
        if kwok == meshmig_core::exit::PASS {
            doctor_exit(missing)
        } else {
            kwok
        }
    }

    fn plan(&self, s: &Scenario, opts: &BackendOptions) -> Result<String, EntryError> {
        gke::ENTRY.plan(s, opts)
    }

    async fn start(
        &self,
        s: &Scenario,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        let mut cfg = gke::start_config(opts, true).await?;
        let Some(prepared) = &opts.rehearsal else {
            return Err(BackendError::infra(
                "starting the rehearsal",
                "its preflight did not run (it prepares gcloud's environment before the process has threads)",
            ));
        };
        let kwok = kwok::config()?;
        if opts.istio_version.is_none() {
            cfg.istioctl = kwok
                .tools
                .binary("istioctl")
                .map_err(|e| BackendError::infra("finding istioctl", e))?
                .display()
                .to_string();
        }
        cfg.ready_timeout = kwok.ready_timeout;
        cfg.witnesses = Some(super::witnesses(&kwok));
        let r = super::Rehearsal::start(prepared, kwok, s, &cfg.run_id)
            .await
            .map_err(|e| {
                BackendError::infra("starting the rehearsal", meshmig_core::error_chain(&e))
            })?;
        let r: Arc<dyn Companion> = Arc::new(r);
        match Gke::start(cfg, s).await {
            Ok(g) => Ok(Arc::new(g.with_companion(r))),
            Err(e) => {
                r.stop().await;
                Err(e)
            }
        }
    }
}
