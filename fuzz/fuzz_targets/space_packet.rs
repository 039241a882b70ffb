#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| downlink_fuzz::space_packet(data));
