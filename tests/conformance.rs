//! The conformance suite: one trial per scenario file in `scenarios/`, run end to end on the
//! emulated backend (real Envoy, real HTTP, real DNS). A trial passes when the run ends as the
//! scenario's `expect:` says — `canary-cluster` passes every step; `published-cleanup` must fail
//! at H1 with the leftovers named — and the run's teardown left nothing behind.
//!
//! A libtest-mimic binary (`harness = false`), so it works under `cargo test` and
//! `cargo nextest run`: `--list` prints only `name: test` lines, filters and `--exact` work.
//!
//! `cargo test --features gke` runs the same trials on real GKE (see the `gke` feature in
//! Cargo.toml): it needs MESHMIG_GKE_PROJECT and fails at once without it. `--features kwok`
//! runs them on real control planes on this machine (`meshmig tools install` first).
//! `--features gke-rehearsal` runs them on the GKE backend with the real gcloud against the local
//! Google Cloud stand-in, whose clusters are kwok clusters (`meshmig::rehearsal`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use meshmig::backend::Backend;
use meshmig::engine::{self, Outcome, RunOptions};
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
#[cfg(any(
    feature = "gke",
    feature = "kind",
    feature = "kwok",
    feature = "gke-rehearsal"
))]
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

/// The backend the suite runs on, its options, and the manifests folder (None: the fixtures).
#[cfg(all(feature = "kind", not(any(feature = "gke", feature = "gke-rehearsal"))))]
fn backend() -> Result<(BackendKind, BackendOptions, Option<PathBuf>), String> {
    // Real clusters: needs a container engine; `meshmig doctor --backend kind` says what is missing.
    let engine = std::process::Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        return Err("the kind feature runs on real kind clusters: no container engine is reachable (docker info failed)".into());
    }
    let opts = BackendOptions {
        istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
        metadata_image: std::env::var("MESHMIG_METADATA_IMAGE").ok(),
        ..BackendOptions::default()
    };
    Ok((BackendKind::Kind, opts, Some(real_manifests()?)))
}

/// The backend the suite runs on, its options, and the manifests folder (None: the fixtures).
#[cfg(not(any(
    feature = "gke",
    feature = "kind",
    feature = "kwok",
    feature = "gke-rehearsal"
)))]
fn backend() -> Result<(BackendKind, BackendOptions, Option<PathBuf>), String> {
    Ok((BackendKind::Emulated, BackendOptions::default(), None))
}

/// The kwok backend: real control planes built by `meshmig tools install`, in the network
/// namespace `main` entered before any thread started.
#[cfg(all(
    feature = "kwok",
    not(any(feature = "gke", feature = "kind", feature = "gke-rehearsal"))
))]
fn backend() -> Result<(BackendKind, BackendOptions, Option<PathBuf>), String> {
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
            .map_err(|e| format!("the kwok feature runs on the real components: {e}"))?;
    }
    Ok((
        BackendKind::Kwok,
        BackendOptions::default(),
        Some(real_manifests()?),
    ))
}

/// What `main` prepared for a rehearsal before the process had threads.
#[cfg(feature = "gke-rehearsal")]
static PREPARED: std::sync::OnceLock<meshmig::rehearsal::Prepared> = std::sync::OnceLock::new();

/// The GKE backend, rehearsed: the real gcloud against the local Google Cloud stand-in, whose
/// clusters are kwok clusters (the components of `meshmig tools install`), in the network
/// namespace `main` entered.
#[cfg(feature = "gke-rehearsal")]
fn backend() -> Result<(BackendKind, BackendOptions, Option<PathBuf>), String> {
    let prepared = PREPARED
        .get()
        .cloned()
        .ok_or("the rehearsal was not prepared (main does it before any thread starts)")?;
    let opts = BackendOptions {
        project: Some("demo".into()),
        rehearsal: Some(prepared),
        ..BackendOptions::default()
    };
    Ok((BackendKind::Gke, opts, Some(real_manifests()?)))
}

