//! The command line's words: the subcommands and their flags (clap), and how the flags become
//! the library's options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Parser, Subcommand};

use meshmig::backend::registry::BACKENDS;
use meshmig::runner::BackendOptions;
use meshmig::sampler::Pace;
use meshmig::stats::SplitParams;

/// `--backend`'s values: every backend in the registry, with its one line.
fn backend_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        BACKENDS
            .iter()
            .map(|b| PossibleValue::new(b.name()).help(b.about())),
    )
}

#[derive(Parser)]
#[command(
    name = "meshmig",
    version,
    about = "Conformance harness for the Istio → managed Cloud Service Mesh canary-cluster migration"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How split checks sample and decide.
#[derive(clap::Args, Clone, Copy)]
pub struct SplitArgs {
    /// Chance of failing a correct split.
    #[arg(long, default_value_t = 1e-4)]
    pub alpha: f64,
    /// Chance of passing a split off by at least --delta points (and of missing a --lambda leak).
    #[arg(long, default_value_t = 1e-3)]
    pub beta: f64,
    /// The smallest misroute to catch, in percentage points.
    #[arg(long, default_value_t = 10.0)]
    pub delta: f64,
    /// The smallest leak to a destination expected at 0% to catch, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Requests after which an undecided check fails.
    #[arg(long, default_value_t = 5000)]
    pub max_requests: u64,
    /// Share of error answers tolerated, in percent (0: any error fails).
    #[arg(long, default_value_t = 0.0)]
    pub max_error_rate: f64,
    /// Concurrent requests.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// At most this many requests a second.
    #[arg(long)]
    pub rate: Option<f64>,
}

impl SplitArgs {
    pub fn params(&self) -> SplitParams {
        SplitParams {
            alpha: self.alpha,
            beta: self.beta,
            delta: self.delta / 100.0,
            lambda: self.lambda / 100.0,
            max_requests: self.max_requests,
            max_error_rate: self.max_error_rate / 100.0,
        }
    }

    pub fn pace(&self) -> Pace {
        Pace {
            concurrency: self.concurrency,
            rate: self.rate,
        }
    }
}

/// Settings of the real-cluster backends.
#[derive(clap::Args, Clone)]
pub struct CloudArgs {
    /// GKE: the Google Cloud project (or MESHMIG_GKE_PROJECT).
    #[arg(long)]
    pub project: Option<String>,
    /// GKE: one zone for every cluster (default: each cluster's zone in the scenario).
    #[arg(long)]
    pub zone: Option<String>,
    /// GKE: a Cloud DNS managed zone for the cut-over (default: the embedded DNS server). Needs
    /// --domain: a domain delegated to that zone, which you control (the scenario's
    /// `example.com` cannot be delegated).
    #[arg(long, requires = "domain")]
    pub dns_zone: Option<String>,
    /// The cut-over's domain instead of the scenario's.
    #[arg(long)]
    pub domain: Option<String>,
    /// GKE: how long the managed control plane may take to become ACTIVE (e.g. 20m).
    #[arg(long, value_parser = parse_duration)]
    pub mesh_timeout: Option<Duration>,
    /// A fixed run id (default: a new one).
    #[arg(long)]
    pub run_id: Option<String>,
    /// kind, GKE: the Istio release to install, e.g. 1.28.0 (fetched with its checksum into
    /// ~/.cache/meshmig; default: istioctl on PATH).
    #[arg(long)]
    pub istio_version: Option<String>,
    /// kind: the folder of cluster configurations (default: kind-configs/).
    #[arg(long)]
    pub kind_configs: Option<PathBuf>,
    /// kind: a GCE metadata stand-in image to load (built from kind-configs/metadata.Dockerfile).
    #[arg(long)]
    pub metadata_image: Option<String>,
    /// kind: a kit built by kind-configs/kit/build on a machine with no image registry (its
    /// folder, holding kit.json; default: MESHMIG_KIND_KIT).
    #[arg(long)]
    pub kind_kit: Option<PathBuf>,
    /// GKE: rehearse: the real gcloud against a local stand-in of the Google Cloud APIs, whose
    /// clusters are kwok clusters (needs `meshmig tools install`, Envoy, gcloud with
    /// gke-gcloud-auth-plugin; nothing reaches Google). `--project` may be any id, e.g. demo.
    #[arg(long)]
    pub rehearsal: bool,
}

impl CloudArgs {
    pub fn options(&self) -> BackendOptions {
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
            kind_kit: self.kind_kit.clone(),
            rehearsal: None,
        }
    }
}

/// `90s`, `20m`, `6h`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
pub enum Command {
    /// Run a scenario: every step with its evidence; teardown always runs.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Where the procedure runs.
        #[arg(long, default_value = "emulated", value_parser = backend_names())]
        backend: String,
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
        #[arg(long, default_value = "emulated", value_parser = backend_names())]
        backend: String,
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
    /// kind: one of Online Boutique's services as a stand-in, the entrypoint of the images the
    /// kind kit builds under the upstream image names (gRPC health, the frontend's home page,
    /// redis-cart's PING, the load generator's requests).
    Boutique {
        /// The service (frontend, cartservice, redis-cart, loadgenerator…).
        service: String,
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
        #[arg(long, default_value = "gke", value_parser = backend_names())]
        backend: String,
        /// kind: the kit the runs used (its kind and container engine; default:
        /// MESHMIG_KIND_KIT).
        #[arg(long)]
        kind_kit: Option<PathBuf>,
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
        #[arg(long, default_value = "emulated", value_parser = backend_names())]
        backend: String,
        /// GKE: the project to check (or MESHMIG_GKE_PROJECT).
        #[arg(long)]
        project: Option<String>,
        /// kind: check a kit built by kind-configs/kit/build (default: MESHMIG_KIND_KIT).
        #[arg(long)]
        kind_kit: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ToolsCommand {
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
pub struct ToolVersions {
    /// Istio release (or a module pseudo-version v0.0.0-DATE-COMMIT).
    #[arg(long, env = "MESHMIG_ISTIO")]
    pub istio: Option<String>,
    /// Kubernetes release.
    #[arg(long, env = "MESHMIG_KUBERNETES")]
    pub kubernetes: Option<String>,
    /// etcd release.
    #[arg(long, env = "MESHMIG_ETCD")]
    pub etcd: Option<String>,
    /// kwok release.
    #[arg(long, env = "MESHMIG_KWOK")]
    pub kwok: Option<String>,
    /// The tools folder.
    #[arg(long, env = "MESHMIG_TOOLS_DIR")]
    pub tools_dir: Option<PathBuf>,
}

impl ToolVersions {
    pub fn tools(&self) -> meshmig::tools::Tools {
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
