//! The real components, built on this machine from their Go modules (`meshmig tools install`):
//! istioctl and istiod (pilot-discovery), kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl, etcd, and kwok.
//!
//! Everything comes through Go's module proxy and is checked against Go's checksum database
//! (`GONOSUMDB`/`GOFLAGS=-insecure` are never set); nothing else is downloaded. Each component is
//! built into `TOOLS/NAME-VERSION/bin/` (TOOLS is `MESHMIG_TOOLS_DIR`, else
//! `~/.cache/meshmig/tools`) through a scratch folder and a rename, so a half-built component is
//! never taken for a built one, and several versions can sit side by side (a matrix of Istio
//! versions). `TOOLS/NAME-VERSION/meshmig-tool.json` records what was built, from which module
//! version, with which Go, how long it took and how big each binary is.
//!
//! How each is built:
//! - **Istio**: `go install istio.io/istio/istioctl/cmd/istioctl@MOD
//!   istio.io/istio/pilot/cmd/pilot-discovery@MOD` (Istio's go.mod has no replace directives
//!   from 1.25 on), with `-X istio.io/istio/pkg/version.buildVersion=V` (and buildTag, buildHub,
//!   buildStatus) so that istioctl reports V and renders release images. Istio tags have no `v`,
//!   so MOD is the pseudo-version of the tag commit: asked of the proxy (`go list -m
//!   istio.io/istio@V`), else taken from [`KNOWN_ISTIO`].
//! - **Kubernetes**: a generated wrapper module requires `k8s.io/kubernetes vX.Y.Z` and, for every
//!   `k8s.io/M => ./staging/…` line of that release's own go.mod, `replace k8s.io/M => k8s.io/M
//!   v0.Y.Z` (the list is read from the downloaded go.mod, never hard-coded); its `go` and
//!   `godebug` lines are copied. The version is stamped into component-base and client-go.
//! - **etcd**: a wrapper module that requires `go.etcd.io/etcd/server/v3` (its own replace
//!   directives only apply when it is the main module).
//! - **kwok**: `go install sigs.k8s.io/kwok/cmd/kwok@vX`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod locate;
pub use locate::{find_envoy, on_path, MissingTool};

/// Errors of the tool builder.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// Go is not installed.
    #[error("finding the Go toolchain (`go` on PATH): install Go 1.25 or newer (apt-get install golang-go, or from go.dev)")]
    NoGo,
    /// A file or folder could not be read or written.
    #[error("{doing}: {path}")]
    Io {
        /// What was being done.
        doing: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A go command failed.
    #[error("{doing}: `{command}` exited {code:?}; the last lines of its output:\n{tail}")]
    Go {
        /// What was being done.
        doing: String,
        /// The command.
        command: String,
        /// Its exit code.
        code: Option<i32>,
        /// The end of its output (the whole output is in the log named in `doing`).
        tail: String,
    },
    /// A version could not be resolved to a module version.
    #[error("resolving {component} {version} to a module version: {why}")]
    Resolve {
        /// The component.
        component: String,
        /// The version asked for.
        version: String,
        /// Why not.
        why: String,
    },
    /// A component is not built.
    #[error("{component} {version} is not built in {dir}: run `{install}`")]
    Missing {
        /// The component.
        component: String,
        /// Its version.
        version: String,
        /// The tools folder.
        dir: PathBuf,
        /// The command that builds it.
        install: String,
    },
}

/// Istio release tags this project has resolved to the proxy's pseudo-versions, for proxies that
/// refuse a query by tag (the one on the machines this was written on answers 403 to
/// `istio.io/istio/@v/1.31.0.info` but serves the pseudo-version).
///
/// - `1.31.0` → commit eed52ebb66ad of 2026-08-27 on release-1.31: its `VERSION` file says
///   1.31, it follows the 1.31.0-rc.0 tag (2026-08-19), requires istio.io/api
///   v1.31.0-rc.0.0.20260824… and Go 1.26. It is the only Istio build the registry here serves
///   whole (the 1.30 build it lists needs an istio.io/api version the proxy refuses), and the
///   tag itself could not be checked against a clone of istio/istio here: the stored mirror ends
///   on 2026-08-22. On a proxy that answers tag queries, `go list -m` decides instead.
pub const KNOWN_ISTIO: &[(&str, &str)] = &[("1.31.0", "v0.0.0-20260827124520-eed52ebb66ad")];

