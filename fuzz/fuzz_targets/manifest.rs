//! Fuzz the manifest reader (`.cairn/manifests/*.b3`, b3sum's output format): any bytes give a
//! manifest or an error, never a panic; a manifest that reads writes back to text that reads
//! to the same manifest.
#![no_main]

use cairn::content::digest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let text = m.to_text();
        let again = Manifest::parse(&text).expect("written manifest must read back");
        assert_eq!(again, m);
        assert_eq!(again.digest(), m.digest());
    }
});
