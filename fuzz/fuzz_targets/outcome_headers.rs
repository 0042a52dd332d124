#![no_main]
//! `cargo fuzz run outcome_headers`: see `fledge_fuzz::check_outcome_headers` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_outcome_headers(data));
