//! The footer reader on any page: it must answer (identity, state or an error), never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = std::str::from_utf8(data) {
        let _ = meshmig::footer::parse(page);
    }
});
