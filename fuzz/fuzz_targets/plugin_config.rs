#![no_main]
//! `cargo fuzz run plugin_config`: see `fledge_fuzz::check_plugin_config` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_plugin_config(data));
