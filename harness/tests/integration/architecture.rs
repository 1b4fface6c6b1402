//! The house rules of the harness's three crates (docs/architecture.md), read from the source
//! itself, in each crate's `src` (`harness/core`, `harness/backends`, and `harness`, the facade
//! with the checks, engine and report). Between the crates Cargo itself forbids a circle; within
//! each one:
//! - no import circle: no two modules use each other, directly or through others;
//! - no source file over 800 lines;
//! - no backend's folder names another backend's.
//!
//! A module's references are the paths it names from `crate::` or `super::` (in `use` items,
//! grouped `use` items and inline paths), outside its `#[cfg(test)]` part. A reference between
//! a module and one of its ancestors is the way Rust nests modules (a parent declares its
//! children; a child uses its parent's items), not a circle. Any other reference is counted
//! between the two modules' branches under their nearest common ancestor: `backend::kwok::lb`
//! naming `checks::gateway_routes` is an edge `backend → checks`. A circle is a cycle of those
//! edges among the children of one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// A module's path below the crate root (`["backend", "kwok", "lb"]`).
type Module = Vec<String>;

/// The longest line count a source file may have.
const MAX_LINES: usize = 800;

/// Every `.rs` file under `src`, by module path, with its text.
fn modules(src: &Path) -> BTreeMap<Module, (PathBuf, String)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(module, (path, text));
        }
    }
    out
}

/// The paths a module's source names from `crate::` or `super::`, made absolute.
fn references(module: &Module, text: &str) -> Vec<Vec<String>> {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let comment = Regex::new(r"//[^\n]*").unwrap();
    let text = comment.replace_all(text, "");
    let resolve = |base: &str, path: &str| -> Vec<String> {
        let mut cur: Vec<String> = if base == "crate" {
            Vec::new()
        } else {
            module[..module.len().saturating_sub(1)].to_vec()
        };
        let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
        while parts.peek() == Some(&"super") {
            parts.next();
            cur.pop();
        }
        cur.extend(parts.map(str::to_string));
        cur
    };
    let inline = Regex::new(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let grouped = Regex::new(r"(?s)\buse (crate|super)((?:::[A-Za-z_]+)*)::\{([^;]*)\};").unwrap();
    let mut refs: Vec<Vec<String>> = inline
        .captures_iter(&text)
        .map(|c| resolve(&c[1], &c[2]))
        .collect();
    for c in grouped.captures_iter(&text) {
        let prefix = resolve(&c[1], &c[2]);
        for item in c[3].split(',') {
            let item = item.split(" as ").next().unwrap_or_default().trim();
            if item.is_empty() || item.contains(['{', '}']) {
                continue;
            }
            let mut path = prefix.clone();
            path.extend(item.split("::").map(str::to_string));
            refs.push(path);
        }
    }
    refs
}

/// The edges between sibling branches: (from branch, to branch) → the module pairs behind it.
fn edges(
    modules: &BTreeMap<Module, (PathBuf, String)>,
) -> BTreeMap<(Module, Module), BTreeSet<String>> {
    let mut out: BTreeMap<(Module, Module), BTreeSet<String>> = BTreeMap::new();
    for (module, (_, text)) in modules {
        for path in references(module, text) {
            let Some(target) = (1..=path.len())
                .rev()
                .map(|k| path[..k].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // the same module, or an ancestor and its descendant
            }
            out.entry((module[..=common].to_vec(), target[..=common].to_vec()))
                .or_default()
                .insert(format!("{} → {}", module.join("::"), target.join("::")));
        }
    }
    out
}

/// Each cycle of sibling branches (a strongly connected set of more than one), with the
/// references that make it.
fn circles(modules: &BTreeMap<Module, (PathBuf, String)>) -> Vec<String> {
    let edges = edges(modules);
    let mut graph: BTreeMap<&Module, BTreeSet<&Module>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        graph.entry(a).or_default().insert(b);
    }
    // Two branches are in one circle when each reaches the other.
    let reach = |from: &Module| -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert((*n).clone()) {
                    todo.push((*n).clone());
                }
            }
        }
        seen
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(*m) {
            continue;
        }
        let from_m = reach(m);
        let circle: BTreeSet<Module> = from_m
            .iter()
            .filter(|n| reach(n).contains(*m))
            .cloned()
            .collect();
        if circle.len() < 2 {
            continue;
        }
        let names: Vec<String> = circle.iter().map(|n| n.join("::")).collect();
        let why: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| circle.contains(a) && circle.contains(b))
            .flat_map(|(_, refs)| refs.iter().cloned())
            .collect();
        out.push(format!("{}: {}", names.join(" ↔ "), why.join("; ")));
        done.extend(circle);
    }
    out
}

/// Source files over [`MAX_LINES`], with their line counts.
fn oversized(modules: &BTreeMap<Module, (PathBuf, String)>) -> Vec<String> {
    modules
        .values()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect()
}

/// Each crate's `src` folder: the layers from the bottom up, then the facade.
fn crate_sources() -> Vec<PathBuf> {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["core/src", "backends/src", "src"]
        .iter()
        .map(|s| harness.join(s))
        .collect()
}

