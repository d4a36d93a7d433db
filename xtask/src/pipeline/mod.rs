//! The one pipeline every command stands on: build -> run -> compare -> report.
//!
//! * `inputs`: the models, their prompt and decode tokens, the numpy reference logits.
//! * `build`: cargo / zigbuild per target; `emulate`: native or qemu-user with a CPU model.
//! * `reference`: the host's scalar runs every target is compared with.
//! * `evaluate`: one target through size checks and every profile, into a `TargetReport`.

pub mod build;
pub mod emulate;
pub mod evaluate;
pub mod inputs;
pub mod reference;
pub mod runs;
