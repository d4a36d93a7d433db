//! `bitnet-bare --kernel-tests`: every kernel test of this architecture, in order, as the
//! harness runs libtest's on an OS (`kernels:: --test-threads 1 --nocapture`), printing the
//! same `test <name> ... ok` and `kernel-test:` lines. A failed check panics: the panic
//! handler prints it and the run ends with exit code 101, the later tests unrun.

use bitnet::kernels::exactness::{set_output, TESTS};

fn console(text: &str) {
    crate::console::print(format_args!("{text}"));
}

pub fn run() -> Result<(), alloc::string::String> {
    set_output(console);
    println!("running {} tests", TESTS.len());
    for t in TESTS {
        console(&alloc::format!("test kernels::{} ... ", t.name));
        (t.run)();
        println!("ok");
    }
    println!("test result: ok. {} passed; 0 failed", TESTS.len());
    Ok(())
}
