//! Fuzz target `shield_challenge`: the body and the properties it checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart_fuzz::shield_challenge(data));
