#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rtcserver_fuzz::app_env(data));
