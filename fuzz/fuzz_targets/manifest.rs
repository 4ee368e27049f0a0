//! The manifest parser on any text: an error or a manifest, never a panic;
//! and a manifest it accepts keeps its promises (limits within bounds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use superapp_core::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        assert!(!m.id.is_empty());
        for capability in m.capabilities() {
            assert!(m.declares(capability));
            let _ = m.reason(capability);
        }
        let _ = m.label();
    }
});
