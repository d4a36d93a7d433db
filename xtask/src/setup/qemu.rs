//! QEMU's version: 8.1 added `riscv_hwprobe`, without which the engine cannot see Zbb.

use std::fmt;

use super::{stdout, Check};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// `8.1` from `8.1`, `10.0.2`, or a Debian version such as `1:10.0.2+ds-2~bpo12+1`.
pub fn parse_version(s: &str) -> Option<Version> {
    let s = s.split_once(':').map_or(s, |(_, v)| v);
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(Version(major, minor))
}

/// The version `qemu-x --version` prints, if it runs.
pub fn version(program: &str) -> Option<Version> {
    let out = stdout(program, &["--version"]);
    let line = out.lines().next()?;
    let v = line.split("version").nth(1)?.split_whitespace().next()?;
    parse_version(v)
}

pub fn check(program: &str, min: &str) -> Check {
    let min_v = parse_version(min).unwrap_or(Version(8, 1));
    match version(program) {
        None => Check {
            what: format!(
                "emulator {program} ({} >= {min})",
                super::apt::qemu_package(program)
            ),
            ok: false,
            fix: format!(
                "cargo xtask setup (installs {})",
                super::apt::qemu_package(program)
            ),
        },
        Some(v) => Check {
            what: format!("emulator {program} {v} (>= {min})"),
            ok: v >= min_v,
            fix: format!(
                "QEMU {v} is older than {min} (no riscv_hwprobe: Zbb stays invisible); run `cargo xtask setup`, which installs qemu-user from bookworm-backports on Debian 12"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_every_spelling() {
        assert_eq!(parse_version("8.1"), Some(Version(8, 1)));
        assert_eq!(parse_version("10.0.2"), Some(Version(10, 0)));
        assert_eq!(
            parse_version("1:10.0.2+ds-2+deb13u1~bpo12+1"),
            Some(Version(10, 0))
        );
        assert_eq!(
            parse_version("1:7.2+dfsg-7+deb12u18+b3"),
            Some(Version(7, 2))
        );
        assert!(Version(7, 2) < Version(8, 1) && Version(10, 0) > Version(8, 1));
        assert_eq!(parse_version("x"), None);
    }
}