/// The versions to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// Istio release (istioctl, pilot-discovery).
    pub istio: String,
    /// Kubernetes release (kube-apiserver, controller-manager, scheduler, kubectl).
    pub kubernetes: String,
    /// etcd release.
    pub etcd: String,
    /// kwok release.
    pub kwok: String,
}

impl Default for Versions {
    /// Istio 1.31.0 (the newest Istio the registry here serves; 1.28 is not served), Kubernetes
    /// 1.35.4 (supported by Istio 1.31; the newest release whose staging modules the proxy serves
    /// complete), etcd 3.6.16 (Kubernetes 1.35's tested etcd line), kwok 0.8.0.
    fn default() -> Self {
        Self {
            istio: "1.31.0".into(),
            kubernetes: "1.35.4".into(),
            etcd: "3.6.16".into(),
            kwok: "0.8.0".into(),
        }
    }
}

/// The components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// istioctl and pilot-discovery (istiod).
    Istio,
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubectl.
    Kubernetes,
    /// etcd.
    Etcd,
    /// kwok (fake kubelets).
    Kwok,
}

impl Component {
    /// All of them, in build order (cheapest first).
    pub const ALL: [Component; 4] = [
        Component::Kwok,
        Component::Etcd,
        Component::Istio,
        Component::Kubernetes,
    ];

    /// Its name (folder prefix).
    pub fn name(self) -> &'static str {
        match self {
            Component::Istio => "istio",
            Component::Kubernetes => "kubernetes",
            Component::Etcd => "etcd",
            Component::Kwok => "kwok",
        }
    }

    /// The binaries it provides.
    pub fn binaries(self) -> &'static [&'static str] {
        match self {
            Component::Istio => &["istioctl", "pilot-discovery"],
            Component::Kubernetes => &[
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
            ],
            Component::Etcd => &["etcd"],
            Component::Kwok => &["kwok"],
        }
    }

    /// Its version among `v`.
    pub fn version(self, v: &Versions) -> &str {
        match self {
            Component::Istio => &v.istio,
            Component::Kubernetes => &v.kubernetes,
            Component::Etcd => &v.etcd,
            Component::Kwok => &v.kwok,
        }
    }

    /// The component that provides a binary.
    pub fn of_binary(binary: &str) -> Option<Component> {
        Component::ALL
            .into_iter()
            .find(|c| c.binaries().contains(&binary))
    }
}

/// What `meshmig-tool.json` records of a built component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Built {
    /// The component.
    pub name: String,
    /// The release.
    pub version: String,
    /// The Go module and version it was built from.
    pub module: String,
    /// `go version`.
    pub go: String,
    /// Binary → size in bytes.
    pub binaries: BTreeMap<String, u64>,
    /// How long the build took.
    pub build_seconds: f64,
}

/// The project's cache folder: `~/.cache/meshmig` (the tools, the Go caches `.ci/run` keeps, the
/// fuzz corpora, and the Python environment `.ci/setup` makes where the system refuses user
/// installs).
pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/meshmig")
}

/// The tools folder: `MESHMIG_TOOLS_DIR`, else `~/.cache/meshmig/tools`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MESHMIG_TOOLS_DIR") {
        return PathBuf::from(d);
    }
    cache_dir().join("tools")
}

/// Where the tools of one set of versions are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The tools folder.
    pub dir: PathBuf,
    /// The versions.
    pub versions: Versions,
}

