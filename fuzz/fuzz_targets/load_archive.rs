//! `docker load` archives from untrusted clients: loading arbitrary bytes never panics and
//! never writes outside the store.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = image::ImageStore::open(dir.path().join("store"), Default::default()).expect("open store");
    let _ = store.load(&mut &data[..]);
    for entry in std::fs::read_dir(dir.path()).expect("list").flatten() {
        assert_eq!(entry.file_name(), "store", "load wrote outside the store");
    }
});
