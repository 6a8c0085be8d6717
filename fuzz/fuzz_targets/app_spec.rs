#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| berth_coordinator::fuzzing::app_spec(data));
