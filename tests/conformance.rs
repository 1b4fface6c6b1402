//! The conformance suite: one trial per scenario file in `scenarios/` and per backend, run end to
//! end. A trial passes when the run ends as the scenario's `expect:` says — `canary-cluster`
//! passes every step; `published-cleanup` must fail at H1 with the leftovers named — and the
//! run's teardown left nothing behind.
//!
//! Trials are named `BACKEND::SCENARIO` (`emulated::canary-cluster`,
//! `kwok::mistakes/weights-reversed`, `gke-rehearsal::published-cleanup`). Every backend's trials
//! are listed; `MESHMIG_BACKEND` (a comma-separated list; default `emulated`, or `gke` in a build
//! with `--features gke`) says which backends' trials run, and the others are listed as ignored.
//! So `MESHMIG_BACKEND=kwok cargo test --test conformance` runs the kwok trials, and so does
//! `cargo nextest run --run-ignored all -E 'test(/^kwok::/)'`: a trial's name decides its
//! backend.
//!
//! A libtest-mimic binary (`harness = false`), so it works under `cargo test` and
//! `cargo nextest run` (one process per trial): `--list` prints only `name: test` lines, filters
//! and `--exact` work.
//!
//! The backends: `emulated` (real Envoy, real HTTP, real DNS, virtual clusters); `kwok` (real
//! control planes on this machine, `meshmig tools install` first, in a network namespace of the
//! process's own); `gke-rehearsal` (the GKE backend with the real gcloud against the local Google
//! Cloud stand-in, whose clusters are kwok clusters: `meshmig::rehearsal`); `kind` (two real kind
//! clusters: a container engine, kind, kubectl, istioctl); `gke` (real GKE: needs
//! MESHMIG_GKE_PROJECT, and fails at once without it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use meshmig::backend::Backend;
use meshmig::engine::{self, RunOptions};
use meshmig::outcome::Outcome;
use meshmig::runner::{self, BackendKind, BackendOptions};
use meshmig::scenario::ExpectedOutcome;

/// The project's root: where the suite was built, unless `MESHMIG_CONFORMANCE_ROOT` names a copy
/// of its `scenarios/` and `fixtures/` (`.ci/nonroot.sh` runs the suite as a user who may not
/// read the checkout).
fn root() -> PathBuf {
    std::env::var_os("MESHMIG_CONFORMANCE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
}

/// The real manifests a real-cluster run needs (the fixtures are for the emulated backend).
fn real_manifests() -> Result<PathBuf, String> {
    let manifests = std::env::var_os("MESHMIG_MANIFESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/upstream"));
    if manifests.exists() {
        Ok(manifests)
    } else {
        Err(format!(
            "set MESHMIG_MANIFESTS to a folder laid out like ../shared/upstream ({} does not exist)",
            manifests.display()
        ))
    }
}

/// A backend the suite runs trials on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Suite {
    Emulated,
    Kwok,
    GkeRehearsal,
    Kind,
    Gke,
}

impl Suite {
    const ALL: [Suite; 5] = [
        Suite::Emulated,
        Suite::Kwok,
        Suite::GkeRehearsal,
        Suite::Kind,
        Suite::Gke,
    ];

