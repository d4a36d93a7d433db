//! Test builds only (`--features fault-injection`): `BITNET_INJECT_FAULT=<kernel>` makes
//! that kernel's first output of every call wrong, so the harness's tests can prove that
//! validation notices a kernel computing wrong logits. Release builds never contain this.
//! With `std` the variable is read when the program runs; bare metal has no environment,
//! so there it is read when the crate is compiled.

use super::Kernel;

pub fn inject(k: Kernel, out: &mut [f32]) {
    #[cfg(feature = "std")]
    let hit = std::env::var("BITNET_INJECT_FAULT").is_ok_and(|v| v == k.name());
    #[cfg(not(feature = "std"))]
    let hit = option_env!("BITNET_INJECT_FAULT") == Some(k.name());
    if hit {
        if let Some(y) = out.first_mut() {
            *y += 0.5;
        }
    }
}
