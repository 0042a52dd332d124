#![no_main]
//! `cargo fuzz run rollout_spec`: see `fledge_fuzz::check_rollout_spec` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_rollout_spec(data));
