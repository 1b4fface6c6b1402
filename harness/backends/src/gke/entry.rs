//! The `gke` backend as the registry knows it: real GKE clusters and managed Cloud Service Mesh
//! in a Google Cloud project. Its configuration from the options (shared with the rehearsal,
//! which runs this backend's code against a stand-in), doctor, plan, start and gc.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Commands, Gke, GkeConfig};
use crate::entry::{doctor_exit, BackendEntry, Capabilities, EntryError, GcReport};
use crate::exec::{Cmd, Exec, Process};
use crate::istioctl::IstioctlSource;
use crate::options::BackendOptions;
use crate::{Backend, BackendError};
use meshmig_core::scenario::Scenario;
use meshmig_core::tools::{on_path, MissingTool};

/// The GKE backend.
pub struct Entry;

/// Its registry entry.
pub static ENTRY: Entry = Entry;

/// The project: `--project`, else `MESHMIG_GKE_PROJECT`.
fn project(opts: &BackendOptions) -> Option<String> {
    opts.project
        .clone()
        .or_else(|| std::env::var("MESHMIG_GKE_PROJECT").ok())
}

/// The GKE configuration the options give; the project is required.
pub fn config(opts: &BackendOptions) -> Result<GkeConfig, BackendError> {
    let project = project(opts).ok_or_else(|| {
        BackendError::MissingTool(MissingTool {
            doing: "choosing the Google Cloud project".into(),
            tool: "a project".into(),
            hint: "pass --project ID or set MESHMIG_GKE_PROJECT".into(),
        })
    })?;
    let mut cfg = GkeConfig::new(&project);
    cfg.zone = opts.zone.clone();
    cfg.dns_zone = opts.dns_zone.clone();
    if let Some(t) = opts.mesh_timeout {
        cfg.mesh_timeout = t;
    }
    if let Some(r) = &opts.run_id {
        cfg.run_id = r.clone();
    }
    Ok(cfg)
}

/// The configuration for a start: [`config`], with istioctl fetched when `--istio-version`
/// pins it, after checking that the commands the run uses are on PATH (istioctl only when
/// neither pinned nor `istioctl_elsewhere`: the rehearsal runs the one `tools install` built).
pub async fn start_config(
    opts: &BackendOptions,
    istioctl_elsewhere: bool,
) -> Result<GkeConfig, BackendError> {
    let mut cfg = config(opts)?;
    if let Some(v) = &opts.istio_version {
        let p = crate::istioctl::resolve(&IstioctlSource::Version(v.clone()))
            .await
            .map_err(|e| BackendError::infra("fetching istioctl", meshmig_core::error_chain(&e)))?;
        cfg.istioctl = p.display().to_string();
    }
    let needed: &[&str] = if opts.istio_version.is_some() || istioctl_elsewhere {
        &["gcloud", "kubectl"]
    } else {
        &["gcloud", "kubectl", "istioctl"]
    };
    for tool in needed.iter().copied() {
        if on_path(tool).is_none() {
            return Err(BackendError::MissingTool(MissingTool {
                doing: "starting the gke backend".into(),
                tool: tool.into(),
                hint: "see `meshmig doctor --backend gke`".into(),
            }));
        }
    }
    Ok(cfg)
}

/// The GKE backend's capabilities (the rehearsal runs the same code, so it has them too): no
/// stand-in data plane or fleet to inject faults into; one project's mesh feature per run.
pub const CAPABILITIES: Capabilities = Capabilities {
    data_plane_faults: false,
    fleet_faults: false,
    keep_in_process: false,
    gc: true,
    in_namespace: false,
    one_at_a_time: true,
    real_manifests: true,
    host_loopback_range: false,
};

#[async_trait]
impl BackendEntry for Entry {
    fn name(&self) -> &'static str {
        "gke"
    }

    fn about(&self) -> &'static str {
        "Real GKE clusters and managed Cloud Service Mesh in a Google Cloud project"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn conformance_options(&self) -> Result<BackendOptions, String> {
        let project = std::env::var("MESHMIG_GKE_PROJECT")
            .map_err(|_| "the gke trials run on real Google Cloud: set MESHMIG_GKE_PROJECT to a project ID (gcloud authenticated, kubectl and istioctl on PATH)".to_string())?;
        Ok(BackendOptions {
            project: Some(project),
            istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
            ..BackendOptions::default()
        })
    }

    async fn doctor(&self, opts: &BackendOptions) -> i32 {
        doctor(project(opts)).await
    }

    fn plan(&self, s: &Scenario, opts: &BackendOptions) -> Result<String, EntryError> {
        Ok(super::plan(&config(opts)?, s))
    }

    async fn start(
        &self,
        s: &Scenario,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        let cfg = start_config(opts, false).await?;
        Ok(Arc::new(Gke::start(cfg, s).await?))
    }

    async fn gc(
        &self,
        older_than: Duration,
        opts: &BackendOptions,
    ) -> Result<GcReport, EntryError> {
        let Some(project) = project(opts) else {
            return Err(EntryError::Input {
                what: "gc needs --project ID or MESHMIG_GKE_PROJECT".into(),
            });
        };
        let exec = Process {
            env: Default::default(),
        };
        let mut lines =
            super::gc(&exec, &project, older_than, super::chrono_like::Utc::now()).await?;
        if lines.is_empty() {
            lines.push(format!(
                "nothing older than {older_than:?} in project {project}"
            ));
        }
        Ok(GcReport {
            lines,
            code: meshmig_core::exit::PASS,
        })
    }
}