impl Tools {
    /// The default folder with the default versions (each overridable by `MESHMIG_ISTIO`,
    /// `MESHMIG_KUBERNETES`, `MESHMIG_ETCD`, `MESHMIG_KWOK`).
    pub fn from_env() -> Self {
        let mut versions = Versions::default();
        for (var, slot) in [
            ("MESHMIG_ISTIO", &mut versions.istio),
            ("MESHMIG_KUBERNETES", &mut versions.kubernetes),
            ("MESHMIG_ETCD", &mut versions.etcd),
            ("MESHMIG_KWOK", &mut versions.kwok),
        ] {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    *slot = v;
                }
            }
        }
        Self {
            dir: default_dir(),
            versions,
        }
    }

    /// The folder of a component.
    pub fn home(&self, c: Component) -> PathBuf {
        self.dir
            .join(format!("{}-{}", c.name(), c.version(&self.versions)))
    }

    /// What was built of a component, if it is complete.
    pub fn built(&self, c: Component) -> Option<Built> {
        let home = self.home(c);
        let meta: Built =
            serde_json::from_slice(&std::fs::read(home.join("meshmig-tool.json")).ok()?).ok()?;
        c.binaries()
            .iter()
            .all(|b| home.join("bin").join(b).is_file())
            .then_some(meta)
    }

    /// The path of a built binary, or how to build it.
    pub fn binary(&self, binary: &str) -> Result<PathBuf, ToolsError> {
        let c = Component::of_binary(binary).unwrap_or(Component::Kubernetes);
        let p = self.home(c).join("bin").join(binary);
        if self.built(c).is_some() && p.is_file() {
            Ok(p)
        } else {
            Err(ToolsError::Missing {
                component: c.name().into(),
                version: c.version(&self.versions).into(),
                dir: self.dir.clone(),
                install: format!("meshmig tools install --only {}", c.name()),
            })
        }
    }
}

/// How a component is built: the scratch module (if any) and the go commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// `go.mod` of a wrapper module, if one is needed.
    pub go_mod: Option<String>,
    /// The go commands, each an argument vector (after `go`), run in the scratch folder with
    /// `GOBIN`/`-o` pointing at the component's `bin/`.
    pub commands: Vec<Vec<String>>,
    /// The module and version built from.
    pub module: String,
}

/// `-X` flags stamping a Kubernetes version into component-base and client-go.
pub fn kubernetes_ldflags(version: &str) -> String {
    let (major, minor) = version
        .split_once('.')
        .map(|(a, b)| (a, b.split('.').next().unwrap_or("0")))
        .unwrap_or(("1", "0"));
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push(format!("-X {pkg}.gitVersion=v{version}"));
        flags.push(format!("-X {pkg}.gitMajor={major}"));
        flags.push(format!("-X {pkg}.gitMinor={minor}"));
        flags.push(format!("-X {pkg}.gitTreeState=clean"));
    }
    flags.join(" ")
}

/// `-X` flags stamping an Istio release.
pub fn istio_ldflags(version: &str) -> String {
    let v = "istio.io/istio/pkg/version";
    format!(
        "-s -w -X {v}.buildVersion={version} -X {v}.buildTag={version} -X {v}.buildHub=docker.io/istio -X {v}.buildStatus=Clean"
    )
}

/// The wrapper go.mod for `k8s.io/kubernetes vVERSION`, from that release's own go.mod: every
/// `k8s.io/M => ./staging/…` replacement becomes `k8s.io/M => k8s.io/M v0.MINOR.PATCH`; the `go`
/// and `godebug` lines are copied.
pub fn kubernetes_wrapper(version: &str, upstream_go_mod: &str) -> Result<String, String> {
    let staging_version = format!(
        "v0.{}",
        version
            .split_once('.')
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("{version} is not MAJOR.MINOR.PATCH"))?
    );
    let mut out = String::from(
        "// Generated by `meshmig tools install`: builds Kubernetes' commands from the published\n\
         // modules (k8s.io/kubernetes replaces its staging modules with local folders).\n\
         module meshmig.local/kubernetes-wrapper\n\n",
    );
    let mut in_godebug = false;
    let mut replaces = Vec::new();
    for line in upstream_go_mod.lines() {
        let t = line.trim();
        if t.starts_with("go ") && !t.contains("=>") {
            out.push_str(t);
            out.push('\n');
        } else if t.starts_with("godebug") {
            out.push_str(t);
            out.push('\n');
            in_godebug = t.ends_with('(');
        } else if in_godebug {
            out.push_str(line);
            out.push('\n');
            if t == ")" {
                in_godebug = false;
            }
        } else if let Some((left, right)) = t.split_once("=>") {
            let module = left
                .trim()
                .trim_start_matches("replace")
                .split_whitespace()
                .next()
                .unwrap_or_default();
            if right.trim().starts_with("./staging/") && module.starts_with("k8s.io/") {
                replaces.push(format!("replace {module} => {module} {staging_version}"));
            }
        }
    }
    if replaces.is_empty() {
        return Err("its go.mod replaces no k8s.io module with ./staging".into());
    }
    out.push_str(&format!("\nrequire k8s.io/kubernetes v{version}\n\n"));
    out.push_str(&replaces.join("\n"));
    out.push('\n');
    Ok(out)
}