#[test]
fn harness_has_no_import_circle() {
    let found: Vec<String> = crate_sources()
        .iter()
        .flat_map(|src| circles(&modules(src)))
        .collect();
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn harness_has_no_source_file_over_800_lines() {
    let found: Vec<String> = crate_sources()
        .iter()
        .flat_map(|src| oversized(&modules(src)))
        .collect();
    assert!(
        found.is_empty(),
        "source files over {MAX_LINES} lines:\n{}",
        found.join("\n")
    );
}

/// The backends' folders in meshmig-backends. Each knows only itself and the crate's shared
/// modules (`clusters`, `frontend`, `run_id`, …); `gke_rehearsal` is left out, as the one
/// composition by design: the gke backend's commands against kwok clusters.
const BACKENDS: [&str; 4] = ["emulated", "kwok", "kind", "gke"];

/// Each reference from one backend's folder into another's (`kwok::stand_ins → emulated::…`).
fn backends_knowing_another(modules: &BTreeMap<Module, (PathBuf, String)>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, (_, text)) in modules {
        let Some(own) = module.first().filter(|m| BACKENDS.contains(&m.as_str())) else {
            continue;
        };
        for path in references(module, text) {
            if path
                .first()
                .is_some_and(|p| p != own && BACKENDS.contains(&p.as_str()))
            {
                found.push(format!("{} → {}", module.join("::"), path.join("::")));
            }
        }
    }
    found
}

#[test]
fn no_backend_knows_another() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/src");
    let found = backends_knowing_another(&modules(&src));
    assert!(
        found.is_empty(),
        "a backend's folder names another backend's (shared pieces belong at the crate's root):\n{}",
        found.join("\n")
    );
}

#[rstest::rstest]
#[case::a_backend_using_anothers_stand_in(
    &[("lib.rs", "pub mod emulated; pub mod kwok; pub mod frontend;"), ("kwok/stand_ins.rs", "use crate::emulated::frontend::Frontend;"), ("emulated/frontend.rs", "")],
    "kwok::stand_ins → emulated::frontend::Frontend"
)]
#[case::through_super(
    &[("kind/entry.rs", "fn f() { super::super::gke::chrono_like::now() }"), ("gke/mod.rs", "")],
    "kind::entry → gke::chrono_like::now"
)]
fn a_backend_knowing_another_is_named(#[case] files: &[(&str, &str)], #[case] want: &str) {
    let dir = tree(files);
    assert_eq!(
        backends_knowing_another(&modules(dir.path())),
        vec![want.to_string()]
    );
}

#[test]
fn shared_pieces_and_the_rehearsal_are_no_finding() {
    let dir = tree(&[
        (
            "kwok/stand_ins.rs",
            "use crate::frontend::Frontend; use crate::clusters::ClusterOps;",
        ),
        (
            "gke_rehearsal/mod.rs",
            "use crate::kwok::provider::KwokClusters; use crate::gke::Gke;",
        ),
        ("frontend.rs", ""),
    ]);
    assert_eq!(
        backends_knowing_another(&modules(dir.path())),
        Vec::<String>::new()
    );
}

/// A tree of files (relative path, text) in a temporary folder.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[rstest::rstest]
#[case::direct(
    &[("lib.rs", "mod a; mod b;"), ("a.rs", "use crate::b::X;"), ("b.rs", "use crate::a::Y;")],
    "a ↔ b: a → b; b → a"
)]
#[case::through_a_third(
    &[("a.rs", "fn f() { crate::b::g() }"), ("b.rs", "use super::c::Z;"), ("c.rs", "use crate::{a::W, d};"), ("d.rs", "")],
    "a ↔ b ↔ c: a → b; b → c; c → a"
)]
#[case::between_branches_of_nested_modules(
    &[("backend/mod.rs", ""), ("backend/kwok/lb.rs", "use crate::checks::routes::Dumps;"), ("checks/mod.rs", "use crate::backend::Witness;"), ("checks/routes.rs", "")],
    "backend ↔ checks: backend::kwok::lb → checks::routes; checks → backend"
)]
fn a_circle_is_found_and_named(#[case] files: &[(&str, &str)], #[case] want: &str) {
    let dir = tree(files);
    assert_eq!(circles(&modules(dir.path())), vec![want.to_string()]);
}

#[rstest::rstest]
#[case::parent_and_child(&[("backend/mod.rs", "pub use kwok::Kwok; use crate::backend::kwok::X;"), ("backend/kwok.rs", "use super::Backend;")])]
#[case::one_way(&[("a.rs", "use crate::b::X;"), ("b.rs", "")])]
#[case::only_in_tests(&[("a.rs", "use crate::b::X;"), ("b.rs", "#[cfg(test)]\nmod tests { use crate::a::Y; }")])]
#[case::only_in_comments(&[("a.rs", "use crate::b::X;"), ("b.rs", "// see crate::a::Y\n")])]
fn no_circle_where_rust_nests_or_one_way(#[case] files: &[(&str, &str)]) {
    let dir = tree(files);
    assert_eq!(circles(&modules(dir.path())), Vec::<String>::new());
}

#[test]
fn a_file_over_800_lines_is_named() {
    let long = "//\n".repeat(MAX_LINES + 1);
    let dir = tree(&[("a.rs", "fn f() {}\n"), ("big.rs", &long)]);
    let found = oversized(&modules(dir.path()));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with(&format!("big.rs ({} lines)", MAX_LINES + 1)),
        "{found:?}"
    );
}
