//! A kind kit: what `kind-configs/kit/build` made on a machine that reaches no image registry,
//! described by its `kit.json`, and what the kind backend does differently with it.
//!
//! With a kit (`--kind-kit DIR` or `MESHMIG_KIND_KIT`), the backend:
//! - runs kind with the kit's provider (`KIND_EXPERIMENTAL_PROVIDER`) and node image, and the
//!   cluster configurations for this machine (`kind-configs/local/`, beside the ones GitHub uses);
//! - loads every archive of the kit into each cluster it creates (`kind load image-archive`), and
//!   gives loaded images the names the kit lists on every node (`ctr images tag`): a manifest
//!   that names an image by digest finds it without a pull;
//! - installs Istio with the kit's `--set` settings;
//! - gives LoadBalancer Services addresses of its own ([`super::node_lb`]) instead of running
//!   cloud-provider-kind, which needs Docker.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable that names a kit folder.
pub const KIT_ENV: &str = "MESHMIG_KIND_KIT";

/// The file a kit folder describes itself in.
pub const KIT_FILE: &str = "kit.json";

/// A kit's `kit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindKit {
    /// kind's provider for its nodes (`docker` or `podman`).
    pub provider: String,
    /// The kind binary.
    pub kind: String,
    /// The GCE metadata stand-in image, loaded with the archives (`meshmig metadata-server`).
    pub metadata_image: String,
    /// The node image (`kind create cluster --image`).
    pub node_image: String,
    /// Image archives loaded into every new cluster.
    pub archives: Vec<PathBuf>,
    /// Names given to loaded images on every node.
    pub aliases: Vec<Alias>,
    /// `istioctl install --set` settings, each `KEY=VALUE`.
    pub istio_sets: Vec<String>,
    /// The images a run serves from its own registry ([`super::kit_registry`]).
    pub registry: Option<Registry>,
}

/// What a run's registry serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The crane binary (`crane registry serve`, `crane push`).
    pub crane: PathBuf,
    /// The images, each with its archive.
    pub images: Vec<RegistryImage>,
}

/// An image the run's registry serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryImage {
    /// Its name, as pods ask for it.
    pub image: String,
    /// Its docker-archive.
    pub archive: PathBuf,
}

/// A second name for a loaded image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    /// The image as loaded.
    pub image: String,
    /// The name it also gets.
    #[serde(rename = "as")]
    pub alias: String,
}

/// Errors reading a kit.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The kit file could not be read.
    #[error("reading the kind kit {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kit file is not a kit.
    #[error("{}:{line}:{column}: reading the kind kit: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What serde says.
        message: String,
    },
    /// Something the kit names is missing.
    #[error("the kind kit {} names {what} {}, which does not exist (run kind-configs/kit/build)", path.display(), missing.display())]
    Missing {
        /// The kit file.
        path: PathBuf,
        /// What it is.
        what: &'static str,
        /// The missing path.
        missing: PathBuf,
    },
    /// The provider is not one kind has.
    #[error("the kind kit {} names provider {provider:?}: kind's providers are docker and podman", path.display())]
    Provider {
        /// The kit file.
        path: PathBuf,
        /// What it says.
        provider: String,
    },
}

impl KindKit {
    /// Reads and checks `DIR/kit.json`: its fields, its provider, and that its configurations
    /// and archives exist.
    pub fn load(dir: &Path) -> Result<Self, KitError> {
        let path = dir.join(KIT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| KitError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text)
    }

    /// Parses and checks a kit file's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, KitError> {
        let kit: KindKit = serde_json::from_str(text).map_err(|e| KitError::Invalid {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if !["docker", "podman"].contains(&kit.provider.as_str()) {
            return Err(KitError::Provider {
                path: path.to_path_buf(),
                provider: kit.provider,
            });
        }
        let missing = |what, p: &Path| KitError::Missing {
            path: path.to_path_buf(),
            what,
            missing: p.to_path_buf(),
        };
        let registry_archives = kit
            .registry
            .iter()
            .flat_map(|r| r.images.iter().map(|i| &i.archive));
        if let Some(a) = kit
            .archives
            .iter()
            .chain(registry_archives)
            .find(|a| !a.is_file())
        {
            return Err(missing("the archive", a));
        }
        Ok(kit)
    }

    /// The `--set` arguments for istioctl.
    pub fn istioctl_sets(&self) -> Vec<String> {
        self.istio_sets
            .iter()
            .flat_map(|s| ["--set".to_string(), s.clone()])
            .collect()
    }
}

/// The kit folder the options or the environment name.
pub fn kit_dir(option: Option<&Path>) -> Option<PathBuf> {
    option.map(Path::to_path_buf).or_else(|| {
        std::env::var(KIT_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit_text(_dir: &Path, provider: &str, archive: &Path) -> String {
        serde_json::json!({
            "provider": provider,
            "kind": "/kit/bin/kind",
            "metadata_image": "localhost/meshmig/boutique-stand-in:latest",
            "node_image": "localhost/meshmig/kind-node:v1.35.4",
            "archives": [archive],
            "aliases": [{"image": "docker.io/library/busybox:1.38.0", "as": "docker.io/library/busybox@sha256:fd8d"}],
            "istio_sets": ["hub=localhost/meshmig", "tag=1.31.0"],
        })
        .to_string()
    }

    #[test]
    fn a_built_kit_reads_back_with_its_settings() {
        let d = tempfile::tempdir().unwrap();
        let archive = d.path().join("a.tar");
        std::fs::write(&archive, b"").unwrap();
        std::fs::write(
            d.path().join(KIT_FILE),
            kit_text(d.path(), "podman", &archive),
        )
        .unwrap();
        let kit = KindKit::load(d.path()).unwrap();
        assert_eq!(
            kit.aliases[0].alias,
            "docker.io/library/busybox@sha256:fd8d"
        );
        assert_eq!(
            kit.istioctl_sets(),
            ["--set", "hub=localhost/meshmig", "--set", "tag=1.31.0"]
        );
    }

    #[test]
    fn an_unknown_field_fails_with_its_line_and_column() {
        let e = KindKit::parse(
            Path::new("kit.json"),
            "{\n  \"provider\": \"podman\",\n  \"nodes\": 3\n}",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("kit.json:3:"), "{e}");
        assert!(e.to_string().contains("unknown field `nodes`"), "{e}");
    }

    #[test]
    fn a_missing_archive_and_an_unknown_provider_are_named() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone.tar");
        let e = KindKit::parse(Path::new("kit.json"), &kit_text(d.path(), "podman", &gone))
            .unwrap_err();
        assert!(e.to_string().contains("gone.tar"), "{e}");
        std::fs::write(&gone, b"").unwrap();
        let e = KindKit::parse(Path::new("kit.json"), &kit_text(d.path(), "nerdctl", &gone))
            .unwrap_err();
        assert!(e.to_string().contains("\"nerdctl\""), "{e}");
    }
}
