//! Command lines the real-cluster backends (kind and GKE) build alike: kubectl's context
//! commands (A2, A3, C2) and istioctl's install (A4).

use super::exec::Cmd;

/// A2, C2: renames the context the cluster's tool wrote (`from`) to the procedure's name.
pub fn rename_context(from: &str, name: &str) -> Cmd {
    Cmd::new("kubectl", ["config", "rename-context", from, name])
}

/// A3.
pub fn get_contexts() -> Cmd {
    Cmd::new("kubectl", ["config", "get-contexts", "--output=name"])
}

/// A4: `istioctl install` of a profile into a context, run by the `istioctl` given.
pub fn istioctl_install(istioctl: &str, context: &str, profile: &str) -> Cmd {
    Cmd::new(
        istioctl,
        [
            "install",
            &format!("--context={context}"),
            "--set",
            &format!("profile={profile}"),
            "-y",
        ],
    )
}
