#![no_main]
//! `cargo fuzz run report`: see `fledge_fuzz::check_report` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_report(data));
