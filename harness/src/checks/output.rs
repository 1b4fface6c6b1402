//! Checks on what a step's command printed.

use serde_json::json;

use super::CheckResult;
use meshmig_backends::Output;
/// The action printed these lines, in this order.
/// A published line that gcloud now words otherwise (`gcloud::DRIFTS`) counts as found, and is
/// reported as a deviation, which does not fail the step.
pub fn output_contains(output: Option<&Output>, lines: &[String]) -> CheckResult {
    let stdout = output.map(|o| o.stdout.as_str()).unwrap_or_default();
    let mut rest = stdout;
    let mut missing = None;
    let mut deviations = Vec::new();
    for l in lines {
        if let Some(i) = rest.find(l.as_str()) {
            rest = &rest[i + l.len()..];
        } else if let Some((said, why)) = meshmig_core::gcloud::drifted(l, rest) {
            deviations.push(format!(
                "the published procedure shows {l:?}; the tool printed {said:?} ({why})"
            ));
            let i = rest.find(said).unwrap_or(0);
            rest = &rest[i + said.len()..];
        } else {
            missing = Some(l.clone());
            break;
        }
    }
    let mut r = CheckResult::new(
        "output_contains",
        missing.is_none(),
        format!("output with {lines:?} in order"),
        match &missing {
            None if deviations.is_empty() => "all lines, in order".into(),
            None => "all lines, in order, some in newer wording".into(),
            Some(l) => format!("{l:?} missing (or out of order)"),
        },
        json!({"command": output.map(|o| o.command.clone()), "stdout": stdout}),
    );
    r.deviations = deviations;
    r
}

/// `istioctl install` succeeded: the ✔ lines of `profile`, in order. Each `published` line
/// (what the procedure's text shows) that the output lacks is a deviation, explained by what
/// this istioctl version prints instead.
pub fn istio_installed(
    output: Option<&Output>,
    profile: &str,
    published: &[String],
    version: Option<&str>,
) -> CheckResult {
    use meshmig_backends::istioctl::install_output::{default_line, minor, success_lines};
    let stdout = output.map(|o| o.stdout.as_str()).unwrap_or_default();
    let want = success_lines(profile);
    let mut rest = stdout;
    let mut missing = None;
    for l in &want {
        match rest.find(l) {
            Some(i) => rest = &rest[i + l.len()..],
            None => {
                missing = Some(*l);
                break;
            }
        }
    }
    let v = version.unwrap_or("of unknown version");
    let instead = match version.and_then(minor) {
        Some(m) => match default_line(m) {
            Some(l) => format!("istioctl {v} prints {l:?} instead"),
            None => format!("istioctl {v} prints no such line (1.24 and later print none)"),
        },
        None => format!(
            "istioctl {v} printed: {:?}",
            stdout.lines().last().unwrap_or("")
        ),
    };
    let mut r = CheckResult::new(
        "istio_installed",
        missing.is_none(),
        format!("istioctl's success lines for the {profile} profile, in order: {want:?}"),
        match missing {
            None => format!("all of them (istioctl {v})"),
            Some(l) => format!("{l:?} missing (or out of order): the install did not succeed"),
        },
        json!({"command": output.map(|o| o.command.clone()), "stdout": stdout, "istio_version": version}),
    );
    r.deviations = published
        .iter()
        .filter(|p| !stdout.contains(p.as_str()))
        .map(|p| format!("the published procedure shows {p:?}; {instead}"))
        .collect();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmig_backends::istioctl::install_output::RECORDED_1_31_0_DEFAULT;
    use rstest::rstest;

    const PUBLISHED: &str = "Making this installation the default for injection and validation.";

    fn out(stdout: &str) -> Output {
        Output::new("istioctl install --set profile=default -y", stdout)
    }

    #[test]
    fn a_successful_install_passes_and_the_published_line_is_a_deviation() {
        let r = istio_installed(
            Some(&out(RECORDED_1_31_0_DEFAULT)),
            "default",
            &[PUBLISHED.into()],
            Some("1.31.0"),
        );
        assert!(r.ok, "{}", r.message());
        assert_eq!(r.deviations.len(), 1, "{:?}", r.deviations);
        assert!(
            r.deviations[0].contains("istioctl 1.31.0 prints no such line"),
            "{:?}",
            r.deviations
        );
    }

    #[rstest]
    #[case::v1_22(
        "1.22.3",
        "prints \"Made this installation the default for injection and validation.\" instead"
    )]
    #[case::v1_23(
        "1.23.0",
        "prints \"Made this installation the default for cluster-wide operations.\" instead"
    )]
    #[case::v1_18("1.18.2", "prints no such line")]
    fn each_version_explains_its_own_wording(#[case] version: &str, #[case] says: &str) {
        let r = istio_installed(
            Some(&out(RECORDED_1_31_0_DEFAULT)),
            "default",
            &[PUBLISHED.into()],
            Some(version),
        );
        assert!(r.deviations[0].contains(says), "{:?}", r.deviations);
    }

    #[test]
    fn an_install_that_stopped_before_the_gateways_fails() {
        let cut = RECORDED_1_31_0_DEFAULT
            .split("✔ Ingress gateways installed")
            .next()
            .unwrap();
        let r = istio_installed(Some(&out(cut)), "default", &[], Some("1.31.0"));
        assert!(!r.ok);
        assert_eq!(
            r.message().split(';').nth(1).unwrap().trim(),
            "observed \"✔ Ingress gateways installed\" missing (or out of order): the install did not succeed"
        );
    }

    #[test]
    fn the_minimal_profile_needs_no_gateway_line() {
        let minimal = RECORDED_1_31_0_DEFAULT.replace("✔ Ingress gateways installed 🛬\n", "");
        assert!(istio_installed(Some(&out(&minimal)), "minimal", &[], None).ok);
        assert!(!istio_installed(Some(&out(&minimal)), "default", &[], None).ok);
    }
}
