//! Issue 15, item 3: every gcloud command the GKE backend can issue goes through the real gcloud's
//! argument parser. There is no Google Cloud here, but gcloud parses its command line locally
//! and sends its requests wherever `CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>` points: at a local
//! stand-in that answers every request with an HTTP 400. A command gcloud accepts gets as far as
//! a request (and fails on the stand-in's answer, exit 1) or succeeds without one (`gcloud
//! version`); a command it refuses never sends one.
//!
//! How gcloud 528 refuses a command line (read in /usr/lib/google-cloud-sdk/lib):
//! - `googlecloudsdk/calliope/parser_errors.py`: `ArgumentError` (unrecognized arguments, invalid
//!   choice, `RequiredMutexError` "Exactly one of (...) must be specified.", a flag's bad value)
//!   is intercepted by `parser_extensions.ArgumentParser.error()`
//!   (`googlecloudsdk/calliope/parser_extensions.py`), which logs `ERROR: (gcloud.X.Y) MESSAGE`,
//!   writes the command's `Usage:` and calls `self.exit(2, ...)`: exit status 2, before the
//!   command runs.
//! - `googlecloudsdk/calliope/exceptions.py`: the argument errors a command's `Run` raises itself
//!   (`InvalidArgumentException` "Invalid value for [...]", `RequiredArgumentException`,
//!   `MinimumArgumentException` "One of [...] must be supplied.", ...) and
//!   `googlecloudsdk/core/properties.py`'s `RequiredPropertyError` ("The required property
//!   [project] is not currently set.") go through `HandleError`, which exits with the error's
//!   `exit_code`, 1 by default: the same status as an API error, but before any request. So exit
//!   1 counts as accepted only if a request reached the stand-in.
//!
//! An HTTP error and not a dead port: on a refused connection apitools retries with backoff
//! (`third_party/apitools/base/py/http_wrapper.py`, `HandleExceptionsAndRebuildHttpConnections`
//! retries socket errors; measured here: 26 s for `clusters list`), while a 4xx other than 429 is
//! not retried.
//!
//! Needs the real gcloud (feature `real`, as in `.ci/run`): without it on PATH the tests fail.
#![cfg(feature = "real")]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use meshmig::backend::exec::Cmd;
use meshmig::backend::gke::{gcloud_commands, GkeConfig};
use meshmig::scenario::Scenario;

/// How long one gcloud run may take (it takes 1–2 s here): a command that prompts or retries
/// must not hang the suite.
const TIMEOUT: Duration = Duration::from_secs(60);

/// gcloud's start is about a second of Python: four at a time.
const AT_ONCE: usize = 4;

/// The APIs the backend's commands reach (fleet `mesh enable` also asks serviceusage about
/// meshconfig, `clusters create` about container).
const APIS: [&str; 7] = [
    "CONTAINER",
    "GKEHUB",
    "SERVICEUSAGE",
    "COMPUTE",
    "DNS",
    "MESHCONFIG",
    "CLOUDRESOURCEMANAGER",
];

/// The real gcloud, or a failure that says how to get it.
fn gcloud() -> PathBuf {
    meshmig::tools::on_path("gcloud").unwrap_or_else(|| {
        panic!(
            "gcloud is not on PATH: this test runs every gcloud command of the GKE backend through \
             the real Google Cloud CLI's parser (gcloud 528 in CI's image); install google-cloud-cli \
             (https://cloud.google.com/sdk/docs/install) or run without --features real"
        )
    })
}

/// What one gcloud run did.
#[derive(Debug)]
struct Run {
    line: String,
    code: Option<i32>,
    stderr: String,
    /// The requests that reached the stand-in (`METHOD /path`).
    requests: Vec<String>,
    took: Duration,
}

impl Run {
    /// Why gcloud refused the command, if it did: a usage error (exit 2), or any other failure
    /// before a request was sent (see the module's notes for where this comes from).
    fn refusal(&self) -> Option<String> {
        let error = self
            .stderr
            .lines()
            .find(|l| l.starts_with("ERROR:"))
            .unwrap_or("(no ERROR line)");
        match self.code {
            Some(0) => None,
            Some(2) => Some(format!("usage error (exit 2): {error}")),
            Some(c) if self.requests.is_empty() => Some(format!(
                "refused before any API request (exit {c}): {error}"
            )),
            Some(_) => None,
            None => Some(format!("did not end within {TIMEOUT:?} (killed)")),
        }
    }
}

