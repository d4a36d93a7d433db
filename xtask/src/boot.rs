//! `cargo xtask boot`: one run of a bare-metal image under qemu-system, with the image's
//! arguments passed as if it were a program, so the pipeline runs bare-metal boards exactly
//! like qemu-user ones (`emulate::command` puts this in front of the arguments). The image
//! reads its command line, the model and writes the logits through semihosting; its UART
//! is this command's stdout; QEMU's exit code (the image's) is this command's.

use std::path::Path;
use std::process::Command;

use crate::flags::BootArgs;

/// A machine's options besides the CPU model, and where the image's text comes out: the
/// `virt` images drive the UART; the Cortex-M image writes to semihosting's console.
struct Machine {
    args: &'static [&'static str],
    text_on_semihosting: bool,
}

/// The machine for an emulator, by its file name: `--qemu` may be a path (`cargo xtask
/// counters` boots the counting QEMU under `target/qemu-plugins/bin/`).
fn machine(qemu: &str) -> Result<Machine, String> {
    let name = Path::new(qemu)
        .file_name()
        .map_or(qemu.into(), |n| n.to_string_lossy());
    let (args, text_on_semihosting): (&[&str], bool) = match &*name {
        // Machine mode from the first instruction: the image is its own firmware.
        "qemu-system-riscv64" => (&["-M", "virt", "-bios", "none", "-m", "512M"], false),
        "qemu-system-aarch64" => (&["-M", "virt", "-m", "512M"], false),
        // Cortex-M55 with 2 GiB of DDR: the microcontroller-class board.
        "qemu-system-arm" => (&["-M", "mps3-an547"], true),
        other => {
            return Err(format!(
                "{other}: no bare-metal machine for it; expected qemu-system-riscv64, \
                 qemu-system-aarch64 or qemu-system-arm"
            ))
        }
    };
    Ok(Machine {
        args,
        text_on_semihosting,
    })
}

/// The qemu-system command line that boots `image` with `args` as its command line. The
/// image's text is QEMU's stdout either way.
pub fn command(a: &BootArgs) -> Result<Command, String> {
    let m = machine(&a.qemu)?;
    let mut semihosting = String::from("enable=on,target=native");
    if m.text_on_semihosting {
        semihosting.push_str(",chardev=out");
    }
    semihosting.push_str(",arg=bitnet-bare");
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
    c.args(m.args).args(["-cpu", &a.cpu]).args([
        "-smp", "1", "-nic", "none", "-display", "none", "-monitor", "none",
    ]);
    if m.text_on_semihosting {
        c.args(["-serial", "null", "-chardev", "stdio,id=out"]);
    } else {
        c.args(["-serial", "stdio"]);
    }
    c.arg("-semihosting-config")
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
        let c = command(&args("target/qemu-plugins/bin/qemu-system-arm", &[])).unwrap();
        assert_eq!(c.get_program(), "target/qemu-plugins/bin/qemu-system-arm");
        assert!(c.get_args().any(|a| a == "mps3-an547"));
        let e = command(&args("qemu-system-x86_64", &[])).unwrap_err();
        assert!(e.contains("no bare-metal machine"), "{e}");
    }
}
