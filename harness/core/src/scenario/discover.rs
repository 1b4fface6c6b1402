//! Finding the scenario files of a folder and naming them for trials.

use std::path::{Path, PathBuf};

/// The scenario files of a folder, sorted by name.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let yaml = |p: &PathBuf| p.extension().is_some_and(|x| x == "yaml" || x == "yml");
    let mut files = Vec::new();
    for p in std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())) {
        if p.is_dir() {
            // One level of folders (`scenarios/mistakes/`).
            files.extend(
                std::fs::read_dir(&p)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|q| q.is_file() && yaml(q)),
            );
        } else if yaml(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// A scenario's name for trials and lists: its path below `dir` without the extension
/// (`canary-cluster`, `mistakes/weights-reversed`).
pub fn trial_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .with_extension("")
        .to_string_lossy()
        .into_owned()
}
