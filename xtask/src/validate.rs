//! `cargo xtask validate`: the pipeline for some targets (and one profile), with a line
//! per profile and every failure.

use crate::ctx::Ctx;
use crate::flags::ValidateArgs;
use crate::pipeline::{build, evaluate, reference};
use crate::progress::Progress;
use crate::report::Status;

pub fn run(ctx: &Ctx, a: &ValidateArgs) -> Result<(), String> {
    let targets = ctx.matrix.select(&a.select.target)?;
    if let Some(cpu) = &a.cpu {
        if !ctx.matrix.profiles.contains_key(cpu) {
            return Err(format!(
                "unknown profile '{cpu}'; qemu/profiles.toml defines: {}",
                ctx.matrix
                    .profiles
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let inputs = ctx.inputs(&a.eval)?;
    let progress = Progress::new();
    progress.step("host: building the reference".into());
    let host_bin = build::binary(&ctx.sh, &ctx.host()?, None)?;
    let host = reference::host_runs(&host_bin, &inputs)?;
    let mut failed = 0;
    for t in &targets {
        let r = evaluate::target(
            &ctx.sh,
            &ctx.matrix,
            t,
            &host,
            &inputs,
            a.cpu.as_deref(),
            &|m| progress.step(m),
        );
        for p in &r.profiles {
            let tests = p.kernel_tests.as_ref().map_or("-".into(), |c| {
                c.iter()
                    .map(|(k, c)| format!("{k} {}/{}", c.passed, c.ran))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            progress.done(format!(
                "{} {:<22} {:<5} kernels [{}] max |diff| host {} reference {} bit-identical {} exactness cases {tests}",
                t.triple,
                p.name,
                p.status.word(),
                p.kernels.keys().cloned().collect::<Vec<_>>().join(", "),
                p.max_abs_vs_host.map_or("-".into(), |d| format!("{d:.2e}")),
                p.max_abs_vs_oracle.map_or("-".into(), |d| format!("{d:.2e}")),
                p.logits_bit_identical.map_or("-".into(), |b| b.to_string()),
            ));
        }
        for u in &r.unproven {
            progress.done(format!("  unproven: {}: {}", u.kernels.join(", "), u.why));
        }
        for f in r.all_failures() {
            progress.done(format!("  - {:?}: {}", f.kind, f.message));
        }
        if r.status == Status::Fail {
            failed += 1;
        }
    }
    progress.finish();
    if failed > 0 {
        return Err(format!("validation failed on {failed} target(s)"));
    }
    Ok(())
}
