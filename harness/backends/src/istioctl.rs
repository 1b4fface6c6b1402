//! Which istioctl the real-cluster backends run: a pinned version fetched from Istio's release
//! archive into a cache, its SHA-256 checked against the published checksum; or one on PATH.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Errors fetching istioctl.
#[derive(Debug, thiserror::Error)]
pub enum IstioctlError {
    /// Downloading failed.
    #[error("downloading {url}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The archive's checksum is not the published one.
    #[error("checksum of {url}: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// The published SHA-256.
        expected: String,
        /// What the download hashes to.
        actual: String,
    },
    /// Unpacking or caching failed.
    #[error("unpacking istioctl into {dir}")]
    Unpack {
        /// The cache folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Neither a version nor istioctl on PATH.
    #[error("finding istioctl: none on PATH and no --istio-version given")]
    NotFound,
    /// Istio publishes no istioctl tarball for this operating system and architecture.
    #[error("Istio publishes no istioctl tar.gz for {os}/{arch} (Linux amd64/arm64/armv7 and macOS amd64/arm64 only)")]
    Unsupported {
        /// The operating system (`std::env::consts::OS`).
        os: String,
        /// The architecture (`std::env::consts::ARCH`).
        arch: String,
    },
}

/// Where istioctl comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioctlSource {
    /// A pinned release, fetched into the cache.
    Version(String),
    /// The one on PATH.
    Path,
}

/// The file name of Istio's istioctl archive of `version` for an operating system and
/// architecture (`std::env::consts::OS` / `ARCH` values), as Istio's own downloader names it
/// (release/downloadIstioCtl.sh at tag 1.28.0: `OSEXT` is `osx` on Darwin and `linux`
/// otherwise; Linux archives always carry the architecture, `istioctl-V-linux-ARCH.tar.gz`;
/// on macOS only arm64 does, `istioctl-V-osx-arm64.tar.gz`, while amd64 is
/// `istioctl-V-osx.tar.gz`).
pub fn archive_name(version: &str, os: &str, arch: &str) -> Result<String, IstioctlError> {
    match (os, arch) {
        ("linux", "x86_64") => Ok(format!("istioctl-{version}-linux-amd64.tar.gz")),
        ("linux", "aarch64") => Ok(format!("istioctl-{version}-linux-arm64.tar.gz")),
        ("linux", "arm") => Ok(format!("istioctl-{version}-linux-armv7.tar.gz")),
        ("macos", "x86_64") => Ok(format!("istioctl-{version}-osx.tar.gz")),
        ("macos", "aarch64") => Ok(format!("istioctl-{version}-osx-arm64.tar.gz")),
        _ => Err(IstioctlError::Unsupported {
            os: os.to_string(),
            arch: arch.to_string(),
        }),
    }
}

/// The release archive of a version for this machine, and its checksum file.
pub fn archive_url(version: &str) -> Result<(String, String), IstioctlError> {
    archive_url_for(version, std::env::consts::OS, std::env::consts::ARCH)
}

/// The release archive of a version for an operating system and architecture, and its
/// checksum file (`URL.sha256`).
pub fn archive_url_for(
    version: &str,
    os: &str,
    arch: &str,
) -> Result<(String, String), IstioctlError> {
    let name = archive_name(version, os, arch)?;
    let url = format!("https://github.com/istio/istio/releases/download/{version}/{name}");
    Ok((url.clone(), format!("{url}.sha256")))
}

/// The cache folder (`$XDG_CACHE_HOME/meshmig` or `~/.cache/meshmig`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("meshmig")
}

/// Checks an archive against a `.sha256` file's content (`HEX  NAME` or `HEX`).
pub fn verify(url: &str, archive: &[u8], sha256_file: &str) -> Result<(), IstioctlError> {
    let expected = sha256_file
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let actual = format!("{:x}", Sha256::digest(archive));
    if expected == actual {
        Ok(())
    } else {
        Err(IstioctlError::Checksum {
            url: url.to_string(),
            expected,
            actual,
        })
    }
}

