//! The engine: runs a scenario's steps in order on a backend, records each step's outcome,
//! duration and evidence, stops at the first failure, and always tears down what the run
//! created — after a failed step, a panic, Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checks::{self, Ctx};
use crate::outcome::{NotRun, Outcome, RunObserver, RunReport, StepReport, StepStatus};
use crate::sampler::Pace;
use crate::stats::SplitParams;
use meshmig_backends::{Backend, BackendError, FleetOp, Output};
use meshmig_core::scenario::{substitute, Action, Scenario, Step};

mod mesh_wait;
pub use mesh_wait::wait_mesh_active;

/// Errors the engine raises itself (backend errors are recorded in step reports).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A manifest replacement or variable could not be applied while running.
    #[error("preparing step {step}: {message}")]
    Prepare {
        /// The step.
        step: String,
        /// What went wrong.
        message: String,
    },
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep what the run created (for debugging).
    pub keep: bool,
    /// Split-test parameters.
    pub params: SplitParams,
    /// Sampling pace (concurrency, rate limit).
    pub pace: Pace,
    /// Draw progress bars while split checks sample (for a terminal).
    pub progress: bool,
}

/// The id under which a continuous load beyond its error budget fails a run.
pub const LOAD_STEP: &str = "continuous-load";

/// What a step changes for the steps after it.
#[derive(Debug, Default)]
struct Effects {
    vars: BTreeMap<String, String>,
}

struct Shared {
    scenario: Arc<Scenario>,
    backend: Arc<dyn Backend>,
    opts: RunOptions,
    observer: Arc<dyn RunObserver>,
    reports: Mutex<Vec<StepReport>>,
    /// The users' resolver, for the whole run (split checks through the domain, DNS waits).
    clients: Arc<meshmig_core::dns::ClientResolver>,
    /// When the run started.
    t0: Instant,
    /// The step(s) in progress, for the continuous load's record.
    current: Arc<Mutex<String>>,
    /// The continuous load, while it runs.
    load: tokio::sync::Mutex<Option<crate::load::Load>>,
    /// Its samples, once stopped.
    samples: Mutex<Vec<crate::load::Sample>>,
    /// Pod → cluster, for every pod seen while the load ran.
    pods: Mutex<BTreeMap<String, String>>,
    /// The scenario's routing changes, and when each happened.
    planned: Vec<crate::load::Planned>,
    changes: Mutex<Vec<crate::load::Change>>,
    /// The load's URL, its variables substituted.
    load_url: Mutex<Option<String>>,
}

impl Shared {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().expect("engine locks are never poisoned")
    }

    /// Stops the continuous load (if it runs) and keeps its samples.
    async fn stop_load(&self) {
        if let Some(l) = self.load.lock().await.take() {
            let samples = l.stop().await;
            Self::lock(&self.samples).extend(samples);
        }
    }

    /// Judges the continuous load's record (None without one).
    fn judge_load(&self) -> Option<crate::load::LoadReport> {
        let spec = self.scenario.continuous_load.as_ref()?;
        let samples = Self::lock(&self.samples).clone();
        let pods = Self::lock(&self.pods).clone();
        let names = self.backend.real_cluster_names();
        let cluster_of = |w: &str| -> Option<String> {
            if self.scenario.cluster(w).is_some() {
                return Some(w.to_string());
            }
            names.get(w).cloned().or_else(|| pods.get(w).cloned())
        };
        let changes = Self::lock(&self.changes).clone();
        let url = Self::lock(&self.load_url)
            .clone()
            .unwrap_or_else(|| spec.url.clone());
        Some(crate::load::judge(
            &url,
            &samples,
            &cluster_of,
            &changes,
            spec,
        ))
    }
}

/// Runs a scenario and tears down; never returns without having called the backend's teardown.
/// Nobody watches: see [`run_observed`].
pub async fn run(
    scenario: Arc<Scenario>,
    backend: Arc<dyn Backend>,
    opts: RunOptions,
) -> RunReport {
    run_observed(scenario, backend, opts, Arc::new(())).await
}