/// The recipe of a component (`istio_module`: Istio's resolved module version).
pub fn recipe(
    c: Component,
    v: &Versions,
    istio_module: &str,
    kubernetes_go_mod: Option<&str>,
    bin: &Path,
) -> Result<Recipe, String> {
    let bin_s = bin.display().to_string();
    let o = |name: &str| format!("{bin_s}/{name}");
    Ok(match c {
        Component::Istio => Recipe {
            go_mod: None,
            commands: vec![vec![
                "install".into(),
                "-trimpath".into(),
                format!("-ldflags={}", istio_ldflags(&v.istio)),
                format!("istio.io/istio/istioctl/cmd/istioctl@{istio_module}"),
                format!("istio.io/istio/pilot/cmd/pilot-discovery@{istio_module}"),
            ]],
            module: format!("istio.io/istio@{istio_module}"),
        },
        Component::Kubernetes => {
            let go_mod = kubernetes_wrapper(
                &v.kubernetes,
                kubernetes_go_mod.ok_or("k8s.io/kubernetes' go.mod was not downloaded")?,
            )?;
            // One `go build` for the four commands (`-o` a folder): go compiles their shared
            // packages once and links the four binaries concurrently, where four builds in a
            // row left a core idle through each link.
            let mut command: Vec<String> = vec![
                "build".into(),
                "-trimpath".into(),
                format!("-ldflags={}", kubernetes_ldflags(&v.kubernetes)),
                "-o".into(),
                format!("{bin_s}/"),
            ];
            command.extend(
                Component::Kubernetes
                    .binaries()
                    .iter()
                    .map(|name| format!("k8s.io/kubernetes/cmd/{name}")),
            );
            let commands = vec![command];
            Recipe {
                go_mod: Some(go_mod),
                commands,
                module: format!("k8s.io/kubernetes@v{}", v.kubernetes),
            }
        }
        Component::Etcd => Recipe {
            go_mod: Some(
                "// Generated by `meshmig tools install`: builds etcd's server command.\nmodule meshmig.local/etcd-wrapper\n\ngo 1.25\n".into(),
            ),
            commands: vec![
                vec!["get".into(), format!("go.etcd.io/etcd/server/v3@v{}", v.etcd)],
                vec![
                    "build".into(),
                    "-trimpath".into(),
                    "-ldflags=-s -w".into(),
                    "-o".into(),
                    o("etcd"),
                    "go.etcd.io/etcd/server/v3".into(),
                ],
            ],
            module: format!("go.etcd.io/etcd/server/v3@v{}", v.etcd),
        },
        Component::Kwok => Recipe {
            go_mod: None,
            commands: vec![vec![
                "install".into(),
                "-trimpath".into(),
                "-ldflags=-s -w".into(),
                format!("sigs.k8s.io/kwok/cmd/kwok@v{}", v.kwok),
            ]],
            module: format!("sigs.k8s.io/kwok@v{}", v.kwok),
        },
    })
}

