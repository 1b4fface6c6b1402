//! Reading a scenario file: its bytes parsed with locations, its base merged in, the result
//! handed to validation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::manifest::{ManifestSet, ManifestSource};
use crate::yaml::Location;

use super::model::{default_provisioning, FleetSpec, Scenario, ScenarioFile, Step};
use super::validate::validate;
use super::{locate, ScenarioError};

/// The largest scenario file read (a scenario is a few kilobytes; this keeps a runaway file from
/// being parsed at all).
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;

/// Reads a scenario file and everything it builds on, without validating references.
fn read_file(path: &Path) -> Result<(ScenarioFile, String), ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(path, bytes)
}

/// Parses a scenario file's bytes (read from `path`).
fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<(ScenarioFile, String), ScenarioError> {
    let at = |offset: usize| {
        let before = &bytes[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = offset
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        Location {
            file: path.to_path_buf(),
            line,
            column,
        }
    };
    if bytes.len() > MAX_SCENARIO_BYTES {
        return Err(ScenarioError::Parse {
            at: at(0),
            message: format!(
                "the file has {} bytes; a scenario has at most {MAX_SCENARIO_BYTES}",
                bytes.len()
            ),
        });
    }
    let text = String::from_utf8(bytes.clone()).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        ScenarioError::Parse {
            at: at(offset),
            message: format!("not UTF-8 text (byte 0x{:02x})", bytes[offset]),
        }
    })?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ScenarioError::Parse {
            at: at(0),
            message: "the scenario is empty (nothing but blank lines and comments)".into(),
        });
    }
    let file: ScenarioFile = crate::yaml::from_str(&text).map_err(|e| {
        let (line, column) = crate::yaml::location(&e).unwrap_or((1, 1));
        ScenarioError::Parse {
            at: Location {
                file: path.to_path_buf(),
                line,
                column,
            },
            message: crate::yaml::message(&e, &text),
        }
    })?;
    Ok((file, text))
}

/// Loads, merges and validates a scenario; parses every manifest it applies from `manifests`.
pub fn load(path: &Path, manifests: &ManifestSource) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(path, bytes, manifests)
}

/// As [`load`], with the file's bytes already read (its base, if any, is read beside `path`).
pub fn load_bytes(
    path: &Path,
    bytes: Vec<u8>,
    manifests: &ManifestSource,
) -> Result<Scenario, ScenarioError> {
    let (file, text) = parse_bytes(path, bytes)?;
    let mut step_locations = BTreeMap::new();
    let invalid = |needle: &str, message: String| ScenarioError::Invalid {
        at: locate(path, &text, needle),
        message,
    };

    let (mut merged, base_steps) = match &file.base {
        Some(base) => read_base(path, base, &invalid, &mut step_locations)?,
        None => (file.clone(), Vec::new()),
    };
    let steps = merge_steps(&file, base_steps, &invalid)?;
    if file.base.is_some() {
        override_settings(&file, &mut merged);
    }
    for s in &file.steps {
        step_locations.insert(s.id.clone(), locate(path, &text, &format!("id: {}", s.id)));
    }
    let scenario = assemble(path, &file, &merged, steps, step_locations, &invalid)?;
    validate(scenario, manifests)
}

/// Reads the base scenario (`base`, relative to `path`), which may not have a base itself, and
/// notes where its steps are written.
fn read_base(
    path: &Path,
    base: &Path,
    invalid: &impl Fn(&str, String) -> ScenarioError,
    step_locations: &mut BTreeMap<String, Location>,
) -> Result<(ScenarioFile, Vec<Step>), ScenarioError> {
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
    if !base_path.exists() {
        return Err(invalid(
            "base:",
            format!("base scenario {} does not exist", base_path.display()),
        ));
    }
    let (base_file, base_text) = read_file(&base_path)?;
    if base_file.base.is_some() {
        return Err(invalid(
            "base:",
            "a base scenario may not have a base itself".into(),
        ));
    }
    for s in &base_file.steps {
        let at = locate(&base_path, &base_text, &format!("id: {}", s.id));
        step_locations.insert(s.id.clone(), at);
    }
    let steps = base_file.steps.clone();
    Ok((base_file, steps))
}