/// The first line of what a command prints, or why there is none.
async fn first_line(exec: &Process, cmd: Cmd) -> Result<String, String> {
    match exec.run(&cmd).await {
        Ok(r) if r.ok() => r
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("`{}` printed nothing", cmd.line())),
        Ok(r) => Err(format!(
            "`{}` failed: {}",
            cmd.line(),
            r.stderr.lines().next().unwrap_or("").trim()
        )),
        Err(e) => Err(format!(
            "`{}`: {}",
            cmd.line(),
            meshmig_core::error_chain(&e)
        )),
    }
}

/// The tools the GKE backend runs, each on PATH or MISSING with how to install it; how many
/// are missing.
fn doctor_tools() -> usize {
    let mut missing = 0;
    for (tool, install) in [
        ("gcloud", "https://cloud.google.com/sdk/docs/install (or apt-get install google-cloud-cli from Google's apt repository)"),
        ("kubectl", "gcloud components install kubectl, or apt-get install kubernetes-client"),
        ("istioctl", "curl -L https://istio.io/downloadIstio | sh - (then put istio-*/bin on PATH)"),
    ] {
        match on_path(tool) {
            Some(p) => println!("ok      {tool}: {}", p.display()),
            None => {
                missing += 1;
                println!("MISSING {tool}; install: {install}");
            }
        }
    }
    missing
}

/// gcloud's version, gke-gcloud-auth-plugin and gcloud's credentials; how many are missing.
async fn doctor_gcloud(exec: &Process) -> usize {
    let mut missing = 0;
    // The first line of each tool's own version output: `gcloud version` prints `Google Cloud
    // SDK 528.0.0`, then one line per component; `gke-gcloud-auth-plugin --version` prints the
    // Kubernetes version it was built from (`Kubernetes v1.30.0+03fcd0f8…` for gcloud 528's
    // plugin 0.5.10), both seen on the development machine.
    match first_line(exec, Commands::version()).await {
        Ok(v) => println!("ok      gcloud version: {v}"),
        Err(e) => {
            missing += 1;
            println!("MISSING a working gcloud: {e}");
        }
    }
    match on_path("gke-gcloud-auth-plugin") {
        Some(p) => {
            match first_line(exec, Cmd::new(&p.display().to_string(), ["--version"])).await {
                Ok(v) => println!("ok      gke-gcloud-auth-plugin: {} ({v})", p.display()),
                Err(e) => {
                    missing += 1;
                    println!("MISSING a working gke-gcloud-auth-plugin: {e}");
                }
            }
        }
        None => {
            missing += 1;
            println!("MISSING gke-gcloud-auth-plugin (kubectl's and the harness's way into GKE); install: gcloud components install gke-gcloud-auth-plugin, or apt-get install google-cloud-cli-gke-gcloud-auth-plugin");
        }
    }
    match super::check_credentials(exec).await {
        Ok(()) => println!("ok      gcloud has credentials (`gcloud auth print-access-token` printed a token, not shown)"),
        Err(e) => {
            missing += 1;
            println!("MISSING {e}");
        }
    }
    missing
}

/// The APIs the procedure uses, each enabled in `project` or MISSING; how many are missing.
async fn doctor_apis(exec: &Process, project: &str) -> usize {
    let mut missing = 0;
    let cfg = GkeConfig::new(project);
    let enabled = exec
        .run(&Commands::new(&cfg, &[]).enabled_services())
        .await
        .ok();
    match enabled {
        Some(r) if r.ok() => {
            for api in [
                "container.googleapis.com",
                "gkehub.googleapis.com",
                "mesh.googleapis.com",
                "compute.googleapis.com",
            ] {
                if r.stdout.lines().any(|l| l.trim() == api) {
                    println!("ok      {api} enabled in {project}");
                } else {
                    missing += 1;
                    println!(
                        "MISSING {api}; enable: gcloud services enable {api} --project={project}"
                    );
                }
            }
        }
        _ => {
            missing += 1;
            println!("MISSING access to project {project} (gcloud services list failed)");
        }
    }
    missing
}

/// What the GKE backend needs: gcloud with an active account, the project (`--project` or
/// `MESHMIG_GKE_PROJECT`), its APIs, kubectl and istioctl. Accounts and credentials are
/// checked, never printed.
async fn doctor(project: Option<String>) -> i32 {
    let mut missing = doctor_tools();
    if on_path("gcloud").is_none() {
        return meshmig_core::exit::INFRASTRUCTURE;
    }
    let exec = Process {
        env: Default::default(),
    };
    missing += doctor_gcloud(&exec).await;
    let Some(project) = project else {
        println!("MISSING project: pass --project ID or set MESHMIG_GKE_PROJECT");
        return meshmig_core::exit::INFRASTRUCTURE;
    };
    missing += doctor_apis(&exec, &project).await;
    doctor_exit(missing)
}
