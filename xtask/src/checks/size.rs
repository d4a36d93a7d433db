//! What a target binary weighs and carries, read with the `object` crate: stripped size,
//! `.text`/`.rodata`, static or dynamic, kernel entry-point symbols; and the checks of
//! those against `targets.toml`.

use std::collections::BTreeSet;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};
use serde::{Deserialize, Serialize};

use crate::report::{Failure, FailureKind};
use crate::targets::Target;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SizeInfo {
    pub triple: String,
    pub file_bytes: u64,
    /// Size after stripping every symbol (measured on a stripped copy).
    pub stripped_bytes: u64,
    pub text_bytes: u64,
    pub rodata_bytes: u64,
    pub is_static: bool,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// Kernel names found as `bitmatmul_<name>` symbols.
    pub kernels: Vec<String>,
}

/// `llvm-strip` from rustup's llvm-tools component: strips ELF and Mach-O alike.
pub fn llvm_tool(name: &str) -> Result<std::path::PathBuf, String> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(crate::targets::HOST)
        .join("bin")
        .join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{name} not found in {}; run `cargo xtask setup`",
            p.display()
        ))
    }
}

pub fn inspect(t: &Target, bin: &Path, scratch: &Path) -> Result<SizeInfo, String> {
    let bytes = std::fs::read(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", bin.display()))?;
    let section = |names: &[&str]| -> u64 {
        file.sections()
            .filter(|s| s.name().is_ok_and(|n| names.contains(&n)))
            .map(|s| s.size())
            .sum()
    };
    let text_bytes = section(&[".text", "__text"]);
    let rodata_bytes = section(&[".rodata", "__const", "__cstring"]);
    let interpreter = file
        .section_by_name(".interp")
        .and_then(|s| s.data().ok())
        .map(|d| {
            String::from_utf8_lossy(d)
                .trim_end_matches('\0')
                .to_string()
        });
    let needed = needed_libraries(&file);
    let mut kernels = BTreeSet::new();
    for sym in file.symbols() {
        if let Ok(name) = sym.name() {
            if let Some(k) = kernel_name(name) {
                kernels.insert(k);
            }
        }
    }
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let stripped = scratch.join(format!("{}.{}.stripped", t.triple, std::process::id()));
    let strip = llvm_tool("llvm-strip")?;
    let o = std::process::Command::new(&strip)
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(bin)
        .output()
        .map_err(|e| format!("{}: {e}", strip.display()))?;
    if !o.status.success() {
        return Err(format!(
            "llvm-strip {}: {}",
            bin.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let stripped_bytes = std::fs::metadata(&stripped)
        .map_err(|e| e.to_string())?
        .len();
    let _ = std::fs::remove_file(&stripped);
    let is_static =
        interpreter.is_none() && needed.is_empty() && file.format() == object::BinaryFormat::Elf;
    Ok(SizeInfo {
        triple: t.triple.clone(),
        file_bytes: bytes.len() as u64,
        stripped_bytes,
        text_bytes,
        rodata_bytes,
        is_static,
        interpreter,
        needed,
        kernels: kernels.into_iter().collect(),
    })
}

/// `DT_NEEDED` entries of an ELF file (Mach-O: the dylibs it imports from).
fn needed_libraries(file: &object::File) -> Vec<String> {
    let mut out = BTreeSet::new();
    if let Ok(imports) = file.imports() {
        for i in imports {
            if !i.library().is_empty() {
                out.insert(String::from_utf8_lossy(i.library()).into_owned());
            }
        }
    }
    if let (Some(dynamic), Some(dynstr)) = (
        file.section_by_name(".dynamic"),
        file.section_by_name(".dynstr"),
    ) {
        let (Ok(d), Ok(strs)) = (dynamic.data(), dynstr.data()) else {
            return out.into_iter().collect();
        };
        let wide = file.is_64();
        let le = file.is_little_endian();
        let word = |b: &[u8]| -> u64 {
            match (wide, le) {
                (true, true) => u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                (true, false) => u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8])),
                (false, true) => u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4])) as u64,
                (false, false) => u32::from_be_bytes(b[..4].try_into().unwrap_or([0; 4])) as u64,
            }
        };
        let w = if wide { 8 } else { 4 };
        for entry in d.chunks_exact(2 * w) {
            const DT_NEEDED: u64 = 1;
            if word(&entry[..w]) == DT_NEEDED {
                let off = word(&entry[w..]) as usize;
                if let Some(rest) = strs.get(off..) {
                    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                    out.insert(String::from_utf8_lossy(&rest[..end]).into_owned());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// `avx2` from a (possibly mangled) symbol whose identifier is `bitmatmul_avx2`. Mangled
/// Rust names prefix each identifier with its length; the digits before it may run into
/// the previous identifier (`7aarch6414bitmatmul_neon`), so the right prefix is the one
/// whose identifier ends where the next length or the end marker starts. A name that
/// merely contains `bitmatmul_` (`check_bitmatmul_args`) is not a kernel.
pub fn kernel_name(sym: &str) -> Option<String> {
    const PREFIX: &str = "bitmatmul_";
    let at = sym.find(PREFIX)?;
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let digits = sym[..at].len()
        - sym[..at]
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let ident = if digits == 0 {
        // Unmangled (`#[no_mangle]`, or Mach-O's leading underscore).
        if !(at == 0 || sym[..at] == *"_") {
            return None;
        }
        let rest = &sym[at..];
        &rest[..rest.find(|c: char| !ident_char(c)).unwrap_or(rest.len())]
    } else {
        (1..=digits).find_map(|n| {
            let len: usize = sym[at - n..at].parse().ok()?;
            let ident = sym.get(at..at + len)?;
            let next = sym[at + len..].chars().next();
            let ends = next.is_none_or(|c| c.is_ascii_digit() || c == 'E' || c == '.');
            (len > PREFIX.len() && ends && ident.chars().all(ident_char)).then_some(ident)
        })?
    };
    ident.strip_prefix(PREFIX).map(str::to_string)
}

/// Budget, linkage and kernel checks against `targets.toml`; each failure is one message.
pub fn check(t: &Target, s: &SizeInfo) -> Vec<Failure> {
    let mut errors = Vec::new();
    if s.stripped_bytes > t.size_budget {
        errors.push(Failure::new(
            FailureKind::Size,
            format!(
            "{}: stripped binary is {} bytes, {} over its budget of {} (targets.toml size_budget)",
            t.triple,
            s.stripped_bytes,
            s.stripped_bytes - t.size_budget,
            t.size_budget
        ),
        ));
    }
    if t.is_static && !s.is_static {
        errors.push(Failure::new(
            FailureKind::Linkage,
            format!(
                "{}: must be static but has interpreter {:?} and needs {:?}",
                t.triple, s.interpreter, s.needed
            ),
        ));
    }
    for k in &t.kernels {
        if !s.kernels.contains(k) {
            errors.push(Failure::new(FailureKind::Symbol, format!(
                "{}: expected kernel entry point bitmatmul_{k} is missing (found: {}); a cfg guard may have compiled it out",
                t.triple,
                s.kernels.join(", ")
            )));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::kernel_name;

    #[test]
    fn kernel_names_from_mangled_symbols() {
        assert_eq!(
            kernel_name("_ZN6bitnet7kernels6x86_6414bitmatmul_avx217h0123456789abcdefE").as_deref(),
            Some("avx2")
        );
        assert_eq!(
            kernel_name("_ZN6bitnet7kernels6scalar16bitmatmul_scalar17h1E").as_deref(),
            Some("scalar")
        );
        assert_eq!(kernel_name("bitmatmul_rvv").as_deref(), Some("rvv"));
        assert_eq!(kernel_name("memcpy"), None);
        assert_eq!(
            kernel_name("_ZN6bitnet7kernels7aarch6414bitmatmul_neon17h8c985bb913be8f9aE")
                .as_deref(),
            Some("neon")
        );
        assert_eq!(
            kernel_name("_ZN6bitnet7kernels20check_bitmatmul_args17h6ba90653dcfa1543E"),
            None
        );
        assert_eq!(
            kernel_name("_bitmatmul_dotprod").as_deref(),
            Some("dotprod")
        );
    }
}