/// The scenario's steps: the base's (`steps`) less `drop_steps`, with the file's steps replacing
/// those of the same id or placed `after` one; without a base, the file's own steps.
fn merge_steps(
    file: &ScenarioFile,
    mut steps: Vec<Step>,
    invalid: &impl Fn(&str, String) -> ScenarioError,
) -> Result<Vec<Step>, ScenarioError> {
    if file.base.is_none() && !file.drop_steps.is_empty() {
        return Err(invalid(
            "drop_steps:",
            "drop_steps needs a base scenario".into(),
        ));
    }
    for id in &file.drop_steps {
        if !steps.iter().any(|s| &s.id == id) {
            return Err(invalid(
                id,
                format!("drop_steps: the base has no step {id}"),
            ));
        }
        steps.retain(|s| &s.id != id);
    }
    if file.base.is_some() {
        for s in &file.steps {
            match (steps.iter_mut().find(|b| b.id == s.id), &s.after) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &format!("id: {}", s.id),
                        format!("step {}: `after` places a new step, but the base has a step {} already (it is replaced where it is)", s.id, s.id),
                    ))
                }
                (Some(slot), None) => *slot = s.clone(),
                (None, Some(after)) => match steps.iter().position(|b| &b.id == after) {
                    Some(i) => steps.insert(i + 1, s.clone()),
                    None => {
                        return Err(invalid(
                            &format!("after: {after}"),
                            format!("step {}: `after: {after}` names no step of the scenario", s.id),
                        ))
                    }
                },
                (None, None) => steps.push(s.clone()),
            }
        }
    } else {
        if let Some(s) = file.steps.iter().find(|s| s.after.is_some()) {
            return Err(invalid(
                &format!("id: {}", s.id),
                format!("step {}: `after` needs a base scenario", s.id),
            ));
        }
        steps = file.steps.clone();
    }
    Ok(steps)
}

/// Overrides the base's settings (`merged`) with those the file sets.
fn override_settings(file: &ScenarioFile, merged: &mut ScenarioFile) {
    if file.clusters.is_some() {
        merged.clusters = file.clusters.clone();
    }
    if file.fleet.is_some() {
        merged.fleet = file.fleet.clone();
    }
    if file.dns.is_some() {
        merged.dns = file.dns.clone();
    }
    if file.continuous_load.is_some() {
        merged.continuous_load = file.continuous_load.clone();
    }
    merged.expect = file.expect.clone();
    merged.description = file.description.clone().or(merged.description.take());
}

/// The scenario the merged file describes, its settings checked, ready for validation.
fn assemble(
    path: &Path,
    file: &ScenarioFile,
    merged: &ScenarioFile,
    steps: Vec<Step>,
    step_locations: BTreeMap<String, Location>,
    invalid: &impl Fn(&str, String) -> ScenarioError,
) -> Result<Scenario, ScenarioError> {
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let clusters = merged
        .clusters
        .clone()
        .ok_or_else(|| invalid("", "no `clusters` are declared".into()))?;
    let dns = merged
        .dns
        .clone()
        .ok_or_else(|| invalid("", "no `dns` domain is declared".into()))?;
    let fleet = merged.fleet.clone().unwrap_or(FleetSpec {
        provisioning_seconds: default_provisioning(),
        fault: None,
        flap: None,
    });
    check_fleet(&fleet, invalid)?;
    let scale = dns.ttl_scale;
    if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
        return Err(invalid(
            "ttl_scale",
            format!("dns.ttl_scale must be more than 0 and at most 1, not {scale}"),
        ));
    }
    let expect = merged.expect.clone().unwrap_or_default();

    Ok(Scenario {
        name,
        path: path.to_path_buf(),
        description: merged.description.clone().unwrap_or_default(),
        expect,
        clusters,
        fleet,
        dns,
        steps,
        manifests: ManifestSet::default(),
        step_locations,
        continuous_load: merged.continuous_load.clone(),
    })
}

/// The fleet settings are in range: provisioning time, the stand-in's fault state and flap.
fn check_fleet(
    fleet: &FleetSpec,
    invalid: &impl Fn(&str, String) -> ScenarioError,
) -> Result<(), ScenarioError> {
    let p = fleet.provisioning_seconds;
    if !(p.is_finite() && (0.0..=3600.0).contains(&p)) {
        return Err(invalid(
            "provisioning_seconds",
            format!(
                "fleet.provisioning_seconds must be a number of seconds from 0 to 3600, not {p}"
            ),
        ));
    }
    if let Some(f) = &fleet.fault {
        if f.state == "ACTIVE" || !crate::fleet::LIFECYCLE_STATES.contains(&f.state.as_str()) {
            return Err(invalid(
                "fault:",
                format!(
                    "fleet.fault.state must be a state that is not ACTIVE: one of {}, not {}",
                    crate::fleet::LIFECYCLE_STATES
                        .iter()
                        .filter(|s| **s != "ACTIVE")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    f.state
                ),
            ));
        }
    }
    if let Some(f) = &fleet.flap {
        for (field, v) in [
            ("active_seconds", f.active_seconds),
            ("provisioning_seconds", f.provisioning_seconds),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return Err(invalid(
                    field,
                    format!("fleet.flap.{field} must be a number of seconds above 0 and at most 3600, not {v}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a runaway file is refused before it is parsed, with its location.
    #[test]
    fn a_huge_file_is_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.yaml");
        let mut text = String::from("clusters: [{name: a}]\ndns: {domain: example.com}\nsteps:\n");
        while text.len() <= MAX_SCENARIO_BYTES {
            text.push_str(
                "  - {id: X, title: \"................................................\"}\n",
            );
        }
        std::fs::write(&p, &text).unwrap();
        let err = load(&p, &ManifestSource::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("huge.yaml:1:1"), "{err}");
        assert!(
            err.contains(&format!("a scenario has at most {MAX_SCENARIO_BYTES}")),
            "{err}"
        );
    }
}