fn io(doing: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ToolsError {
    let doing = doing.to_string();
    let path = path.to_path_buf();
    move |source| ToolsError::Io {
        doing,
        path,
        source,
    }
}

/// Runs `go ARGS` in `dir` with the builder's environment, its output appended to `log`.
fn go(
    dir: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<String, ToolsError> {
    let command = format!("go {}", args.join(" "));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("opening the build log", log))?;
    use std::io::Write;
    let _ = writeln!(f, "$ (cd {}) {command}", dir.display());
    let out = std::process::Command::new("go")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // Never download a toolchain or reach past the module proxy and checksum database.
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env_remove("GONOSUMDB")
        .env_remove("GONOSUMCHECK")
        .env_remove("GOINSECURE")
        .env_remove("GOPRIVATE")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ToolsError::NoGo,
            _ => ToolsError::Io {
                doing: format!("running {command}"),
                path: dir.to_path_buf(),
                source: e,
            },
        })?;
    let _ = f.write_all(&out.stdout);
    let _ = f.write_all(&out.stderr);
    if !out.status.success() {
        let all = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = all.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(ToolsError::Go {
            doing: format!("building (log: {})", log.display()),
            command,
            code: out.status.code(),
            tail,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `go version`.
pub fn go_version() -> Result<String, ToolsError> {
    let out = std::process::Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|_| ToolsError::NoGo)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Istio's module version for a release: what the proxy answers for the tag, else
/// [`KNOWN_ISTIO`]; a version that already is a module version (`v0.0.0-…`) is taken as it is.
pub fn resolve_istio(version: &str, scratch: &Path, log: &Path) -> Result<String, ToolsError> {
    if version.starts_with("v0.0.0-") {
        return Ok(version.to_string());
    }
    let asked = go(
        scratch,
        &[
            "list".into(),
            "-m".into(),
            "-f".into(),
            "{{.Version}}".into(),
            format!("istio.io/istio@{version}"),
        ],
        &[("GO111MODULE", "on".into())],
        log,
    );
    match asked {
        Ok(v) if v.trim().starts_with('v') => Ok(v.trim().to_string()),
        other => KNOWN_ISTIO
            .iter()
            .find(|(tag, _)| *tag == version)
            .map(|(_, m)| m.to_string())
            .ok_or_else(|| ToolsError::Resolve {
                component: "istio".into(),
                version: version.into(),
                why: format!(
                    "the module proxy did not resolve the tag ({}) and it is not among the known tags {:?}; pass the pseudo-version (v0.0.0-DATE-COMMIT) instead",
                    match other {
                        Err(e) => crate::error_chain(&e).lines().last().unwrap_or("").to_string(),
                        Ok(v) => v,
                    },
                    KNOWN_ISTIO.iter().map(|(t, _)| *t).collect::<Vec<_>>()
                ),
            }),
    }
}

/// Builds one component into its folder (through a scratch folder and a rename). `on_step` is
/// told each go command as it starts.
pub fn build(
    tools: &Tools,
    c: Component,
    on_step: &mut dyn FnMut(&str),
) -> Result<Built, ToolsError> {
    std::fs::create_dir_all(&tools.dir).map_err(io("creating the tools folder", &tools.dir))?;
    let start = Instant::now();
    let home = tools.home(c);
    let work = tempfile::Builder::new()
        .prefix(&format!(".{}-", c.name()))
        .tempdir_in(&tools.dir)
        .map_err(io("creating a build folder", &tools.dir))?;
    let bin = work.path().join("bin");
    let module_dir = work.path().join("module");
    std::fs::create_dir_all(&bin).map_err(io("creating a build folder", &bin))?;
    std::fs::create_dir_all(&module_dir).map_err(io("creating a build folder", &module_dir))?;
    let log = tools.dir.join(format!(
        "{}-{}.build.log",
        c.name(),
        c.version(&tools.versions)
    ));
    let _ = std::fs::remove_file(&log);
    let v = &tools.versions;
    let istio_module = if c == Component::Istio {
        on_step(&format!("resolving Istio {}", v.istio));
        resolve_istio(&v.istio, &module_dir, &log)?
    } else {
        String::new()
    };
    let k8s_mod = if c == Component::Kubernetes {
        on_step(&format!("downloading k8s.io/kubernetes v{}", v.kubernetes));
        let out = go(
            &module_dir,
            &[
                "mod".into(),
                "download".into(),
                "-json".into(),
                format!("k8s.io/kubernetes@v{}", v.kubernetes),
            ],
            &[],
            &log,
        )?;
        let info: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let path = PathBuf::from(info["GoMod"].as_str().unwrap_or_default());
        Some(
            std::fs::read_to_string(&path)
                .map_err(io("reading k8s.io/kubernetes' go.mod", &path))?,
        )
    } else {
        None
    };
    let r = recipe(c, v, &istio_module, k8s_mod.as_deref(), &bin).map_err(|why| {
        ToolsError::Resolve {
            component: c.name().into(),
            version: c.version(v).into(),
            why,
        }
    })?;
    if let Some(m) = &r.go_mod {
        let p = module_dir.join("go.mod");
        std::fs::write(&p, m).map_err(io("writing the wrapper module", &p))?;
    }
    let env = [("GOBIN", bin.display().to_string())];
    for cmd in &r.commands {
        on_step(&format!("go {}", cmd.join(" ")));
        go(&module_dir, cmd, &env, &log)?;
    }
    let mut binaries = BTreeMap::new();
    for b in c.binaries() {
        let p = bin.join(b);
        let meta = std::fs::metadata(&p).map_err(io("finding the built binary", &p))?;
        binaries.insert(b.to_string(), meta.len());
    }
    let built = Built {
        name: c.name().into(),
        version: c.version(v).into(),
        module: r.module,
        go: go_version()?,
        binaries,
        build_seconds: start.elapsed().as_secs_f64(),
    };
    let meta = work.path().join("meshmig-tool.json");
    std::fs::write(
        &meta,
        serde_json::to_vec_pretty(&built).expect("Built serializes"),
    )
    .map_err(io("writing the build record", &meta))?;
    let final_dir = work.path().join("final");
    std::fs::create_dir_all(&final_dir).map_err(io("assembling the component", &final_dir))?;
    std::fs::rename(&bin, final_dir.join("bin")).map_err(io("assembling the component", &bin))?;
    std::fs::rename(&meta, final_dir.join("meshmig-tool.json"))
        .map_err(io("assembling the component", &meta))?;
    if home.exists() {
        std::fs::remove_dir_all(&home).map_err(io("replacing an incomplete build", &home))?;
    }
    std::fs::rename(&final_dir, &home).map_err(io("moving the component into place", &home))?;
    Ok(built)
}

impl Built {
    /// `name SIZE` per binary, joined.
    pub fn sizes(&self) -> String {
        self.binaries
            .iter()
            .map(|(n, s)| format!("{n} {}", human_size(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A human size.
pub fn human_size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// How long, as `1m02s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The head of k8s.io/kubernetes v1.35.4's go.mod as the proxy serves it (its replace block:
    // every staging module points at ./staging/src/k8s.io/…; the real file has 31 of them).
    const K8S_GO_MOD: &str = "module k8s.io/kubernetes\n\ngo 1.25.0\n\ngodebug default=go1.25\n\nrequire (\n\tk8s.io/api v0.0.0\n\tk8s.io/klog/v2 v2.130.1\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery\n\tk8s.io/kms => ./staging/src/k8s.io/kms\n)\n";

    #[test]
    fn the_wrapper_replaces_every_staging_module_with_its_published_version() {
        let w = kubernetes_wrapper("1.35.4", K8S_GO_MOD).unwrap();
        assert!(w.contains("go 1.25.0\n"), "{w}");
        assert!(w.contains("godebug default=go1.25\n"), "{w}");
        assert!(w.contains("require k8s.io/kubernetes v1.35.4\n"), "{w}");
        for m in ["api", "apimachinery", "kms"] {
            assert!(
                w.contains(&format!("replace k8s.io/{m} => k8s.io/{m} v0.35.4\n")),
                "{w}"
            );
        }
        // klog is a real dependency, not a staging module: it must not be replaced.
        assert!(!w.contains("klog/v2 =>"), "{w}");
    }

    #[test]
    fn a_go_mod_without_staging_replacements_is_refused() {
        let e = kubernetes_wrapper("1.35.4", "module x\n\ngo 1.25\n").unwrap_err();
        assert!(e.contains("replaces no k8s.io module"), "{e}");
    }

    #[test]
    fn versions_are_stamped() {
        let k = kubernetes_ldflags("1.35.4");
        assert!(k.contains("-X k8s.io/component-base/version.gitVersion=v1.35.4"));
        assert!(k.contains("-X k8s.io/client-go/pkg/version.gitMinor=35"));
        let i = istio_ldflags("1.31.0");
        assert!(i.contains("-X istio.io/istio/pkg/version.buildVersion=1.31.0"));
        assert!(i.contains("buildHub=docker.io/istio"));
    }

    #[test]
    fn a_component_without_its_record_is_not_built() {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools {
            dir: dir.path().to_path_buf(),
            versions: Versions::default(),
        };
        let bin = tools.home(Component::Kwok).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("kwok"), b"").unwrap();
        let e = tools.binary("kwok").unwrap_err().to_string();
        assert!(e.contains("meshmig tools install --only kwok"), "{e}");
        let meta = Built {
            name: "kwok".into(),
            version: "0.8.0".into(),
            module: "sigs.k8s.io/kwok@v0.8.0".into(),
            go: "go version go1.26.8 linux/amd64".into(),
            binaries: [("kwok".to_string(), 0)].into(),
            build_seconds: 1.0,
        };
        std::fs::write(
            tools.home(Component::Kwok).join("meshmig-tool.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        assert_eq!(tools.binary("kwok").unwrap(), bin.join("kwok"));
    }
}
