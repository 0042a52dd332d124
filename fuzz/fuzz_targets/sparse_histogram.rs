#![no_main]
//! `cargo fuzz run sparse_histogram`: see `fledge_fuzz::check_sparse_histogram` (fuzz/src/lib.rs) for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fledge_fuzz::check_sparse_histogram(data));