    /// The name in `MESHMIG_BACKEND` and in front of its trials' names.
    fn name(self) -> &'static str {
        match self {
            Suite::Emulated => "emulated",
            Suite::Kwok => "kwok",
            Suite::GkeRehearsal => "gke-rehearsal",
            Suite::Kind => "kind",
            Suite::Gke => "gke",
        }
    }

    /// The harness's backend.
    fn kind(self) -> BackendKind {
        match self {
            Suite::Emulated => BackendKind::Emulated,
            Suite::Kwok => BackendKind::Kwok,
            Suite::GkeRehearsal | Suite::Gke => BackendKind::Gke,
            Suite::Kind => BackendKind::Kind,
        }
    }

    /// Real backends run one scenario at a time in a process: kwok runs (and the rehearsal's
    /// kwok clusters) share the process's network namespace (addresses and ports), kind runs
    /// share cloud-provider-kind, GKE runs one project's mesh feature. Under nextest each trial
    /// is a process of its own, with a namespace of its own.
    fn one_at_a_time(self) -> bool {
        self != Suite::Emulated
    }

    /// Whether its clusters live in a network namespace the process enters first.
    fn in_namespace(self) -> bool {
        matches!(self, Suite::Kwok | Suite::GkeRehearsal)
    }

    /// Its options and manifests folder (None: the fixtures), or why it cannot run here.
    fn backend(self) -> Result<(BackendOptions, Option<PathBuf>), String> {
        match self {
            Suite::Emulated => Ok((BackendOptions::default(), None)),
            Suite::Kwok => {
                let tools = meshmig::tools::Tools::from_env();
                for b in [
                    "kube-apiserver",
                    "etcd",
                    "kwok",
                    "istioctl",
                    "pilot-discovery",
                ] {
                    tools
                        .binary(b)
                        .map_err(|e| format!("the kwok trials run on the real components: {e}"))?;
                }
                Ok((BackendOptions::default(), Some(real_manifests()?)))
            }
            Suite::GkeRehearsal => {
                let prepared = PREPARED.get().cloned().ok_or(
                    "the rehearsal was not prepared (main does it before any thread starts)",
                )?;
                let opts = BackendOptions {
                    project: Some("demo".into()),
                    rehearsal: Some(prepared),
                    ..BackendOptions::default()
                };
                Ok((opts, Some(real_manifests()?)))
            }
            Suite::Kind => {
                // Real clusters: needs a container engine; `meshmig doctor --backend kind` says
                // what is missing.
                let engine = std::process::Command::new("docker").arg("info").output();
                if !engine.is_ok_and(|o| o.status.success()) {
                    return Err("the kind trials run on real kind clusters: no container engine is reachable (docker info failed)".into());
                }
                let opts = BackendOptions {
                    istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
                    metadata_image: std::env::var("MESHMIG_METADATA_IMAGE").ok(),
                    ..BackendOptions::default()
                };
                Ok((opts, Some(real_manifests()?)))
            }
            Suite::Gke => {
                let project = std::env::var("MESHMIG_GKE_PROJECT")
                    .map_err(|_| "the gke trials run on real Google Cloud: set MESHMIG_GKE_PROJECT to a project ID (gcloud authenticated, kubectl and istioctl on PATH)".to_string())?;
                let opts = BackendOptions {
                    project: Some(project),
                    istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
                    ..BackendOptions::default()
                };
                Ok((opts, Some(real_manifests()?)))
            }
        }
    }
}

