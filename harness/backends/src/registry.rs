//! Every backend, by name. Adding a backend is a folder of its own with an `entry.rs` (see
//! [`super::entry::BackendEntry`]) and one line here; the command line, the runner and the
//! conformance suite look backends up here and branch on none of them.

use super::entry::BackendEntry;

/// The backends, in the order `--help` and `MESHMIG_BACKEND`'s error list them.
pub static BACKENDS: [&dyn BackendEntry; 5] = [
    &super::emulated::entry::ENTRY,
    &super::kwok::entry::ENTRY,
    &super::gke_rehearsal::entry::ENTRY,
    &super::kind::entry::ENTRY,
    &super::gke::entry::ENTRY,
];

/// The backend of this name.
pub fn lookup(name: &str) -> Option<&'static dyn BackendEntry> {
    BACKENDS.iter().copied().find(|b| b.name() == name)
}

/// Every backend's name.
pub fn names() -> Vec<&'static str> {
    BACKENDS.iter().map(|b| b.name()).collect()
}

/// The backend of this name, or an error listing the names there are.
pub fn find(name: &str) -> Result<&'static dyn BackendEntry, String> {
    lookup(name).ok_or_else(|| format!("{name:?} is not a backend (one of {})", names().join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names = names();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for n in &names {
            assert_eq!(find(n).unwrap().name(), *n);
        }
        let Err(e) = find("docker") else {
            panic!("docker is not a backend")
        };
        assert!(
            e.contains("emulated, kwok, gke-rehearsal, kind, gke"),
            "{e}"
        );
    }
}
