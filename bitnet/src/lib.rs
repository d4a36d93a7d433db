//! BitNet b1.58 inference: GGUF loading, ternary kernels, the forward pass.
//!
//! The model core (formats, kernels, forward) needs only `core` + `alloc`; everything that
//! needs an operating system (mmap, threads, clocks, the CLI) sits behind the `std` feature
//! so the same core can later run bare-metal.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod cpu;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod marks;
pub mod model;
pub mod npy;
pub mod ops;
pub mod parallel;
pub mod perplexity;
pub mod profile;
pub mod quants;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod ternary;
pub mod tokenizer;
