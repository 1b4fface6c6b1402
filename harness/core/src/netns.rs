//! A private network namespace for a run on real control planes (the kwok backend and the smoke
//! test of the real components), and for the emulated backend when this user may not bind port
//! 80 on the host (`meshmig_backends::preflight`).
//!
//! Everything such a run starts (etcd, API servers, istiod, Envoys, stand-in frontends, the load
//! balancer forwarders) listens inside a network namespace of its own, so nothing is reachable
//! from outside and nothing collides with the host's ports. As root the process moves itself into
//! a new network namespace; as an ordinary user it first makes a user namespace in which it is
//! root (its uid and gid mapped to 0), which Linux allows unprivileged where
//! `user.max_user_namespaces` is not 0 (Ubuntu 24.04 may also need AppArmor to allow it).
//!
//! Inside, `lo` is brought up and the run's pod and load-balancer ranges are added to it as local
//! routes (`ip route add local CIDR dev lo`), so every address of a range can be bound. They are
//! taken from 10.0.0.0/8 and 198.18.0.0/15, not 127.0.0.0/8: the API server's EndpointSlice
//! validation rejects loopback addresses.

use std::process::Command;

/// Errors making or setting up the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The process has more than one thread (a user namespace needs a single-threaded caller).
    #[error("entering a new network namespace: the process already runs {threads} threads (enter it before starting the async runtime)")]
    Threaded {
        /// Threads seen.
        threads: usize,
    },
    /// unshare(2) refused.
    #[error("unshare({what})")]
    Unshare {
        /// The flags.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the uid/gid maps failed.
    #[error("mapping this user to root in the new user namespace ({file})")]
    Map {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An `ip` command failed.
    #[error("setting up the namespace's loopback: `ip {args}` failed: {message}")]
    Ip {
        /// Its arguments.
        args: String,
        /// What it said.
        message: String,
    },
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// How this process got into its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entered {
    /// As root: a new network namespace.
    Root,
    /// As an ordinary user: a new user namespace (this uid mapped to 0) and a network namespace.
    UserNamespace,
}

/// Whether this process is already in a namespace made by meshmig (`MESHMIG_NETNS=1`, set by
/// [`enter`] for children and by [`reexec_command`]).
pub fn inside() -> bool {
    std::env::var_os("MESHMIG_NETNS").is_some_and(|v| v == "1")
}

/// Moves this (still single-threaded) process into a new network namespace, with a user
/// namespace first when not root, and brings `lo` up. Call it before any thread is started.
pub fn enter() -> Result<Entered, NetnsError> {
    let n = threads();
    if n > 1 {
        return Err(NetnsError::Threaded { threads: n });
    }
    let euid = unsafe { libc::geteuid() };
    let egid = unsafe { libc::getegid() };
    let entered = if euid == 0 {
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(NetnsError::Unshare {
                what: "CLONE_NEWNET".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Entered::Root
    } else {
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            return Err(NetnsError::Unshare {
                what: "CLONE_NEWUSER|CLONE_NEWNET".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        for (file, content) in [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("0 {euid} 1")),
            ("/proc/self/gid_map", format!("0 {egid} 1")),
        ] {
            std::fs::write(file, content).map_err(|source| NetnsError::Map {
                file: file.into(),
                source,
            })?;
        }
        Entered::UserNamespace
    };
    // SAFETY: single-threaded (checked above), so nothing reads the environment concurrently.
    unsafe { std::env::set_var("MESHMIG_NETNS", "1") };
    ip(&["link", "set", "lo", "up"])?;
    Ok(entered)
}

/// Runs `ip ARGS` (iproute2) in this namespace.
pub fn ip(args: &[&str]) -> Result<(), NetnsError> {
    ip_output(args).map(|_| ())
}

/// Runs `ip ARGS` (iproute2) in this namespace and returns what it printed.
pub fn ip_output(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip {
            args: args.join(" "),
            message: format!("{e} (install iproute2: apt-get install iproute2)"),
        })?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes every address of `cidr` local (bindable) in this namespace.
pub fn add_local_range(cidr: &str) -> Result<(), NetnsError> {
    ip(&["route", "add", "local", cidr, "dev", "lo"])
}

/// The address [`add_host_address`] gives the namespace.
pub const HOST_ADDRESS: &str = "192.168.255.254";

/// Gives the namespace an address on an interface that is not loopback, as a workstation has on
/// its network card. Istio's xDS clients (istioctl's `proxy-status`) take their node's IP from
/// the first such address (`GetPrivateIPsIfAvailable`, istio/istio
/// `pilot/pkg/util/network/ip.go`, which skips loopback interfaces), and istiod refuses a node
/// without one ("no valid IP address in the service node id or metadata"). The interface is one
/// end of a veth pair, `mm-host` (this machine's kernel offers no dummy interfaces); doing it
/// twice is harmless.
pub fn add_host_address() -> Result<(), NetnsError> {
    if ip(&["link", "show", "mm-host"]).is_ok() {
        return Ok(());
    }
    ip(&[
        "link",
        "add",
        "mm-host",
        "type",
        "veth",
        "peer",
        "name",
        "mm-host-peer",
    ])?;
    ip(&[
        "addr",
        "add",
        &format!("{HOST_ADDRESS}/32"),
        "dev",
        "mm-host",
    ])?;
    ip(&["link", "set", "mm-host-peer", "up"])?;
    ip(&["link", "set", "mm-host", "up"])
}

/// A command that runs `program ARGS` in a new network namespace (and a user namespace when not
/// root), for callers that already run threads (a test harness): `unshare --net [--user
/// --map-root-user] -- program ARGS`, with `MESHMIG_NETNS=1` set. The child must bring `lo` up
/// ([`ip`]`(&["link", "set", "lo", "up"])`) before it listens.
pub fn reexec_command(program: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    if unsafe { libc::geteuid() } != 0 {
        c.args(["--user", "--map-root-user"]);
    }
    c.arg("--net").arg("--").arg(program).args(args);
    c.env("MESHMIG_NETNS", "1");
    c
}

/// Whether a namespace can be made here: runs `ip link set lo up` in a fresh one (through
/// `unshare`), and says how.
pub fn probe() -> Result<String, NetnsError> {
    let ip_path = crate::tools::on_path("ip").ok_or_else(|| NetnsError::Ip {
        args: "link set lo up".into(),
        message: "ip was not found (install iproute2: apt-get install iproute2)".into(),
    })?;
    let out = reexec_command(&ip_path, &["link", "set", "lo", "up"])
        .output()
        .map_err(|e| NetnsError::Unshare {
            what: "unshare(1) --net (install util-linux)".into(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Unshare {
            what: "unshare(1) --net".into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(if unsafe { libc::geteuid() } == 0 {
        "a new network namespace (as root)".into()
    } else {
        "a user namespace (this user as its root) and a network namespace".into()
    })
}

/// The variable naming the file where a test re-run in a namespace records that its body ran.
const RAN_FILE_VAR: &str = "MESHMIG_NETNS_RAN_FILE";

/// Runs `body` on a tokio runtime in a network namespace of its own, for a test of a libtest
/// binary (which already runs threads, so cannot enter one itself): the binary runs itself
/// again under `unshare` for test `test` alone (`--exact`), and inside brings `lo` up and runs
/// the body. Panics (fails the test) when the run in the namespace fails, and when the body did
/// not run there: libtest passes `--exact NAME` with 0 tests when no test is called NAME, so
/// the body writes `test` to a file the caller reads back.
pub fn run_test_in_own_namespace<F: std::future::Future<Output = ()>>(
    test: &str,
    body: impl FnOnce() -> F,
) {
    if inside() {
        ip(&["link", "set", "lo", "up"]).expect("bringing lo up in the test's namespace");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the test");
        rt.block_on(body());
        if let Some(ran) = std::env::var_os(RAN_FILE_VAR) {
            std::fs::write(&ran, test).expect("recording that the test's body ran");
        }
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let ran = tempfile::NamedTempFile::new().expect("a file for the namespace's run to record in");
    let status = reexec_command(&exe, &[test, "--exact", "--nocapture"])
        .env(RAN_FILE_VAR, ran.path())
        .status()
        .expect("running the test under unshare");
    assert!(status.success(), "{test} in its namespace failed: {status}");
    let recorded = std::fs::read_to_string(ran.path()).unwrap_or_default();
    assert!(
        recorded == test,
        "{test} did not run in its namespace: `{} {test} --exact` ran no test of that name (is the name passed to run_test_in_own_namespace the test function's?)",
        exe.display()
    );
}
