#![no_main]
//! `cargo fuzz run config_snapshot`: see `fledge_fuzz::check_config_snapshot` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_config_snapshot(data));