#[cfg(all(feature = "gke", not(feature = "gke-rehearsal")))]
fn backend() -> Result<(BackendKind, BackendOptions, Option<PathBuf>), String> {
    let project = std::env::var("MESHMIG_GKE_PROJECT")
        .map_err(|_| "the gke feature runs on real Google Cloud: set MESHMIG_GKE_PROJECT to a project ID (gcloud authenticated, kubectl and istioctl on PATH)".to_string())?;
    let opts = BackendOptions {
        project: Some(project),
        istio_version: std::env::var("MESHMIG_ISTIO_VERSION").ok(),
        ..BackendOptions::default()
    };
    Ok((BackendKind::Gke, opts, Some(real_manifests()?)))
}

/// The backend this build of the suite runs on.
fn kind() -> BackendKind {
    if cfg!(any(feature = "gke", feature = "gke-rehearsal")) {
        BackendKind::Gke
    } else if cfg!(feature = "kind") {
        BackendKind::Kind
    } else if cfg!(feature = "kwok") {
        BackendKind::Kwok
    } else {
        BackendKind::Emulated
    }
}

fn run_trial(path: &Path) -> Result<(), Failed> {
    let (kind, backend_opts, manifests) = backend()?;
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

fn main() -> std::process::ExitCode {
    #[allow(unused_mut)]
    let mut args = Arguments::from_args();
    // The real backends run one scenario at a time: kwok runs share the process's network
    // namespace (addresses and ports), kind runs share cloud-provider-kind, GKE runs one
    // project's mesh feature.
    #[cfg(any(
        feature = "gke",
        feature = "kind",
        feature = "kwok",
        feature = "gke-rehearsal"
    ))]
    {
        args.test_threads = Some(1);
    }
    // kwok: this process's own network namespace, entered while it still has one thread.
    #[cfg(all(
        feature = "kwok",
        not(any(feature = "gke", feature = "kind", feature = "gke-rehearsal"))
    ))]
    if !args.list && !meshmig::netns::inside() {
        if let Err(e) = meshmig::netns::enter() {
            eprintln!("conformance: {}", meshmig::error_chain(&e));
            return std::process::ExitCode::from(2);
        }
    }
    // A rehearsal: the same namespace (its clusters are kwok clusters), and gcloud's
    // environment set while the process has one thread.
    #[cfg(feature = "gke-rehearsal")]
    if !args.list {
        if !meshmig::netns::inside() {
            if let Err(e) = meshmig::netns::enter() {
                eprintln!("conformance: {}", meshmig::error_chain(&e));
                return std::process::ExitCode::from(2);
            }
        }
        match meshmig::rehearsal::prepare() {
            Ok(p) => {
                let _ = PREPARED.set(p);
            }
            Err(e) => {
                eprintln!("conformance: {}", meshmig::error_chain(&e));
                return std::process::ExitCode::from(2);
            }
        }
    }
    // Emulated: as an ordinary user, a network namespace of its own (through a user namespace)
    // so the gateways can listen on port 80, else shifted ports (see meshmig::preflight).
    #[cfg(not(any(
        feature = "gke",
        feature = "kind",
        feature = "kwok",
        feature = "gke-rehearsal"
    )))]
    if !args.list && !meshmig::netns::inside() {
        use meshmig::preflight::{self, Listening};
        match preflight::prepare_emulated(&preflight::Host) {
            Ok(Listening::Host) => {}
            Ok(l) => eprintln!("conformance: {}", preflight::describe(&l)),
            Err(e) => {
                eprintln!("conformance: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    if !args.list {
        if let Err(why) = backend() {
            eprintln!("conformance: {why}");
            return std::process::ExitCode::from(2);
        }
    }
    let dir = root().join("scenarios");
    let trials: Vec<Trial> = meshmig::scenario::discover(&dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let name = meshmig::scenario::trial_name(&dir, &path);
            // The emulated backend binds 127.RUN.x.y loopback addresses, which only Linux
            // routes to `lo` by default: elsewhere its trials are listed as ignored.
            let emulated = !cfg!(any(
                feature = "gke",
                feature = "kind",
                feature = "kwok",
                feature = "gke-rehearsal"
            ));
            // Fault scenarios need the stand-ins' data plane (emulated, kwok): listed as
            // ignored on kind and GKE, where nothing can inject them.
            let cannot_inject =
                runner::load(&path, None).is_ok_and(|s| kind().unsupported_fault(&s).is_some());
            Trial::test(name, move || run_trial(&path))
                .with_ignored_flag((emulated && !cfg!(target_os = "linux")) || cannot_inject)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