/// A local endpoint for every API: answers each request with an HTTP 400 and keeps its line.
struct StandIn {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl StandIn {
    async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.uri()));
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"error": {"code": 400, "message": "meshmig parser check: no Google Cloud here", "status": "FAILED_PRECONDITION"}}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            requests,
            server,
        }
    }

    /// The environment gcloud runs in: nothing of the caller's but PATH, a scratch
    /// configuration and home in `dir`, a dummy access token, no prompts, no update check, no
    /// usage reporting, every API at the stand-in.
    fn env(&self, dir: &Path) -> Vec<(String, OsString)> {
        let token = dir.join("token");
        std::fs::write(&token, "dummy-token-of-the-parser-check\n").unwrap();
        let mut env: Vec<(String, OsString)> = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
            ("HOME".into(), dir.into()),
            ("CLOUDSDK_CONFIG".into(), dir.join("config").into()),
            ("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE".into(), token.into()),
            ("CLOUDSDK_CORE_DISABLE_PROMPTS".into(), "1".into()),
            (
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK".into(),
                "1".into(),
            ),
            ("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING".into(), "1".into()),
        ];
        for api in APIS {
            env.push((
                format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"),
                self.url.clone().into(),
            ));
        }
        env
    }

    fn stop(self) -> Vec<String> {
        self.server.abort();
        self.requests.lock().unwrap().clone()
    }
}

/// Runs one gcloud command against a stand-in of its own, within [`TIMEOUT`].
async fn run(cmd: &Cmd) -> Run {
    let stand_in = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::new(&cmd.program);
    c.args(&cmd.args)
        .env_clear()
        .envs(stand_in.env(dir.path()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let out = tokio::time::timeout(TIMEOUT, c.output()).await;
    let took = started.elapsed();
    let (code, stderr) = match out {
        Ok(o) => {
            let o = o.unwrap_or_else(|e| panic!("starting {}: {e}", cmd.program));
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        }
        Err(_) => (None, String::new()),
    };
    Run {
        line: cmd.line(),
        code,
        stderr,
        requests: stand_in.stop(),
        took,
    }
}

/// Runs commands, `AT_ONCE` at a time, in their order.
async fn run_all(cmds: &[Cmd]) -> Vec<Run> {
    futures::stream::iter(cmds)
        .map(run)
        .buffered(AT_ONCE)
        .collect()
        .await
}

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    meshmig::runner::load(&path, None).unwrap()
}

fn gcloud_cmd(args: &[&str]) -> Cmd {
    Cmd::new(&gcloud().display().to_string(), args.iter().copied())
}

/// The commands of both GKE scenarios, as the plan snapshots configure them: canary-cluster with
/// the embedded DNS server, published-cleanup with a Cloud DNS zone (its record commands too).
fn backend_commands() -> Vec<Cmd> {
    let mut canary = GkeConfig::new("demo");
    canary.run_id = "run42".into();
    let mut cleanup = canary.clone();
    cleanup.dns_zone = Some("shop-zone".into());
    let mut published = scenario("published-cleanup.yaml");
    published.dns.domain = "shop.example.org".into();
    let mut seen = BTreeSet::new();
    gcloud_commands(&canary, &scenario("canary-cluster.yaml"))
        .into_iter()
        .chain(gcloud_commands(&cleanup, &published))
        .filter(|c| seen.insert(c.args.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gcloud_command_of_the_gke_backend_passes_the_real_parser() {
    gcloud();
    let cmds = backend_commands();
    let lines: Vec<String> = cmds.iter().map(Cmd::line).collect();
    // The defect commands are among them: published-cleanup's H1 deletes a cluster that does not
    // exist, and clean-up removes the membership without `unregister` (which needs the cluster).
    for must in [
        "gcloud container clusters delete cluster-with-managed-asm-run42 --zone=us-central1-a --project=demo --quiet",
        "gcloud container fleet memberships delete cluster-with-csm-membership-run42 --location=us-central1 --project=demo --quiet",
        "gcloud dns record-sets update shop.example.org. --zone=shop-zone --type=A",
        "gcloud services list --enabled --project=demo",
        "gcloud version",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(must)),
            "{must:?} is not among the commands:\n{}",
            lines.join("\n")
        );
    }
    let started = Instant::now();
    let runs = run_all(&cmds).await;
    let refused: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            r.refusal()
                .map(|why| format!("$ {}\n  {why}\n  stderr:\n{}", r.line, r.stderr))
        })
        .collect();
    for r in &runs {
        eprintln!(
            "{:>5.1}s exit {:?}, {} request(s): {}",
            r.took.as_secs_f64(),
            r.code,
            r.requests.len(),
            r.line
        );
    }
    eprintln!(
        "{} gcloud commands through the real parser in {:.1}s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        refused.is_empty(),
        "{} of {} commands refused by the real gcloud:\n{}",
        refused.len(),
        runs.len(),
        refused.join("\n")
    );
}

