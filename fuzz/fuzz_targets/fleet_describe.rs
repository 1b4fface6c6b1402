//! `gcloud container fleet mesh describe` output readers on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(yaml) = std::str::from_utf8(data) {
        let _ = meshmig::fleet::membership_status(yaml, "cluster-with-csm-membership");
        let _ = meshmig::fleet::overview(yaml);
    }
});
