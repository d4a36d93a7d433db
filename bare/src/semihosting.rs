//! Arm semihosting (also RISC-V's, same calls): the image asks the debugger, here QEMU with
//! `-semihosting-config enable=on,target=native`, to read its command line, open, read and
//! write host files and end the run with an exit code. It is the only channel between the
//! image and the harness besides the UART.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

const SYS_OPEN: usize = 0x01;
const SYS_CLOSE: usize = 0x02;
const SYS_WRITE: usize = 0x05;
const SYS_READ: usize = 0x06;
const SYS_FLEN: usize = 0x0C;
const SYS_GET_CMDLINE: usize = 0x15;
const SYS_EXIT: usize = 0x18;
const SYS_EXIT_EXTENDED: usize = 0x20;
#[cfg(target_arch = "arm")]
const SYS_WRITEC: usize = 0x03;
/// `ADP_Stopped_ApplicationExit`: with a 64-bit target the exit call carries a status.
const APPLICATION_EXIT: usize = 0x20026;

/// One call: `op` with the address of its parameter block; the host may read and write
/// guest memory through it.
#[cfg(target_arch = "aarch64")]
fn call(op: usize, param: usize) -> isize {
    let r: isize;
    // SAFETY: the semihosting trap; the host touches only the memory the block names.
    unsafe {
        core::arch::asm!("hlt #0xf000", inout("x0") op => r, in("x1") param, options(nostack));
    }
    r
}

#[cfg(target_arch = "arm")]
fn call(op: usize, param: usize) -> isize {
    let r: isize;
    // SAFETY: the M-profile semihosting trap; as above.
    unsafe {
        core::arch::asm!("bkpt 0xab", inout("r0") op => r, in("r1") param, options(nostack));
    }
    r
}

#[cfg(target_arch = "riscv64")]
fn call(op: usize, param: usize) -> isize {
    let r: isize;
    // SAFETY: the semihosting trap: exactly this uncompressed three-instruction sequence,
    // within one page (hence the alignment), is what the debugger recognises.
    unsafe {
        core::arch::asm!(
            ".balign 16",
            ".option push",
            ".option norvc",
            "slli x0, x0, 0x1f",
            "ebreak",
            "srai x0, x0, 7",
            ".option pop",
            inout("a0") op => r,
            in("a1") param,
            options(nostack)
        );
    }
    r
}

/// The command line QEMU was given (`-semihosting-config ...,arg=A,arg=B`), split at spaces
/// (QEMU joins the arguments with spaces and quotes nothing).
pub fn args() -> Result<Vec<String>, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    if call(SYS_GET_CMDLINE, block.as_mut_ptr() as usize) != 0 {
        return Err(
            "semihosting: no command line (QEMU needs -semihosting-config enable=on)".into(),
        );
    }
    let len = block[1].min(buf.len());
    let text = core::str::from_utf8(&buf[..len])
        .map_err(|_| String::from("semihosting: the command line is not UTF-8"))?;
    Ok(text
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect())
}

/// A host file, closed on drop.
pub struct File(usize);

impl File {
    fn open(path: &str, mode: usize) -> Result<File, String> {
        let mut name: Vec<u8> = path.as_bytes().to_vec();
        name.push(0);
        let block = [name.as_ptr() as usize, mode, path.len()];
        match call(SYS_OPEN, block.as_ptr() as usize) {
            -1 => Err(alloc::format!("{path}: cannot open on the host")),
            h => Ok(File(h as usize)),
        }
    }

    /// Mode "rb".
    pub fn open_read(path: &str) -> Result<File, String> {
        File::open(path, 1)
    }

    /// Mode "wb": created or truncated.
    pub fn create(path: &str) -> Result<File, String> {
        File::open(path, 5)
    }

    pub fn len(&self) -> Option<usize> {
        let block = [self.0];
        usize::try_from(call(SYS_FLEN, block.as_ptr() as usize)).ok()
    }

    /// Fills `buf` completely or fails.
    pub fn read_exact(&self, buf: &mut [u8]) -> Result<(), ()> {
        let block = [self.0, buf.as_mut_ptr() as usize, buf.len()];
        // The call returns how many bytes it did not read.
        match call(SYS_READ, block.as_ptr() as usize) {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    pub fn write_all(&self, data: &[u8]) -> Result<(), ()> {
        let block = [self.0, data.as_ptr() as usize, data.len()];
        match call(SYS_WRITE, block.as_ptr() as usize) {
            0 => Ok(()),
            _ => Err(()),
        }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let block = [self.0];
        call(SYS_CLOSE, block.as_ptr() as usize);
    }
}

/// One byte to the debug console (the Cortex-M image's only text output).
#[cfg(target_arch = "arm")]
pub fn write_char(b: u8) {
    call(SYS_WRITEC, &b as *const u8 as usize);
}

/// Ends the run: QEMU exits with `code`.
pub fn exit(code: i32) -> ! {
    let block = [APPLICATION_EXIT, code as u32 as usize];
    // A 32-bit target's SYS_EXIT carries no status: the extended call does.
    let op = if cfg!(target_pointer_width = "32") {
        SYS_EXIT_EXTENDED
    } else {
        SYS_EXIT
    };
    call(op, block.as_ptr() as usize);
    // Only without semihosting does the call return: nothing else can end the run.
    loop {
        core::hint::spin_loop();
    }
}
