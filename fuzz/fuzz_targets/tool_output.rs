//! What the harness reads from gcloud's and istioctl's output, on any text: piped progress,
//! newer wording, platform errors, istioctl's install lines, expected lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshmig::backend::Output;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = meshmig::gcloud::normalise_progress(text);
    let _ = meshmig::gcloud::platform_error(text);
    for d in meshmig::gcloud::DRIFTS {
        let _ = meshmig::gcloud::drifted(d.published, text);
    }
    let out = Output::new("tool", text);
    for profile in ["default", "minimal"] {
        let _ = meshmig::checks::istio_installed(
            Some(&out),
            profile,
            &["Making this installation the default for injection and validation.".into()],
            Some("1.31.0"),
        );
    }
    let _ = meshmig::checks::output_contains(
        Some(&out),
        &[
            "Waiting for Feature Service Mesh to be created...done.".into(),
            "Waiting for Feature Service Mesh to be updated...done.".into(),
        ],
    );
});
