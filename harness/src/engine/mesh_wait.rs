//! The wait for the managed control plane: `gcloud container fleet mesh describe` polled until
//! both planes of a membership are ACTIVE, and then held ACTIVE for a stable period (step C6).

use std::time::Duration;

use meshmig_backends::{Backend, BackendError, Output};

/// Repeats `fleet mesh describe` until both planes are ACTIVE, or the timeout: the interval
/// starts at `poll` and grows by half each time, up to four times `poll`.
pub async fn wait_mesh_active(
    b: &dyn Backend,
    membership: &str,
    timeout: Duration,
    poll: Duration,
    stable: Duration,
) -> Result<Output, BackendError> {
    let (timeout, poll) = b.mesh_wait(timeout, poll);
    let command = "gcloud container fleet mesh describe".to_string();
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut interval = poll;
    let mut seen: Vec<String> = Vec::new();
    let mut polls = 0u32;
    loop {
        polls += 1;
        let yaml = b.mesh_describe().await?;
        let status = meshmig_core::fleet::membership_status(&yaml, membership)
            .map_err(|e| BackendError::infra("reading fleet mesh describe", e))?;
        let line = match &status {
            Some(s) => format!(
                "controlPlaneManagement {} / dataPlaneManagement {}",
                s.control_plane, s.data_plane
            ),
            None => format!("membership {membership} not listed"),
        };
        if seen.last() != Some(&line) {
            seen.push(line.clone());
        }
        if status.as_ref().is_some_and(|s| s.control_plane_active()) {
            let stayed = stay_active(b, membership, poll, stable, &mut seen).await?;
            return Ok(Output::new(
                command,
                format!(
                    "{} ({polls} polls, {:.1}s){stayed}\n---\n{yaml}",
                    seen.join(" → "),
                    started.elapsed().as_secs_f64()
                ),
            ));
        }
        if let Some(s) = status.as_ref().filter(|s| s.terminal()) {
            return Err(BackendError::Procedure {
                command,
                message: format!(
                    "the managed control plane is {} ({polls} polls, {:.1}s): states seen {}; details {:?}",
                    s.control_plane,
                    started.elapsed().as_secs_f64(),
                    seen.join(" → "),
                    s.details
                ),
            });
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(BackendError::Procedure {
                command,
                message: format!(
                    "not ACTIVE after {:?} ({polls} polls): states seen {}; last details {:?}",
                    timeout,
                    seen.join(" → "),
                    status.map(|s| s.details).unwrap_or_default()
                ),
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval.mul_f64(1.5)).min(poll * 4);
    }
}

/// After a first ACTIVE answer, polls every `poll` for `stable`: a control plane that leaves
/// ACTIVE meanwhile (flapping) fails the step with the states seen. What it adds to the output.
async fn stay_active(
    b: &dyn Backend,
    membership: &str,
    poll: Duration,
    stable: Duration,
    seen: &mut Vec<String>,
) -> Result<String, BackendError> {
    if stable.is_zero() {
        return Ok(String::new());
    }
    let since = tokio::time::Instant::now();
    let mut polls = 0u32;
    while since.elapsed() < stable {
        tokio::time::sleep(poll.min(stable)).await;
        polls += 1;
        let yaml = b.mesh_describe().await?;
        let status = meshmig_core::fleet::membership_status(&yaml, membership)
            .map_err(|e| BackendError::infra("reading fleet mesh describe", e))?;
        if status.as_ref().is_some_and(|s| s.control_plane_active()) {
            continue;
        }
        let line = match &status {
            Some(s) => format!(
                "controlPlaneManagement {} / dataPlaneManagement {}",
                s.control_plane, s.data_plane
            ),
            None => format!("membership {membership} not listed"),
        };
        seen.push(line);
        return Err(BackendError::Procedure {
            command: "gcloud container fleet mesh describe".into(),
            message: format!(
                "the managed control plane left ACTIVE {:.1}s after reaching it (poll {polls}; expected it to stay ACTIVE for {:.1}s): states seen {}; details {:?}",
                since.elapsed().as_secs_f64(),
                stable.as_secs_f64(),
                seen.join(" → "),
                status.map(|s| s.details).unwrap_or_default()
            ),
        });
    }
    Ok(format!(
        "; stayed ACTIVE for {:.1}s ({polls} more polls)",
        stable.as_secs_f64()
    ))
}
