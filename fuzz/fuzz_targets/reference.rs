//! Image references from untrusted API input: parsing never panics, and what parses prints
//! back to something that parses to the same reference.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = image::parse_reference(s) {
        let again = image::parse_reference(&r.full()).expect("a normalized reference parses");
        assert_eq!(again.full(), r.full());
    }
});
