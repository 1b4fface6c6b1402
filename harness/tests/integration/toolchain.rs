//! The Rust the project claims to need is the Rust its locked dependencies need: the workspace's
//! `rust-version` and the metadata stand-in's Docker build image are at least the highest
//! `rust-version` of any package in Cargo.lock (kube 5 and uuid need 1.89).

use std::path::Path;
use std::process::Command;

fn version(v: &str) -> (u64, u64) {
    let mut it = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn the_declared_rust_is_what_the_locked_dependencies_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (needed, by) = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                version(p["rust_version"].as_str()?),
                p["name"].as_str()?.to_string(),
            ))
        })
        .max()
        .unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| version(v.trim_matches('"')))
        .unwrap();
    assert!(
        declared >= needed,
        "workspace rust-version {declared:?} is below {needed:?}, which {by} needs"
    );
    let dockerfile =
        std::fs::read_to_string(root.join("kind-configs/metadata.Dockerfile")).unwrap();
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split('-').next())
        .map(version)
        .unwrap();
    assert!(
        image >= needed,
        "metadata.Dockerfile builds on rust {image:?}, below {needed:?}, which {by} needs"
    );
    assert!(
        root.join(".dockerignore").is_file(),
        "no .dockerignore: the build context would carry target/"
    );
}
