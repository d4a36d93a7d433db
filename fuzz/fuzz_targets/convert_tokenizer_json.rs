//! `convert_tokenizer_json`: see `bitnet_fuzz::convert_entries::convert_tokenizer_json`.
#![no_main]

use bitnet_fuzz::meter::Counting;

#[global_allocator]
static ALLOC: Counting = Counting;

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| bitnet_fuzz::convert_entries::convert_tokenizer_json(data)
);
