//! The legacy (Monkey-style) config reader: any text gives a config or errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = langur::config::parse_str("fuzz.conf", text, false) {
            // Every error names the file.
            assert!(errors.to_string().contains("fuzz.conf"));
        }
    }
});
