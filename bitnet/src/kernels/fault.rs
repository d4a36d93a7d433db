//! Test builds only (`--features fault-injection`): `BITNET_INJECT_FAULT=<kernel>` makes
//! that kernel's first output of every call wrong, so the harness's tests can prove that
//! validation notices a kernel computing wrong logits. Release builds never contain this.
//! With `std` the variable is read when the program runs; bare metal has no environment,
//! so there it is read when the crate is compiled.

use super::Kernel;

pub fn inject(k: Kernel, out: &mut [f32]) {
    #[cfg(feature = "std")]
    let target = std::env::var("BITNET_INJECT_FAULT").ok();
    #[cfg(not(feature = "std"))]
    let target = option_env!("BITNET_INJECT_FAULT");
    if target.as_deref() == Some(k.name()) {
        if let Some(y) = out.first_mut() {
            *y += 0.5;
        }
    }
}
