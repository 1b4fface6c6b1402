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
//! Every check of a trial must name its witness (who observed it: a real component, a stand-in
//! or the harness), and `MESHMIG_MIN_REAL_CHECKS=kwok=N,…` asks a passing trial of a backend for
//! at least N checks observed by real components.
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use meshmig::backend::entry::BackendEntry;
use meshmig::backend::registry;
use meshmig::backend::Backend;
use meshmig::engine::{self, RunOptions};
use meshmig::outcome::Outcome;
use meshmig::runner::{self, BackendOptions};
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

/// A backend the suite runs trials on, from the registry.
type Suite = &'static dyn BackendEntry;

/// Its options and manifests folder (None: the fixtures), or why it cannot run here.
fn backend_options(suite: Suite) -> Result<(BackendOptions, Option<PathBuf>), String> {
    let opts = match PREPARED.get().and_then(|p| p.get(suite.name())) {
        Some(prepared) => prepared.clone(),
        None => suite.conformance_options()?,
    };
    let manifests = if suite.capabilities().real_manifests {
        Some(real_manifests()?)
    } else {
        None
    };
    Ok((opts, manifests))
}

/// The backends whose trials run unless asked for: `MESHMIG_BACKEND`, else `gke` in a build with
/// the `gke` feature (`cargo test --features gke`), else `emulated`.
fn selected() -> Result<BTreeSet<&'static str>, String> {
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
            registry::lookup(w).map(|b| b.name()).ok_or_else(|| {
                format!(
                    "MESHMIG_BACKEND={wanted}: {w:?} is not a backend (one or more of {}, comma-separated)",
                    registry::names().join(", ")
                )
            })
        })
        .collect()
}

/// The fewest trials each backend must be able to run (not listed as ignored because it cannot):
/// fewer means a scenario folder went missing or a capability stopped matching, and the suite
/// would pass on less than it claims. Raise a floor when scenarios are added.
const MIN_TRIALS: &[(&str, usize)] = &[("emulated", 26), ("kwok", 26)];

/// Whether a backend's trials can run only on Linux (its loopback range).
fn backend_needs_linux(name: &str) -> bool {
    registry::lookup(name).is_some_and(|b| b.capabilities().host_loopback_range)
}

/// The options each running backend's preflight prepared before the process had threads, by
/// backend name.
static PREPARED: std::sync::OnceLock<BTreeMap<&'static str, BackendOptions>> =
    std::sync::OnceLock::new();

fn run_trial(suite: Suite, path: &Path) -> Result<(), Failed> {
    let (backend_opts, manifests) = backend_options(suite)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let scenario = Arc::new(
            runner::load(path, manifests.as_deref()).map_err(|e| meshmig::error_chain(&e))?,
        );
        let backend: Arc<dyn Backend> = runner::start_backend_with(suite, &scenario, &backend_opts)
            .await
            .map_err(|e| meshmig::error_chain(&e))?;
        let scratch = backend.scratch_paths();
        let report = engine::run(scenario.clone(), backend, RunOptions::default()).await;
        // A folder per backend: the same scenario runs on several, and its files are named
        // after the scenario.
        if let Some(dir) = std::env::var_os("MESHMIG_REPORT_DIR") {
            meshmig::report::write_all(&report, &Path::new(&dir).join(suite.name()))
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
        witnessed(suite, expect.outcome, &report)?;
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

/// Every check names its witness, and a trial expected to pass had at least the number of
/// checks observed by real components that `MESHMIG_MIN_REAL_CHECKS` asks of its backend
/// (`kwok=24,gke-rehearsal=25`, as `.ci/run` sets it).
fn witnessed(
    suite: Suite,
    outcome: ExpectedOutcome,
    report: &meshmig::outcome::RunReport,
) -> Result<(), Failed> {
    let unattributed: Vec<String> = report
        .steps
        .iter()
        .flat_map(|s| s.checks.iter().map(move |c| (s, c)))
        .filter(|(_, c)| c.witness.is_unattributed())
        .map(|(s, c)| format!("{} {}", s.id, c.check))
        .collect();
    if !unattributed.is_empty() {
        return Err(format!("checks without a witness: {unattributed:?}").into());
    }
    let wanted = std::env::var("MESHMIG_MIN_REAL_CHECKS").unwrap_or_default();
    let min = min_real_checks(&wanted, suite.name(), &report.scenario)?;
    if let (Some(min), ExpectedOutcome::Pass) = (min, outcome) {
        if report.witnesses.real < min {
            return Err(format!(
                "MESHMIG_MIN_REAL_CHECKS asks {min} checks observed by real components on {}; {}",
                suite.name(),
                report.witnesses.sentence(suite.name())
            )
            .into());
        }
    }
    Ok(())
}

/// The minimum `MESHMIG_MIN_REAL_CHECKS` sets for a scenario (its `name:`) on `backend`: an
/// entry `BACKEND::SCENARIO=N` for that scenario, else `BACKEND=N` (a scenario with fewer
/// checks in all, the canary control plane's, gets its own floor rather than lowering
/// everyone's).
fn min_real_checks(wanted: &str, backend: &str, scenario: &str) -> Result<Option<usize>, String> {
    let mut for_backend = None;
    for part in wanted.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, n) = part.split_once('=').ok_or_else(|| {
            format!("MESHMIG_MIN_REAL_CHECKS: {part:?} is not BACKEND=N or BACKEND::SCENARIO=N")
        })?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("MESHMIG_MIN_REAL_CHECKS: {n:?} is not a count"))?;
        let (b, only) = match key.trim().split_once("::") {
            Some((b, s)) => (b, Some(s)),
            None => (key.trim(), None),
        };
        if registry::lookup(b).is_none() {
            return Err(format!("MESHMIG_MIN_REAL_CHECKS: {b:?} is not a backend"));
        }
        match only {
            Some(s) if b == backend && s == scenario => return Ok(Some(n)),
            None if b == backend && for_backend.is_none() => for_backend = Some(n),
            _ => {}
        }
    }
    Ok(for_backend)
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

