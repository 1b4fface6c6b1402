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
}

/// Where istioctl comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioctlSource {
    /// A pinned release, fetched into the cache.
    Version(String),
    /// The one on PATH.
    Path,
}

/// The release archive of a version for this machine, and its checksum file.
pub fn archive_url(version: &str) -> (String, String) {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let url = format!("https://github.com/istio/istio/releases/download/{version}/istioctl-{version}-linux-{arch}.tar.gz");
    (url.clone(), format!("{url}.sha256"))
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
            let tmp = dir.join("istioctl.partial");
            entry.unpack(&tmp).map_err(err)?;
            let dest = dir.join("istioctl");
            std::fs::rename(&tmp, &dest).map_err(err)?;
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
        IstioctlSource::Path => super::exec::on_path("istioctl").ok_or(IstioctlError::NotFound),
        IstioctlSource::Version(v) => {
            let dir = cache_dir().join(format!("istio-{v}"));
            let cached = dir.join("istioctl");
            if cached.is_file() {
                return Ok(cached);
            }
            let (url, sum_url) = archive_url(v);
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
        let (u, s) = archive_url("1.28.0");
        assert!(u.starts_with(
            "https://github.com/istio/istio/releases/download/1.28.0/istioctl-1.28.0-linux-"
        ));
        assert_eq!(s, format!("{u}.sha256"));
    }
}
