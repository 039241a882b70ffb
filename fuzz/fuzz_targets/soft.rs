#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = downlink_fuzz::soft(data);
});
