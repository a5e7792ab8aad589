//! Fuzz the cairn.lock reader: any bytes must give a lock or an error, never a panic, and a
//! lock that reads must write back canonically and read again to the same lock.
#![no_main]

use std::path::Path;

use cairn::model::lockfile::Lock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(lock) = Lock::from_toml(text, Path::new("fuzz.lock")) {
        let canonical = lock.to_toml();
        let again = Lock::from_toml(&canonical, Path::new("fuzz.lock"))
            .expect("a canonical lock must read back");
        assert_eq!(again.to_toml(), canonical, "canonical form must be stable");
    }
});