/// As [`run`], telling `observer` what happens as it happens (see [`RunObserver`]).
pub async fn run_observed(
    scenario: Arc<Scenario>,
    backend: Arc<dyn Backend>,
    opts: RunOptions,
    observer: Arc<dyn RunObserver>,
) -> RunReport {
    let started = Instant::now();
    observer.run_started(&scenario, backend.name());
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        backend: backend.clone(),
        opts: opts.clone(),
        observer,
        reports: Mutex::new(Vec::new()),
        clients: Arc::new(meshmig_core::dns::ClientResolver::new(
            backend.dns_server(),
            scenario.dns.ttl_scale,
        )),
        t0: started,
        current: Arc::new(Mutex::new(String::new())),
        load: tokio::sync::Mutex::new(None),
        samples: Mutex::new(Vec::new()),
        pods: Mutex::new(BTreeMap::new()),
        planned: crate::load::plan(&scenario),
        changes: Mutex::new(Vec::new()),
        load_url: Mutex::new(None),
    });
    let mut task = tokio::spawn(execute(shared.clone()));
    let outcome = tokio::select! {
        r = &mut task => match r {
            Ok(o) => o,
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let message = p.downcast_ref::<String>().cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Outcome::Panicked { message }
            }
            Err(_) => Outcome::Interrupted,
        },
        _ = meshmig_core::shutdown_signal() => {
            task.abort();
            let _ = task.await;
            Outcome::Interrupted
        }
    };
    shared.stop_load().await;
    let continuous_load = shared.judge_load();
    let mut outcome = outcome;
    if let Some(l) = &continuous_load {
        let failed = !l.ok && outcome == Outcome::Passed;
        let witness = shared
            .backend
            .witnesses()
            .of(&meshmig_backends::witness::Source::DataPlane);
        let report = load_step(l, failed, witness);
        shared.observer.step_finished(&report);
        Shared::lock(&shared.reports).push(report);
        if failed {
            outcome = Outcome::AssertionFailed {
                step: LOAD_STEP.into(),
            };
        }
    }
    shared.observer.teardown_started(opts.keep);
    let teardown = backend.teardown(opts.keep).await;
    let steps = shared
        .reports
        .lock()
        .expect("reports lock is never poisoned")
        .clone();
    let not_run = scenario
        .steps
        .iter()
        .filter(|s| !steps.iter().any(|r| r.id == s.id))
        .map(|s| NotRun {
            id: s.id.clone(),
            title: s.title.clone(),
        })
        .collect();
    let report = RunReport {
        witnesses: crate::outcome::WitnessCounts::of(&steps),
        not_run,
        scenario: scenario.name.clone(),
        backend: backend.name().to_string(),
        steps,
        outcome,
        teardown,
        seconds: started.elapsed().as_secs_f64(),
        dns_ttl_scale: scenario.dns.ttl_scale,
        continuous_load,
    };
    shared.observer.run_finished(&report);
    report
}

async fn execute(shared: Arc<Shared>) -> Outcome {
    let steps = shared.scenario.steps.clone();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut i = 0;
    while i < steps.len() {
        // A run of consecutive steps of one group goes concurrently.
        let mut j = i + 1;
        if let Some(g) = &steps[i].group {
            while j < steps.len() && steps[j].group.as_ref() == Some(g) {
                j += 1;
            }
        }
        let batch = &steps[i..j];
        let load = shared.scenario.continuous_load.as_ref();
        if load.is_some_and(|l| batch.iter().any(|s| l.stop_before.as_ref() == Some(&s.id))) {
            shared.stop_load().await;
        }
        *Shared::lock(&shared.current) = batch
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let results =
            futures::future::join_all(batch.iter().map(|s| run_step(&shared, s, &vars))).await;
        let mut stop = None;
        for (report, effects) in results {
            vars.extend(effects.vars);
            shared.observer.step_finished(&report);
            let status = report.status;
            let id = report.id.clone();
            let message = report.failure();
            shared
                .reports
                .lock()
                .expect("reports lock is never poisoned")
                .push(report);
            if stop.is_none() {
                stop = match status {
                    StepStatus::Passed => None,
                    StepStatus::Failed => Some(Outcome::AssertionFailed { step: id }),
                    StepStatus::Error => Some(Outcome::Infrastructure { step: id, message }),
                };
            }
        }
        if let Some(o) = stop {
            // The load was answered by the pods this batch made too (a restart's): learnt
            // before the run ends, or their answers would count as errors of an unknown pod.
            if load.is_some() && shared.load.lock().await.is_some() {
                learn_pods(&shared).await;
            }
            return o;
        }
        if let Some(l) = load {
            if let Err(o) = drive_load(&shared, l, batch, &vars).await {
                return o;
            }
        }
        i = j;
    }
    Outcome::Passed
}

