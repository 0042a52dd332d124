#![no_main]
//! `cargo fuzz run outcomes`: see `fledge_fuzz::check_outcomes` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_outcomes(data));
