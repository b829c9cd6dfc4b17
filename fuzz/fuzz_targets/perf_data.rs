#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hwprof::fuzz_targets::perf_data(data));
