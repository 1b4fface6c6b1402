//! What gcloud prints, as gcloud 528 (the Google Cloud CLI on the development machines) prints
//! it: progress lines written to a pipe, the wording that changed since the published procedure
//! was written, and which errors are about the platform rather than the procedure.
//!
//! Sources are the SDK's own files (`/usr/lib/google-cloud-sdk/lib/...` of gcloud 528.0.0) and,
//! for server messages, real outputs quoted in public issues; each is cited where it is used.

/// Joins gcloud's progress output back into the line a terminal shows.
///
/// When stderr is not a terminal, gcloud's progress tracker (`_NonInteractiveProgressTracker` in
/// `googlecloudsdk/core/console/progress_tracker.py`) prints the message and `...` on one line,
/// then one `.` per tick and `done.` (or `failed.`, `aborted by ctrl-c.`) on the next:
/// `Waiting for membership to be created...\n.................done.\n`. The procedure quotes the
/// terminal's form, `Waiting for membership to be created...done.`.
pub fn normalise_progress(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.ends_with("...") {
            if let Some(next) = lines.get(i + 1) {
                let rest = next.trim_start_matches('.');
                if ["done.", "failed.", "aborted by ctrl-c."].contains(&rest) {
                    out.push(format!("{line}{rest}"));
                    i += 2;
                    continue;
                }
            }
        }
        out.push(line.to_string());
        i += 1;
    }
    out.join("\n")
}