/// Unpacks `istioctl` from a release archive into `dir`.
///
/// The binary is written to a temporary file of a unique name in `dir`, then renamed to
/// `dir/istioctl` in one step: concurrent fetches of the same release (two runs, or the
/// conformance suite beside a `meshmig run`) never write the same file, and nobody sees a
/// half-written `istioctl` (the last rename wins, with a whole binary). A failed unpack leaves
/// nothing behind (the temporary file is removed when dropped).
pub fn unpack(archive: &[u8], dir: &Path) -> Result<PathBuf, IstioctlError> {
    let err = |source| IstioctlError::Unpack {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let is_istioctl = entry
            .path()
            .map_err(err)?
            .file_name()
            .is_some_and(|n| n == "istioctl");
        if is_istioctl {
            let mode = entry.header().mode().unwrap_or(0o755) | 0o500;
            let mut tmp = tempfile::Builder::new()
                .prefix(".istioctl-")
                .tempfile_in(dir)
                .map_err(err)?;
            std::io::copy(&mut entry, &mut tmp).map_err(err)?;
            tmp.as_file().sync_all().map_err(err)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(err)?;
            }
            #[cfg(not(unix))]
            let _ = mode;
            let dest = dir.join("istioctl");
            tmp.persist(&dest).map_err(|e| err(e.error))?;
            return Ok(dest);
        }
    }
    Err(err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no istioctl in the archive",
    )))
}

/// The istioctl to run: from the cache (fetching it once), or from PATH.
pub async fn resolve(source: &IstioctlSource) -> Result<PathBuf, IstioctlError> {
    match source {
        IstioctlSource::Path => {
            meshmig_core::tools::on_path("istioctl").ok_or(IstioctlError::NotFound)
        }
        IstioctlSource::Version(v) => {
            let dir = cache_dir().join(format!("istio-{v}"));
            let cached = dir.join("istioctl");
            if cached.is_file() {
                return Ok(cached);
            }
            let (url, sum_url) = archive_url(v)?;
            let get = |u: String| async move {
                let r = reqwest::get(&u).await.and_then(|r| r.error_for_status());
                match r {
                    Ok(r) => r
                        .bytes()
                        .await
                        .map_err(|source| IstioctlError::Download { url: u, source }),
                    Err(source) => Err(IstioctlError::Download { url: u, source }),
                }
            };
            let archive = get(url.clone()).await?;
            let sum = get(sum_url).await?;
            verify(&url, &archive, &String::from_utf8_lossy(&sum))?;
            unpack(&archive, &dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let body = b"#!/bin/sh\necho istioctl\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "istioctl", &body[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_matching_checksum_unpacks_istioctl() {
        let a = archive();
        let sum = format!(
            "{:x}  istioctl-1.28.0-linux-amd64.tar.gz\n",
            Sha256::digest(&a)
        );
        verify("u", &a, &sum).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = unpack(&a, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            "#!/bin/sh\necho istioctl\n"
        );
    }

    #[test]
    fn a_wrong_checksum_is_refused() {
        let err = verify("u", &archive(), "00ff  x.tar.gz").unwrap_err();
        assert!(matches!(err, IstioctlError::Checksum { .. }), "{err}");
    }

    #[test]
    fn the_archive_url_is_the_release_archive() {
        let (u, s) = archive_url_for("1.28.0", "linux", "x86_64").unwrap();
        assert_eq!(
            u,
            "https://github.com/istio/istio/releases/download/1.28.0/istioctl-1.28.0-linux-amd64.tar.gz"
        );
        assert_eq!(s, format!("{u}.sha256"));
        assert!(archive_url("1.28.0").is_ok(), "this machine has an archive");
    }

    /// The names Istio's own downloader fetches (release/downloadIstioCtl.sh at tag 1.28.0):
    /// `istioctl-${ISTIO_VERSION}-${OSEXT}-${ISTIO_ARCH}.tar.gz` on Linux; on Darwin
    /// (`OSEXT="osx"`) the same for arm64, and `istioctl-${ISTIO_VERSION}-osx.tar.gz` (no
    /// architecture) for amd64.
    #[test]
    fn macos_gets_the_osx_archives() {
        let name = |os, arch| archive_name("1.28.0", os, arch).unwrap();
        assert_eq!(name("macos", "x86_64"), "istioctl-1.28.0-osx.tar.gz");
        assert_eq!(name("macos", "aarch64"), "istioctl-1.28.0-osx-arm64.tar.gz");
        assert_eq!(
            name("linux", "aarch64"),
            "istioctl-1.28.0-linux-arm64.tar.gz"
        );
        assert_eq!(name("linux", "arm"), "istioctl-1.28.0-linux-armv7.tar.gz");
        let err = archive_name("1.28.0", "windows", "x86_64").unwrap_err();
        assert!(matches!(err, IstioctlError::Unsupported { .. }), "{err}");
    }

    /// A release archive whose istioctl is `len` bytes, and those bytes.
    fn big_archive(len: usize) -> (Vec<u8>, Vec<u8>) {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "istioctl", &body[..]).unwrap();
        (tar.into_inner().unwrap().finish().unwrap(), body)
    }

    /// Another fetch of the same release is writing its copy when this one unpacks. With the
    /// fixed temporary name `istioctl.partial`, this unpack truncated the other's file and then
    /// renamed it away under it.
    #[test]
    fn an_unpack_leaves_another_fetchs_file_alone() {
        let (a, body) = big_archive(64 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("istioctl.partial");
        std::fs::write(&other, b"another fetch, half written").unwrap();
        let p = unpack(&a, dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), body);
        assert_eq!(
            std::fs::read(&other).ok().as_deref(),
            Some(&b"another fetch, half written"[..]),
            "the other fetch's file was touched"
        );
    }

    /// Eight fetches of the same release into one folder at once: each succeeds, the binary is
    /// whole and executable, and no temporary file is left.
    #[test]
    fn concurrent_unpacks_into_one_folder_all_succeed() {
        let (a, body) = big_archive(4 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(8);
        let results: Vec<Result<PathBuf, IstioctlError>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        unpack(&a, dir.path())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            assert_eq!(r.unwrap(), dir.path().join("istioctl"));
        }
        let p = dir.path().join("istioctl");
        assert!(std::fs::read(&p).unwrap() == body, "a whole binary");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "executable: {mode:o}");
        }
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["istioctl"], "nothing else left in the folder");
    }
}