async fn run_step(
    shared: &Shared,
    step: &Step,
    vars: &BTreeMap<String, String>,
) -> (StepReport, Effects) {
    shared.observer.step_started(step);
    let started = Instant::now();
    let mut effects = Effects::default();
    let mut report = StepReport {
        id: step.id.clone(),
        title: step.title.clone(),
        status: StepStatus::Passed,
        seconds: 0.0,
        injected: Vec::new(),
        output: None,
        error: None,
        checks: Vec::new(),
    };
    for fault in &step.inject {
        match shared.backend.inject(fault).await {
            Ok(o) => report.injected.push(o),
            Err(e) => {
                report.status = StepStatus::Error;
                report.error = Some(meshmig_core::error_chain(&e));
                report.seconds = started.elapsed().as_secs_f64();
                return (report, effects);
            }
        }
    }
    let action = match &step.run {
        Some(a) => Some(act(shared, step, a, vars, &mut effects).await),
        None => None,
    };
    if let (Some(Ok(_)), Some(p)) = (&action, shared.planned.iter().find(|p| p.step == step.id)) {
        let mut all = vars.clone();
        all.extend(effects.vars.clone());
        let dns = matches!(step.run, Some(Action::DnsSetRecord { .. }));
        Shared::lock(&shared.changes).push(crate::load::Change {
            step: p.step.clone(),
            what: substitute(&p.what, &all),
            at: shared.t0.elapsed().as_secs_f64(),
            before: p.before.clone(),
            after: p.after.clone(),
            held_at_most: dns.then(|| {
                shared
                    .clients
                    .held(&shared.scenario.dns.domain)
                    .map_or(0.0, |h| h.remaining_seconds)
            }),
        });
    }
    let mut run_checks = true;
    match action {
        Some(Ok(o)) => report.output = Some(o),
        Some(Err(e)) => {
            report.error = Some(meshmig_core::error_chain(&e));
            report.status = if e.is_procedure() {
                StepStatus::Failed
            } else {
                StepStatus::Error
            };
            run_checks = e.is_procedure() && step.check_after_failed_action;
        }
        None => {}
    }
    if run_checks {
        let mut all_vars = vars.clone();
        all_vars.extend(effects.vars.clone());
        let ctx = Ctx {
            backend: shared.backend.as_ref(),
            scenario: &shared.scenario,
            vars: &all_vars,
            output: report.output.as_ref(),
            params: &shared.opts.params,
            pace: shared.opts.pace,
            progress: shared.opts.progress,
            clients: &shared.clients,
        };
        for c in &step.check {
            match checks::run(&ctx, c).await {
                Ok(r) => {
                    if !r.ok && report.status == StepStatus::Passed {
                        report.status = StepStatus::Failed;
                    }
                    report.checks.push(r);
                }
                Err(e) => {
                    report.status = StepStatus::Error;
                    report.error = Some(meshmig_core::error_chain(&e));
                    break;
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    (report, effects)
}

/// Carries out a step's action on the backend.
async fn act(
    shared: &Shared,
    step: &Step,
    action: &Action,
    vars: &BTreeMap<String, String>,
    effects: &mut Effects,
) -> Result<Output, BackendError> {
    let b = shared.backend.as_ref();
    let s = &shared.scenario;
    match action {
        Action::CreateCluster { cluster } => {
            let spec = s
                .cluster(cluster)
                .expect("validated: the cluster is declared");
            b.create_cluster(spec).await
        }
        Action::RenameContext { cluster } => b.rename_context(cluster).await,
        Action::InstallIstio { cluster, profile } => b.install_istio(cluster, profile).await,
        Action::FleetEnableMesh => b.fleet(&FleetOp::EnableMesh).await,
        Action::FleetRegister {
            cluster,
            membership,
        } => {
            b.fleet(&FleetOp::Register {
                cluster: cluster.clone(),
                membership: membership.clone(),
            })
            .await
        }
        Action::FleetMeshUpdate { membership } => {
            b.fleet(&FleetOp::MeshUpdate {
                membership: membership.clone(),
            })
            .await
        }
        Action::WaitMeshActive {
            membership,
            timeout_seconds,
            poll_seconds,
            stable_seconds,
        } => {
            wait_mesh_active(
                b,
                membership,
                Duration::from_secs_f64(*timeout_seconds),
                Duration::from_secs_f64(*poll_seconds),
                Duration::from_secs_f64(*stable_seconds),
            )
            .await
        }
        Action::CreateNamespace { cluster, name } => {
            b.kubernetes().create_namespace(cluster, name).await
        }
        Action::LabelNamespace {
            cluster,
            name,
            labels,
            remove,
        } => {
            b.kubernetes()
                .label_namespace(cluster, name, labels, remove)
                .await
        }
        Action::RestartWorkloads { cluster, namespace } => {
            b.kubernetes().restart_workloads(cluster, namespace).await
        }
        Action::Apply {
            cluster,
            namespace,
            manifests,
            replace,
            patch,
            objects: inline,
        } => {
            let (objects, notes) =
                prepare_objects(s, step, vars, manifests, replace, patch, inline)?;
            let mut out = b
                .kubernetes()
                .apply(cluster, namespace.as_deref(), &objects)
                .await?;
            for n in notes {
                out.stdout.push_str(&n);
                out.stdout.push('\n');
            }
            Ok(out)
        }
        Action::Delete {
            cluster,
            namespace,
            kind,
            name,
        } => b.kubernetes().delete(cluster, namespace, kind, name).await,
        Action::ReadIngressIp {
            cluster,
            namespace,
            save_as,
        } => read_ingress_ip(b, cluster, namespace, save_as, effects).await,
        Action::DnsSetRecord { address, ttl } => {
            let a = substitute(address, vars);
            let ip = checks::parse_ip(&a).ok_or_else(|| BackendError::Procedure {
                command: format!("set A record to {a}"),
                message: format!("{a:?} is not an IP address"),
            })?;
            b.dns_set(&s.dns.domain, ip, *ttl).await
        }
        Action::WaitDnsTtl => wait_dns_ttl(shared, &s.dns.domain).await,
        Action::WaitTtl { seconds } => wait_ttl(shared, *seconds).await,
        Action::DeleteCluster { name } => b.delete_cluster(name).await,
        Action::FleetUnregister { membership } => {
            b.fleet(&FleetOp::Unregister {
                membership: membership.clone(),
            })
            .await
        }
        Action::FleetDisableMesh => b.fleet(&FleetOp::DisableMesh).await,
    }
}

/// The objects an `apply` step applies: its manifests' after the replacements (with a note per
/// replacement that matched nothing), patched, then the scenario's own inline objects.
fn prepare_objects(
    s: &Scenario,
    step: &Step,
    vars: &BTreeMap<String, String>,
    manifests: &[String],
    replace: &[meshmig_core::scenario::Replacement],
    patch: &[meshmig_core::manifest::ObjectPatch],
    inline: &[serde_json::Value],
) -> Result<(Vec<meshmig_core::manifest::Object>, Vec<String>), BackendError> {
    let pairs: Vec<(String, String)> = replace
        .iter()
        .map(|r| (r.from.clone(), substitute(&r.to, vars)))
        .collect();
    let mut objects = Vec::new();
    let mut notes = Vec::new();
    for m in manifests {
        let (objs, unmatched) = s.manifests.objects(m, &pairs).map_err(|e| {
            BackendError::infra(
                format!("preparing step {}", step.id),
                meshmig_core::error_chain(&EngineError::Prepare {
                    step: step.id.clone(),
                    message: e.to_string(),
                }),
            )
        })?;
        objects.extend(objs);
        notes.extend(unmatched);
    }
    meshmig_core::manifest::patch_objects(&mut objects, patch).map_err(|message| {
        BackendError::infra(
            format!("preparing step {}", step.id),
            meshmig_core::error_chain(&EngineError::Prepare {
                step: step.id.clone(),
                message,
            }),
        )
    })?;
    let at = s
        .step_locations
        .get(&step.id)
        .cloned()
        .unwrap_or(meshmig_core::yaml::Location {
            file: s.path.clone(),
            line: 1,
            column: 1,
        });
    objects.extend(meshmig_core::manifest::inline_objects(inline, &at));
    Ok((objects, notes))
}

/// Reads the ingress IP of the first Service in `namespace` (as the procedure's `kubectl get
/// service` does) and saves it as variable `save_as`.
async fn read_ingress_ip(
    b: &dyn Backend,
    cluster: &str,
    namespace: &str,
    save_as: &str,
    effects: &mut Effects,
) -> Result<Output, BackendError> {
    let svcs = b
        .kubernetes()
        .list(cluster, Some(namespace), "Service")
        .await?;
    let command = format!(
        "kubectl --namespace {namespace} --context={cluster} get service --output jsonpath='{{.items[0].status.loadBalancer.ingress[0].ip}}'"
    );
    match checks::first_service_ip(&svcs) {
        Some((_, Some(ip))) => {
            effects.vars.insert(save_as.to_string(), ip.clone());
            Ok(Output::new(command, format!("{ip}\n")))
        }
        Some((name, None)) => Err(BackendError::Procedure {
            command,
            message: format!(
                ".items[0] is Service {name}, which has no load balancer ingress IP (empty output)"
            ),
        }),
        None => Err(BackendError::Procedure {
            command,
            message: "No resources found".into(),
        }),
    }
}

/// Waits until the clients' resolver drops its answer for `domain`.
async fn wait_dns_ttl(shared: &Shared, domain: &str) -> Result<Output, BackendError> {
    let scale = shared.clients.scale();
    let said = match shared.clients.wait_until_dropped(domain).await {
        Some(h) => format!(
            "clients held {domain} A {} (TTL {} s, {:.2} s at DNS time scale {scale}); waited {:.2} s until they dropped it\n",
            h.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
            h.ttl,
            h.held_seconds,
            h.remaining_seconds
        ),
        None => format!("clients hold no answer for {domain}: nothing to wait for\n"),
    };
    Ok(Output::new(
        "wait until the clients' resolver drops its answer",
        said,
    ))
}

/// Waits `seconds` of DNS time.
async fn wait_ttl(shared: &Shared, seconds: u32) -> Result<Output, BackendError> {
    let scale = shared.clients.scale();
    let real = seconds as f64 * scale;
    tokio::time::sleep(Duration::from_secs_f64(real)).await;
    Ok(Output::new(
        format!("sleep {seconds}"),
        format!("waited {seconds} s of DNS time ({real:.2} s at DNS time scale {scale})\n"),
    ))
}

/// After a batch of steps: starts the continuous load after its first step, sends it through the
/// domain after `via_domain_after`, and learns the pods that may answer it. An infrastructure
/// outcome if the load cannot start.
async fn drive_load(
    shared: &Shared,
    l: &meshmig_core::scenario::ContinuousLoad,
    batch: &[Step],
    vars: &BTreeMap<String, String>,
) -> Result<(), Outcome> {
    let has = |id: &Option<String>| {
        id.as_ref()
            .is_some_and(|id| batch.iter().any(|s| &s.id == id))
    };
    let start = batch.iter().any(|s| s.id == l.start_after);
    let domain = has(&l.via_domain_after);
    if start {
        let url = shifted(shared, substitute(&l.url, vars));
        *Shared::lock(&shared.load_url) = Some(url.clone());
        let target = crate::sampler::Target {
            url,
            host: None,
            resolve: vec![],
            dns: None,
        };
        let load = crate::load::Load::start(target, l.rate, shared.current.clone(), shared.t0)
            .map_err(|e| Outcome::Infrastructure {
                step: l.start_after.clone(),
                message: meshmig_core::error_chain(&e),
            })?;
        *shared.load.lock().await = Some(load);
    }
    let running = shared.load.lock().await;
    let Some(load) = running.as_ref() else {
        return Ok(());
    };
    if domain {
        load.switch(crate::sampler::Target {
            url: shifted(shared, format!("http://{}/", shared.scenario.dns.domain)),
            host: None,
            resolve: vec![],
            dns: Some(shared.clients.clone()),
        });
    }
    drop(running);
    learn_pods(shared).await;
    Ok(())
}

/// Learns the pods that may answer the load (as they come; a deleted cluster's stay known).
async fn learn_pods(shared: &Shared) {
    if let Ok(pods) =
        crate::checks::pods_by_cluster(shared.backend.as_ref(), &shared.scenario).await
    {
        Shared::lock(&shared.pods).extend(pods);
    }
}

/// A URL as users reach it on this backend: with the port the backend really serves where it
/// cannot bind the procedure's (an ordinary user's fallback, see [`meshmig_backends::preflight`]).
fn shifted(shared: &Shared, url: String) -> String {
    match shared.backend.port_shift() {
        Some(shift) => shift.url(&url).0,
        None => url,
    }
}

/// The continuous load as a step of the report: its check states the errors against the budget,
/// the error windows and each change's time to effect.
fn load_step(
    l: &crate::load::LoadReport,
    failed: bool,
    witness: meshmig_backends::witness::Witness,
) -> StepReport {
    let check = crate::checks::continuous_load(l).witnessed_by(witness);
    StepReport {
        id: LOAD_STEP.into(),
        title: "Continuous load: users' requests through the whole migration".into(),
        status: if failed {
            StepStatus::Failed
        } else {
            StepStatus::Passed
        },
        seconds: 0.0,
        injected: Vec::new(),
        output: None,
        error: None,
        checks: vec![check],
    }
}
