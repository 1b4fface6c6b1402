//! The scenario loader on any bytes: a scenario or an error with a location, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshmig::manifest::ManifestSource;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Bases and manifests are looked for in a folder that does not exist.
    let nowhere = Path::new("/nonexistent/meshmig-fuzz");
    let _ = meshmig::scenario::load_bytes(
        &nowhere.join("scenario.yaml"),
        data.to_vec(),
        &ManifestSource::new(nowhere),
    );
});
