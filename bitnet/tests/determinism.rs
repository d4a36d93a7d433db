//! Determinism: the same logits, bit for bit, run to run and for every thread count 1..4,
//! on every fixture model, under every kernel this CPU runs, with both KV cache types.
//! Work is split across threads by rows; nothing may depend on the split or on timing.

mod gguf_support;

use std::sync::Arc;

use bitnet::gguf::Gguf;
use bitnet::kernels::Kernel;
use bitnet::model::{KvType, Model, State};
use bitnet::parallel::{Exec, Pool, Serial};

/// The fixtures' golden prompt then its 8 decode tokens: prefill and decode both run.
fn tokens(name: &str) -> (Vec<u32>, Vec<u32>) {
    let json =
        std::fs::read_to_string(gguf_support::fixture(&format!("{name}.golden.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    (ids("prompt_tokens"), ids("decode_tokens"))
}

/// Every position's logits of the prompt, then of each decode step, as bits.
fn run(model: &Model, exec: &dyn Exec, kv: KvType, prompt: &[u32], decode: &[u32]) -> Vec<u32> {
    let mut state = State::new(&model.config, 32, kv).unwrap();
    let mut out: Vec<u32> = model
        .forward(exec, &mut state, prompt, true)
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect();
    for &t in decode {
        let l = model.forward(exec, &mut state, &[t], false).unwrap();
        out.extend(l.iter().map(|x| x.to_bits()));
    }
    out
}

const FIXTURES: [&str; 6] = [
    "tiny-b158-i2_s",
    "tiny-b158-tq1_0",
    "tiny-b158-tq2_0",
    "tiny-bitnet-i2_s",
    "tiny-bitnet-tq1_0",
    "tiny-bitnet-tq2_0",
];

#[test]
fn logits_are_identical_run_to_run_and_across_1_to_4_threads() {
    let pools: Vec<Pool> = (2..=4).map(|t| Pool::new(t).unwrap()).collect();
    let mut checked = 0;
    for name in FIXTURES {
        let bytes = std::fs::read(gguf_support::fixture(&format!("{name}.gguf"))).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let (prompt, decode) = tokens(name);
        let source = Arc::new(bytes.clone());
        for kernel in Kernel::available() {
            let model = Model::load(&g, source.clone(), kernel).unwrap();
            // A second, independent load: nothing may carry over between models either.
            let again = Model::load(&g, source.clone(), kernel).unwrap();
            for kv in [KvType::F32, KvType::F16] {
                let want = run(&model, &Serial, kv, &prompt, &decode);
                assert_eq!(
                    want.len(),
                    (prompt.len() + decode.len()) * model.config.vocab
                );
                let what = format!("{name}, kernel {kernel}, KV {kv:?}");
                assert!(
                    want == run(&model, &Serial, kv, &prompt, &decode),
                    "{what}: run 2"
                );
                assert!(
                    want == run(&again, &Serial, kv, &prompt, &decode),
                    "{what}: reload"
                );
                for (threads, pool) in (2..=4).zip(&pools) {
                    for rep in 0..2 {
                        let got = run(&model, pool, kv, &prompt, &decode);
                        assert!(
                            want == got,
                            "{what}: {threads} threads (run {rep}) differ from 1"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    // Every fixture under every available kernel (at least the scalar one), both KV types.
    assert!(checked >= FIXTURES.len() * 2);
    eprintln!(
        "determinism: {checked} (fixture, kernel, kv) cases; kernels: {}",
        Kernel::available()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
}