/// What `istioctl install -y` prints on success, by release (operator/cmd/mesh/install.go,
/// progress.go and component.go at each tag; operator/version/version.go for the EOL warning).
pub mod install_output {
    /// The line after "Installation complete" that makes the installation the default, if the
    /// release prints one: none up to 1.18; "Made this installation the default for injection
    /// and validation." in 1.19–1.22; "Made this installation the default for cluster-wide
    /// operations." in 1.23; none from 1.24 on.
    pub fn default_line(minor: u32) -> Option<&'static str> {
        match minor {
            19..=22 => Some("Made this installation the default for injection and validation."),
            23 => Some("Made this installation the default for cluster-wide operations."),
            _ => None,
        }
    }

    /// The ✔ lines of a successful install, in order: the minimal profile has no gateways.
    pub fn success_lines(profile: &str) -> Vec<&'static str> {
        let mut v = vec!["✔ Istio core installed", "✔ Istiod installed"];
        if profile != "minimal" {
            v.push("✔ Ingress gateways installed");
        }
        v.push("✔ Installation complete");
        v
    }

    /// The minor of `1.MINOR[.PATCH…]`.
    pub fn minor(version: &str) -> Option<u32> {
        version
            .trim_start_matches('v')
            .split('.')
            .nth(1)?
            .parse()
            .ok()
    }

    /// What istioctl 1.31.0 printed for `istioctl install --set profile=default -y` (stdout,
    /// then stderr), recorded on 2026-11-27 from istioctl built by `meshmig tools install`
    /// (istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad) against a real kube-apiserver 1.35.4,
    /// by harness/tests/integration/real_smoke.rs; no EOL warning (1.31's EOL is 2027-02,
    /// operator/version/version.go). The emulated backend prints exactly this.
    pub const RECORDED_1_31_0_DEFAULT: &str = concat!(
        "\n",
        "        |\\          \n",
        "        | \\         \n",
        "        |  \\        \n",
        "        |   \\       \n",
        "      /||    \\      \n",
        "     / ||     \\     \n",
        "    /  ||      \\    \n",
        "   /   ||       \\   \n",
        "  /    ||        \\  \n",
        " /     ||         \\ \n",
        "/______||__________\\\n",
        "____________________\n",
        "  \\__       _____/  \n",
        "     \\_____/        \n",
        "\n",
        "\n",
        "- Processing resources for Istio core.\n",
        "✔ Istio core installed ⛵️\n",
        "- Processing resources for Istiod.\n",
        "- Processing resources for Istiod. Waiting for Deployment/istio-system/istiod\n",
        "✔ Istiod installed 🧠\n",
        "- Processing resources for Ingress gateways.\n",
        "- Processing resources for Ingress gateways. Waiting for Deployment/istio-system/istio-ingressgat...\n",
        "✔ Ingress gateways installed 🛬\n",
        "- Pruning removed resources\n",
        "✔ Installation complete\n",
    );
}
