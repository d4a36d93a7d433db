//! Running a target binary natively or under qemu-user with a board's CPU model, with a
//! timeout, and saying in words what went wrong.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::targets::{Profile, Target};

pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// How a run that did not succeed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exit(i32),
    IllegalInstruction,
    Signal(i32),
    Hung,
}

impl Outcome {
    pub fn ending(&self) -> Ending {
        if self.timed_out {
            Ending::Hung
        } else if self.illegal_instruction() {
            Ending::IllegalInstruction
        } else if let Some(s) = self.signal {
            Ending::Signal(s)
        } else {
            Ending::Exit(self.code.unwrap_or(-1))
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The guest died of SIGILL (qemu-user re-raises the guest's signal).
    pub fn illegal_instruction(&self) -> bool {
        self.signal == Some(4) || self.code == Some(132)
    }

    /// A one-line account of a failed run, with the tail of stderr.
    pub fn describe(&self, what: &str, limit: Duration) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let how = match self.ending() {
            Ending::Hung => format!("hung: killed after {} s", limit.as_secs()),
            Ending::IllegalInstruction => "died of SIGILL (illegal instruction)".to_string(),
            Ending::Signal(s) => format!("killed by signal {s}"),
            Ending::Exit(c) => format!("exit code {c}"),
        };
        format!("{what}: {how}; stderr: {}", tail.join(" | "))
    }
}

/// `bin` under the target's own runner (no CPU model): the setup probe.
pub fn plain(bin: &Path, target: &Target) -> Command {
    if !target.run.starts_with("qemu-") {
        return Command::new(bin);
    }
    let mut c = Command::new(&target.run);
    if let Some(prefix) = &target.ld_prefix {
        c.env("QEMU_LD_PREFIX", prefix);
    }
    c.arg(bin);
    c
}

/// A bare-metal image booted by `cargo xtask boot` (this program), so that callers append
/// the image's arguments as they would a program's.
fn boot(image: &Path, target: &Target, cpu: &str) -> Command {
    let xtask = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
    let mut c = Command::new(xtask);
    c.args(["boot", "--qemu", &target.run, "--cpu", cpu, "--image"])
        .arg(image)
        .arg("--");
    c
}

/// The command that runs `bin` for `target` on `profile`: natively, under the profile's
/// qemu-user, or for a bare-metal target booted by the target's qemu-system with the
/// profile's CPU model.
pub fn command(bin: &Path, target: &Target, profile: &Profile) -> Command {
    if let (true, Some(cpu)) = (target.is_bare_metal(), &profile.cpu) {
        // Every bare-metal profile names its CPU (checked when targets.toml is read).
        return boot(bin, target, cpu);
    }
    match &profile.qemu {
        None => Command::new(bin),
        Some(qemu) => {
            let mut c = Command::new(qemu);
            if let Some(cpu) = &profile.cpu {
                c.args(["-cpu", cpu]);
            }
            if let Some(prefix) = &target.ld_prefix {
                c.env("QEMU_LD_PREFIX", prefix);
            }
            c.arg(bin);
            c
        }
    }
}

/// Runs to completion or kills the process after `limit`.
pub fn run(mut c: Command, limit: Duration) -> Result<Outcome, String> {
    let program = format!("{:?}", c.get_program());
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}; run `cargo xtask setup`"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(Outcome {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
