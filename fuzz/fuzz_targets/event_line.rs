//! Fuzz target `event_line`: the body and the properties it checks are in `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart_fuzz::event_line(data));
