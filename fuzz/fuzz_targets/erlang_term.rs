#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rtcserver_fuzz::erlang_term(data));