/// The check flags what the real parser refuses, in both ways gcloud refuses, and passes what
/// it accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_flags_commands_the_real_gcloud_refuses() {
    let runs = run_all(&[
        // What the old teardown ran: `unregister` needs the cluster (a usage error, exit 2).
        gcloud_cmd(&[
            "container",
            "fleet",
            "memberships",
            "unregister",
            "cluster-with-csm-membership-run42",
            "--project",
            "demo",
            "--quiet",
        ]),
        // No zone: the command's own check, exit 1 before any request.
        gcloud_cmd(&[
            "container",
            "clusters",
            "delete",
            "cluster-with-csm-run42",
            "--project=demo",
            "--quiet",
        ]),
        // Accepted: it asks the stand-in and fails on its answer.
        gcloud_cmd(&[
            "container",
            "clusters",
            "list",
            "--project=demo",
            "--format=json",
        ]),
    ])
    .await;
    let why = runs[0]
        .refusal()
        .expect("unregister without a cluster is refused");
    assert!(why.starts_with("usage error (exit 2)"), "{why}");
    assert!(
        runs[0].stderr.contains(
            "Exactly one of (--gke-cluster | --gke-uri | [--context : --kubeconfig]) must be specified."
        ),
        "{}",
        runs[0].stderr
    );
    let why = runs[1]
        .refusal()
        .expect("a delete without a zone is refused");
    assert!(
        why.starts_with("refused before any API request (exit 1)"),
        "{why}"
    );
    assert!(
        why.contains("One of [--location, --zone, --region] must be supplied."),
        "{why}"
    );
    assert_eq!(runs[2].refusal(), None, "{:?}", runs[2]);
    assert_eq!(
        runs[2].requests,
        ["GET /v1/projects/demo/locations/-/clusters?alt=json"]
    );
    assert_eq!(runs[2].code, Some(1), "{}", runs[2].stderr);
}

/// `meshmig doctor --backend gke` prints the versions of gcloud and of gke-gcloud-auth-plugin, as
/// the real tools print them; gcloud's calls go to the stand-in, so the project's APIs are
/// reported unreachable (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_prints_the_real_gcloud_and_auth_plugin_versions() {
    gcloud();
    let stand_in = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshmig"))
        .args(["doctor", "--backend", "gke", "--project", "demo"])
        .env_clear()
        .envs(stand_in.env(dir.path()))
        .kill_on_drop(true)
        .output();
    let o = tokio::time::timeout(TIMEOUT, o).await.unwrap().unwrap();
    let requests = stand_in.stop();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok      gcloud version: Google Cloud SDK ")),
        "{out}"
    );
    if meshmig::tools::on_path("gke-gcloud-auth-plugin").is_some() {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok      gke-gcloud-auth-plugin: ")
                    && l.contains(" (Kubernetes v")),
            "{out}"
        );
    }
    assert!(
        out.contains("MISSING access to project demo (gcloud services list failed)"),
        "{out}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /v1/projects/demo/services?")),
        "{requests:?}"
    );
}

/// The real gcloud 528 lists an aggregated Compute Engine kind whose requests failed with exit 0,
/// a warning and `[]` (what gke.rs's `a_partial_compute_listing_is_not_verified` feeds the
/// backend), and the backend reads it as partial; a global kind fails outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_aggregated_compute_listing_exits_0_and_is_read_as_partial() {
    gcloud();
    let cfg = GkeConfig::new("demo");
    let c = meshmig::backend::gke::Commands::new(&cfg, &[]);
    let runs = run_all(&[
        c.list_compute("forwarding-rules"),
        c.list_compute("firewall-rules"),
    ])
    .await;
    assert_eq!(runs[0].code, Some(0), "{:?}", runs[0]);
    let warning = meshmig::backend::gke::partial_listing(&runs[0].stderr);
    assert_eq!(
        warning.as_deref(),
        Some("Some requests did not succeed. - meshmig parser check: no Google Cloud here"),
        "{:?}",
        runs[0]
    );
    assert_eq!(runs[1].code, Some(1), "{:?}", runs[1]);
}
