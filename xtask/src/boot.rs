//! `cargo xtask boot`: one run of a bare-metal image under qemu-system, with the image's
//! arguments passed as if it were a program, so the pipeline runs bare-metal boards exactly
//! like qemu-user ones (`emulate::command` puts this in front of the arguments). The image
//! reads its command line, the model and writes the logits through semihosting; its UART
//! is this command's stdout; QEMU's exit code (the image's) is this command's.

use std::process::Command;

use crate::flags::BootArgs;

/// What a `virt` machine needs besides the CPU model, per system emulator.
fn machine(qemu: &str) -> Result<&'static [&'static str], String> {
    match qemu {
        // Machine mode from the first instruction: the image is its own firmware.
        "qemu-system-riscv64" => Ok(&["-M", "virt", "-bios", "none"]),
        "qemu-system-aarch64" => Ok(&["-M", "virt"]),
        other => Err(format!(
            "{other}: no bare-metal machine for it; expected qemu-system-riscv64 or qemu-system-aarch64"
        )),
    }
}

/// The qemu-system command line that boots `image` with `args` as its command line.
pub fn command(a: &BootArgs) -> Result<Command, String> {
    let mut semihosting = String::from("enable=on,target=native,arg=bitnet-bare");
    for arg in &a.args {
        // QEMU joins the arguments with spaces for the guest: one with a space would split.
        if arg.contains(char::is_whitespace) || arg.is_empty() {
            return Err(format!(
                "argument '{arg}': a bare-metal image's arguments cannot be empty or contain spaces"
            ));
        }
        // In QEMU's option syntax a comma inside a value is written twice.
        semihosting.push_str(",arg=");
        semihosting.push_str(&arg.replace(',', ",,"));
    }
    let mut c = Command::new(&a.qemu);
    c.args(machine(&a.qemu)?)
        .args(["-cpu", &a.cpu])
        // The memory maps in qemu/machines/ put the heap up to 512 MiB.
        .args(["-m", "512M", "-smp", "1", "-nic", "none"])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-semihosting-config")
        .arg(semihosting)
        .arg("-kernel")
        .arg(&a.image);
    Ok(c)
}

pub fn run(a: &BootArgs) -> Result<(), String> {
    if !a.image.is_file() {
        return Err(format!("{}: no such image", a.image.display()));
    }
    let status = command(a)?.status().map_err(|e| {
        format!(
            "cannot start {}: {e}; run `cargo xtask setup` (installs qemu-system)",
            a.qemu
        )
    })?;
    // The image's exit code is the run's result; a signal is reported like a shell does.
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(qemu: &str, args: &[&str]) -> BootArgs {
        BootArgs {
            qemu: qemu.into(),
            cpu: "max".into(),
            image: "img".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn commas_are_doubled_and_spaces_refused() {
        let c = command(&args("qemu-system-riscv64", &["--prompt-tokens", "1,2,3"])).unwrap();
        let line: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(line.contains(
            &"enable=on,target=native,arg=bitnet-bare,arg=--prompt-tokens,arg=1,,2,,3".to_string()
        ));
        assert!(line.windows(2).any(|w| w == ["-bios", "none"]));
        let e = command(&args("qemu-system-aarch64", &["a b"])).unwrap_err();
        assert!(e.contains("spaces"), "{e}");
        let e = command(&args("qemu-system-x86_64", &[])).unwrap_err();
        assert!(e.contains("no bare-metal machine"), "{e}");
    }
}
