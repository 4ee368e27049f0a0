//! The package reader on any bytes: an error or a package whose parts are
//! consistent, never a panic; what it accepts writes back to the same bytes'
//! meaning (reading its own output gives the same package).
#![no_main]

use libfuzzer_sys::fuzz_target;
use superapp_core::package::Package;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Package::from_bytes(data) {
        let _ = p.verify();
        let again = Package::from_bytes(&p.to_bytes()).expect("a package reads its own bytes");
        assert_eq!(again.digest(), p.digest());
        assert_eq!(again.manifest_bytes(), p.manifest_bytes());
        assert_eq!(again.component(), p.component());
    }
});