/// Whether a gcloud error is the platform's (a permission, a quota, an API not enabled): the
/// harness cannot judge the procedure on it, so it is an infrastructure failure (exit 3).
///
/// Real messages of each kind: `ResponseError: code=403, message=Kubernetes Engine API is not
/// enabled for this project.` (kubernetes-native-testbed/kubernetes-native-testbed#787);
/// `... has not been used in project N before or it is disabled` (Google APIs'
/// `accessNotConfigured`, opstrace/opstrace#128); `ResponseError: code=403, message=\n (1)
/// insufficient regional quota to satisfy request: resource "CPUS" ...` (googlecodelabs/feedback#950);
/// `PERMISSION_DENIED` and `QUOTA_EXCEEDED` statuses of Google APIs.
pub fn platform_error(message: &str) -> bool {
    const MARKERS: &[&str] = &[
        "code=403",
        "PERMISSION_DENIED",
        "Permission denied",
        "does not have permission",
        "QUOTA_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "quota to satisfy request",
        "Quota '",
        "is not enabled for this project",
        "has not been used in project",
        "SERVICE_DISABLED",
        "accessNotConfigured",
        "You do not currently have an active account selected",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

/// Whether a gcloud error says a fleet feature is not enabled in the project: what `gcloud
/// container fleet mesh describe` answers (exit 1) once the mesh feature is disabled or before it
/// was ever enabled: `ERROR: (gcloud.container.fleet.mesh.describe) Service Mesh Feature for
/// project [demo] is not enabled` (`FeatureNotEnabledError` in
/// `googlecloudsdk/command_lib/container/fleet/features/base.py` of gcloud 528, raised when the
/// feature's GET is a 404). It is an answer about the fleet, not a failure.
pub fn feature_not_enabled(message: &str) -> bool {
    message.contains(" Feature for project [") && message.trim_end().ends_with("] is not enabled")
}

/// A line the published procedure shows that gcloud 528 words otherwise, and why.
pub struct Drift {
    /// The published line.
    pub published: &'static str,
    /// What a line printed instead starts with.
    pub starts: &'static str,
    /// ...and ends with.
    pub ends: &'static str,
    /// Why, with the source.
    pub why: &'static str,
}

/// The published lines gcloud 528 prints otherwise.
pub const DRIFTS: &[Drift] = &[
    Drift {
        published: "Waiting for Feature Service Mesh to be updated...done.",
        starts: "Waiting for MembershipFeature projects/",
        ends: "/features/servicemesh to be updated...done.",
        why: "`mesh update` now updates the membership's feature (v2 API): googlecloudsdk/command_lib/container/fleet/membershipfeatures/base.py of gcloud 528",
    },
    Drift {
        published: "Waiting for Feature Service Mesh to be created...done.",
        starts: "Service Mesh Feature for project [",
        ends: "] is already enabled",
        why: "the project's mesh feature was enabled already; gcloud says so and exits 0: googlecloudsdk/command_lib/container/fleet/features/base.py of gcloud 528",
    },
];

/// The line of `text` that says what `published` said in other words, and why.
pub fn drifted<'a>(published: &str, text: &'a str) -> Option<(&'a str, &'static str)> {
    DRIFTS
        .iter()
        .filter(|d| d.published == published)
        .find_map(|d| {
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with(d.starts) && l.ends_with(d.ends))
                .map(|l| (l, d.why))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes gcloud 528's non-interactive tracker wrote to a pipe (reproduced with the installed
    /// SDK, stderr redirected to a file).
    const PIPED: &str = "Waiting for membership to be created...\n.................done.\nFinished registering to the Fleet.\n";

    #[test]
    fn piped_progress_reads_as_a_terminal_shows_it() {
        assert_eq!(
            normalise_progress(PIPED),
            "Waiting for membership to be created...done.\nFinished registering to the Fleet.\n"
        );
        assert_eq!(
            normalise_progress("Deleting cluster c...\n..failed.\n"),
            "Deleting cluster c...failed.\n"
        );
        // Not progress: left alone.
        assert_eq!(normalise_progress("a...\nb\n"), "a...\nb\n");
    }

    #[test]
    fn platform_errors_are_told_from_the_procedures() {
        // kubernetes-native-testbed/kubernetes-native-testbed#787.
        assert!(platform_error("ERROR: (gcloud.beta.container.clusters.create) ResponseError: code=403, message=Kubernetes Engine API is not enabled for this project. Please ensure it is enabled in Google Cloud Console and try again: visit https://console.cloud.google.com/apis/api/container.googleapis.com/overview?project=kubernetes-native-testbed to do so."));
        // googlecodelabs/feedback#950.
        assert!(platform_error("ERROR: (gcloud.container.clusters.create) ResponseError: code=403, message=\n        (1) insufficient regional quota to satisfy request: resource \"CPUS\": request requires '12.0' and is short '4.0'."));
        // The procedure's own finding (gcloud 528's wrapper for a missing cluster).
        assert!(!platform_error("ERROR: (gcloud.container.clusters.delete) Some requests did not succeed:\n - args: [\"ResponseError: code=404, message=Not found: projects/p/zones/us-central1-a/clusters/c.\\nNo cluster named 'c' in p.\"]\n   exit_code: 1\n"));
    }

    #[test]
    fn a_feature_that_is_not_enabled_is_told_from_other_errors() {
        // What the real gcloud 528 printed against the rehearsal's stand-in after `mesh disable`.
        assert!(feature_not_enabled("exit Some(1): ERROR: (gcloud.container.fleet.mesh.describe) Service Mesh Feature for project [demo] is not enabled\n"));
        assert!(!feature_not_enabled("ERROR: (gcloud.container.fleet.mesh.describe) ResponseError: code=403, message=Permission denied"));
        // The API (not the feature) not enabled: a platform error, not this.
        assert!(!feature_not_enabled("ResponseError: code=403, message=Kubernetes Engine API is not enabled for this project."));
    }

    #[test]
    fn current_wording_is_recognised_for_the_published_line() {
        let out = "Waiting for MembershipFeature projects/demo/locations/us-central1/memberships/m/features/servicemesh to be updated...done.\n";
        let (line, why) = drifted(
            "Waiting for Feature Service Mesh to be updated...done.",
            out,
        )
        .unwrap();
        assert!(line.starts_with("Waiting for MembershipFeature"));
        assert!(why.contains("membershipfeatures/base.py"));
        assert!(drifted("Waiting for membership to be created...done.", out).is_none());
    }
}
