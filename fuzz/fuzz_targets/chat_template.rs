//! `chat_template`: see `bitnet_fuzz::entries::chat_template`.
#![no_main]

use bitnet_fuzz::meter::Counting;

#[global_allocator]
static ALLOC: Counting = Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Running out of input is not a finding.
    let _ = bitnet_fuzz::entries::chat_template(data);
});
