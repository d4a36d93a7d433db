//! Test builds only (`--features fault-injection`): `BITNET_INJECT_FAULT=<kernel>` makes
//! that kernel's first output of every call wrong, so the harness's tests can prove that
//! validation notices a kernel computing wrong logits. Release builds never contain this.

use super::Kernel;

pub fn inject(k: Kernel, out: &mut [f32]) {
    if std::env::var("BITNET_INJECT_FAULT").is_ok_and(|v| v == k.name()) {
        if let Some(y) = out.first_mut() {
            *y += 0.5;
        }
    }
}
