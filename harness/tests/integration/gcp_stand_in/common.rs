//! What every stand-in test shares: the stand-in started with its clusters' provider, the real
//! gcloud run against it, and the readings of gcloud's progress and base64.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshmig::gcp_stand_in::{
    ClusterEndpoint, ClusterId, ClusterProvider, FixedProvider, GcpStandIn, Timing,
};

/// A CA certificate shaped like a real one (content is not checked by gcloud).
pub(crate) const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBstandin\n-----END CERTIFICATE-----\n";

pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

/// Clusters at a fixed endpoint, except those named `broken-*`, which never come up (as a kwok
/// cluster that fails to start will not).
struct TestProvider(std::sync::Arc<FixedProvider>);

#[async_trait::async_trait]
impl ClusterProvider for TestProvider {
    async fn create(&self, c: &ClusterId) -> Result<ClusterEndpoint, String> {
        if c.name.starts_with("broken-") {
            return Err(format!("cluster {} did not start", c.name));
        }
        self.0.create(c).await
    }
    async fn delete(&self, c: &ClusterId) -> Result<(), String> {
        self.0.delete(c).await
    }
}

pub(crate) async fn start() -> (GcpStandIn, tempfile::TempDir) {
    let s = GcpStandIn::start(
        std::sync::Arc::new(TestProvider(FixedProvider::new("127.0.0.1:6443", CA))),
        Timing {
            pending: Duration::from_millis(300),
            running: Duration::from_millis(1200),
        },
    )
    .await
    .expect("stand-in starts");
    (s, tempfile::tempdir().expect("scratch dir"))
}

/// Runs the real gcloud with the stand-in's environment (and KUBECONFIG in the scratch dir).
pub(crate) async fn gcloud(s: &GcpStandIn, scratch: &Path, args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new("gcloud");
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("KUBECONFIG", scratch.join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in s.endpoint_env(scratch).expect("env") {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .await
        .expect("the real gcloud must be installed (gcloud 528 at /usr/bin/gcloud)");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    };
    eprintln!(
        "$ gcloud {} -> exit {} in {:.1}s\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        o.code,
        o.took.as_secs_f64(),
        o.stdout,
        o.stderr
    );
    o
}

/// The progress line as a terminal shows it (`Creating cluster X in Z...done.`), from what the
/// non-interactive tracker writes to a pipe.
pub(crate) fn progress(stderr: &str) -> String {
    meshmig::gcloud::normalise_progress(stderr)
}

pub(crate) fn b64(s: &str) -> String {
    // RFC 4648 base64, to compare with what the stand-in reports and gcloud writes.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}
