//! `gguf_parse`: see `bitnet_fuzz::entries::gguf_parse`.
#![no_main]

use bitnet_fuzz::meter::Counting;

#[global_allocator]
static ALLOC: Counting = Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bitnet_fuzz::entries::gguf_parse(data));
