#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valet_fuzzing::response_head(data));