/// Prepares the process for the backends whose trials run, while it still has one thread: each
/// backend's preflight (the network namespace of kwok and the rehearsal's kwok clusters,
/// gcloud's environment for a rehearsal, and for the emulated backend as an ordinary user a
/// network namespace through a user namespace so the gateways can listen on port 80, else
/// shifted ports: see meshmig::preflight). The options they prepared go to [`PREPARED`].
fn prepare(args: &mut Arguments, running: &[Suite]) -> Result<(), String> {
    if running.iter().any(|s| s.capabilities().one_at_a_time) {
        args.test_threads = Some(1);
    }
    let mut prepared = BTreeMap::new();
    for suite in running {
        let mut opts = suite.conformance_options()?;
        if let Some(note) = suite.preflight(&mut opts).map_err(|e| e.to_string())? {
            eprintln!("conformance: {note}");
        }
        prepared.insert(suite.name(), opts);
    }
    let _ = PREPARED.set(prepared);
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
    if let Err(why) = min_real_checks(
        &std::env::var("MESHMIG_MIN_REAL_CHECKS").unwrap_or_default(),
        "",
        "",
    ) {
        eprintln!("conformance: {why}");
        return std::process::ExitCode::from(2);
    }
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
    let mut runnable: BTreeMap<&str, usize> = BTreeMap::new();
    for path in paths {
        // A scenario that does not load fails the suite, listing included (nextest lists first),
        // whichever backends run: it would otherwise only fail the trials that happen to run.
        let scenario = match runner::load(&path, None) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "conformance: {} does not load: {}",
                    path.display(),
                    meshmig::error_chain(&e)
                );
                return std::process::ExitCode::from(2);
            }
        };
        for suite in registry::BACKENDS {
            let name = format!(
                "{}::{}",
                suite.name(),
                meshmig::scenario::trial_name(&dir, &path)
            );
            // The emulated backend binds 127.RUN.x.y loopback addresses, which only Linux routes
            // to `lo` by default: elsewhere its trials are listed as ignored. Fault scenarios
            // need the stand-ins' data plane (emulated, kwok): listed as ignored on kind and
            // GKE, where nothing can inject them.
            let caps = suite.capabilities();
            let cannot_run = (caps.host_loopback_range && !cfg!(target_os = "linux"))
                || caps.unsupported_fault(&scenario).is_some();
            if !cannot_run {
                *runnable.entry(suite.name()).or_default() += 1;
            }
            let ignored = cannot_run || !selected.contains(suite.name());
            let path = path.clone();
            trials.push((
                suite,
                Trial::test(name, move || run_trial(suite, &path)).with_ignored_flag(ignored),
            ));
        }
    }
    for (backend, floor) in MIN_TRIALS {
        let n = runnable.get(backend).copied().unwrap_or(0);
        if n < *floor && (!backend_needs_linux(backend) || cfg!(target_os = "linux")) {
            eprintln!(
                "conformance: {backend} has {n} trials it can run, fewer than its floor of {floor}: a scenario folder was lost or a capability stopped matching (tests/conformance.rs, MIN_TRIALS)"
            );
            return std::process::ExitCode::from(2);
        }
    }
    if !args.list {
        let mut running: Vec<Suite> = Vec::new();
        for (suite, t) in &trials {
            let runs = would_run(&args, t.name(), t.has_ignored_flag());
            if runs && !running.iter().any(|r| r.name() == suite.name()) {
                running.push(*suite);
            }
        }
        if let Err(why) = prepare(&mut args, &running) {
            eprintln!("conformance: {why}");
            return std::process::ExitCode::from(2);
        }
    }
    let trials: Vec<Trial> = trials.into_iter().map(|(_, t)| t).collect();
    libtest_mimic::run(&args, trials).exit_code()
}