/// The backends whose trials run unless asked for: `MESHMIG_BACKEND`, else `gke` in a build with
/// the `gke` feature (`cargo test --features gke`), else `emulated`.
fn selected() -> Result<BTreeSet<Suite>, String> {
    let default = if cfg!(feature = "gke") {
        "gke"
    } else {
        "emulated"
    };
    let wanted = std::env::var("MESHMIG_BACKEND").unwrap_or_default();
    let wanted = if wanted.trim().is_empty() {
        default.to_string()
    } else {
        wanted
    };
    wanted
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            Suite::ALL
                .into_iter()
                .find(|s| s.name() == w)
                .ok_or_else(|| {
                    let names: Vec<&str> = Suite::ALL.iter().map(|s| s.name()).collect();
                    format!(
                        "MESHMIG_BACKEND={wanted}: {w:?} is not a backend (one or more of {}, comma-separated)",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// What `main` prepared for a rehearsal before the process had threads.
static PREPARED: std::sync::OnceLock<meshmig::rehearsal::Prepared> = std::sync::OnceLock::new();

fn run_trial(suite: Suite, path: &Path) -> Result<(), Failed> {
    let kind = suite.kind();
    let (backend_opts, manifests) = suite.backend()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let scenario = Arc::new(
            runner::load(path, manifests.as_deref()).map_err(|e| meshmig::error_chain(&e))?,
        );
        let backend: Arc<dyn Backend> = runner::start_backend_with(kind, &scenario, &backend_opts)
            .await
            .map_err(|e| meshmig::error_chain(&e))?;
        let scratch = backend.scratch_paths();
        let report = engine::run(scenario.clone(), backend, RunOptions::default()).await;
        if let Some(dir) = std::env::var_os("MESHMIG_REPORT_DIR") {
            meshmig::report::write_all(&report, Path::new(&dir))
                .map_err(|e| meshmig::error_chain(&e))?;
        }
        let text: Vec<String> = report
            .steps
            .iter()
            .map(meshmig::report::render_step)
            .collect();
        let transcript = format!(
            "{}\n{}",
            text.join("\n"),
            meshmig::report::render_end(&report)
        );
        let expect = &scenario.expect;
        match (expect.outcome, &report.outcome) {
            (ExpectedOutcome::Pass, Outcome::Passed) => {}
            (ExpectedOutcome::Fail, Outcome::AssertionFailed { step }) => {
                if let Some(want) = &expect.failed_step {
                    if want != step {
                        return Err(format!(
                            "expected step {want} to fail, but {step} failed\n{transcript}"
                        )
                        .into());
                    }
                }
                let failed = report
                    .steps
                    .iter()
                    .find(|s| &s.id == step)
                    .map(|s| s.failure())
                    .unwrap_or_default();
                for word in &expect.evidence_contains {
                    if !failed.contains(word.as_str()) {
                        return Err(format!(
                            "the failure of {step} does not mention {word:?}:\n{failed}"
                        )
                        .into());
                    }
                }
            }
            (want, got) => {
                return Err(format!("expected outcome {want:?}, got {got:?}\n{transcript}").into());
            }
        }
        if !report.teardown.failed.is_empty() {
            return Err(format!("teardown left {:?}", report.teardown.failed).into());
        }
        for p in scratch {
            if p.exists() {
                return Err(format!("teardown left the scratch folder {}", p.display()).into());
            }
        }
        Ok(())
    })
}

/// Whether libtest-mimic would run a trial of this name and ignored flag with these arguments
/// (its own filtering, which it does not expose): so `main` prepares only the backends that run.
fn would_run(args: &Arguments, name: &str, ignored: bool) -> bool {
    let matches = |pattern: &str| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    };
    let by_flag = if args.ignored {
        ignored
    } else {
        args.include_ignored || !ignored
    };
    by_flag && args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// Prepares the process for the backends whose trials run, while it still has one thread: the
/// network namespace (kwok, the rehearsal's kwok clusters), gcloud's environment for a
/// rehearsal, and for the emulated backend as an ordinary user a network namespace through a
/// user namespace so the gateways can listen on port 80, else shifted ports (see
/// meshmig::preflight).
fn prepare(args: &mut Arguments, running: &BTreeSet<Suite>) -> Result<(), String> {
    if running.iter().any(|s| s.one_at_a_time()) {
        args.test_threads = Some(1);
    }
    if running.iter().any(|s| s.in_namespace()) && !meshmig::netns::inside() {
        meshmig::netns::enter().map_err(|e| meshmig::error_chain(&e))?;
    }
    if running.contains(&Suite::GkeRehearsal) {
        let prepared = meshmig::rehearsal::prepare().map_err(|e| meshmig::error_chain(&e))?;
        let _ = PREPARED.set(prepared);
    }
    if running.contains(&Suite::Emulated) && !meshmig::netns::inside() {
        use meshmig::preflight::{self, Listening};
        match preflight::prepare_emulated(&preflight::Host).map_err(|e| e.to_string())? {
            Listening::Host => {}
            l => eprintln!("conformance: {}", preflight::describe(&l)),
        }
    }
    for suite in running {
        suite.backend()?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    let selected = match selected() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("conformance: {why}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = root().join("scenarios");
    let paths = match meshmig::scenario::discover(&dir) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("conformance: no scenario in {}", dir.display());
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("conformance: reading {}: {e}", dir.display());
            return std::process::ExitCode::from(2);
        }
    };
    let mut trials = Vec::new();
    for path in paths {
        let scenario = runner::load(&path, None).ok();
        for suite in Suite::ALL {
            let name = format!(
                "{}::{}",
                suite.name(),
                meshmig::scenario::trial_name(&dir, &path)
            );
            // The emulated backend binds 127.RUN.x.y loopback addresses, which only Linux routes
            // to `lo` by default: elsewhere its trials are listed as ignored. Fault scenarios
            // need the stand-ins' data plane (emulated, kwok): listed as ignored on kind and
            // GKE, where nothing can inject them.
            let cannot_run = (suite == Suite::Emulated && !cfg!(target_os = "linux"))
                || scenario
                    .as_ref()
                    .is_some_and(|s| suite.kind().unsupported_fault(s).is_some());
            let ignored = cannot_run || !selected.contains(&suite);
            let path = path.clone();
            trials.push((
                suite,
                Trial::test(name, move || run_trial(suite, &path)).with_ignored_flag(ignored),
            ));
        }
    }
    if !args.list {
        let running: BTreeSet<Suite> = trials
            .iter()
            .filter(|(_, t)| would_run(&args, t.name(), t.has_ignored_flag()))
            .map(|(s, _)| *s)
            .collect();
        if let Err(why) = prepare(&mut args, &running) {
            eprintln!("conformance: {why}");
            return std::process::ExitCode::from(2);
        }
    }
    let trials: Vec<Trial> = trials.into_iter().map(|(_, t)| t).collect();
    libtest_mimic::run(&args, trials).exit_code()
}
