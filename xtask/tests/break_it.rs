//! The harness notices when things break: each test breaks one thing on purpose and
//! checks the failure names what broke. They build real binaries (host, and the static
//! aarch64 build), so they need `cargo xtask setup` to have run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .env("CI", "1") // plain progress lines
        .output()
        .expect("xtask runs")
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A copy of targets.toml with `edit` applied to the host entry (the first one).
fn targets_with(name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("targets.toml")).unwrap();
    let split = text.find("[[target]]").unwrap();
    let second = split + 1 + text[split + 1..].find("[[target]]").unwrap();
    let edited = format!(
        "{}{}{}",
        &text[..split],
        edit(&text[split..second]),
        &text[second..]
    );
    let path = scratch(name);
    std::fs::write(&path, edited).unwrap();
    path
}

/// A file under cargo's scratch directory (`target/tmp/break-it`): a fixed name per use,
/// overwritten by the next run, so nothing piles up (a directory per process under /tmp
/// did).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("break-it");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const HOST: &str = "x86_64-unknown-linux-gnu";

#[test]
fn wrong_logits_fail_validation_naming_target_profile_kernel_position() {
    let o = xtask(&[
        "validate",
        "--target",
        HOST,
        "--cpu",
        "native",
        "--model",
        "fixtures/tiny-b158-i2_s.gguf",
        "--inject-fault",
        "scalar",
    ]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    for needle in [
        HOST,
        "native",
        "kernel scalar",
        "logits differ from the host scalar run at position",
        "logits differ from the numpy reference at position",
    ] {
        assert!(out.contains(needle), "no '{needle}' in:\n{out}");
    }
}

/// `validate` of `triple` on `cpu` with `kernel` corrupted fails, blaming that kernel's
/// logits and not `innocent`'s.
fn corrupted_kernel_is_caught(triple: &str, cpu: &str, kernel: &str, innocent: &str) {
    let o = xtask(&[
        "validate",
        "--target",
        triple,
        "--cpu",
        cpu,
        "--model",
        "fixtures/tiny-b158-i2_s.gguf",
        "--inject-fault",
        kernel,
    ]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    for needle in [
        triple,
        cpu,
        &format!("kernel {kernel}"),
        "logits differ from the host scalar run at position",
    ] {
        assert!(out.contains(needle), "no '{needle}' in:\n{out}");
    }
    assert!(!out.contains(&format!("kernel {innocent}, kv")), "{out}");
}

#[test]
fn a_corrupted_simd_kernel_is_caught_under_qemu() {
    corrupted_kernel_is_caught(
        "aarch64-unknown-linux-musl",
        "cortex-a76",
        "dotprod",
        "neon",
    );
}

/// The same on bare metal, where the fault is compiled into the image (no environment).
#[test]
fn a_corrupted_kernel_in_a_bare_metal_image_is_caught() {
    corrupted_kernel_is_caught("riscv64gc-unknown-none-elf", "rv64-v128", "rvv", "zbb");
}

#[test]
fn a_listed_kernel_that_ran_no_exactness_test_fails_the_profile() {
    let text = std::fs::read_to_string(root().join("qemu/profiles.toml")).unwrap();
    let edited = text.replace("scalar = []\n", "scalar = []\nwarp9 = []\n");
    assert_ne!(
        edited, text,
        "the native profile's cpuinfo_kernels table moved"
    );
    let profiles = scratch("profiles.toml");
    std::fs::write(&profiles, edited).unwrap();
    let o = xtask(&[
        "--profiles",
        profiles.to_str().unwrap(),
        "validate",
        "--target",
        HOST,
        "--cpu",
        "native",
        "--model",
        "fixtures/tiny-b158-i2_s.gguf",
    ]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("kernel warp9 is listed for this profile but ran no exactness test case"),
        "{out}"
    );
}

#[test]
fn instructions_per_token_past_the_baseline_fail_the_count_gate() {
    let triple = "aarch64-unknown-linux-musl";
    let key = format!("tiny-bitnet-tq2_0 {triple} cortex-a76 dotprod");
    let run = |baseline: &Path, mode: &str| {
        xtask(&[
            "counters",
            "--target",
            triple,
            "--cpu",
            "cortex-a76",
            "--model",
            "fixtures/tiny-bitnet-tq2_0.gguf",
            mode,
            "--baseline",
            baseline.to_str().unwrap(),
        ])
    };
    // What the code counts now (the committed baseline may be higher: the gate holds
    // kernels to no more than it, and a change that saves instructions keeps it passing).
    let tmp = |what: &str| scratch(&format!("counters-{what}.json"));
    let measured = tmp("measured");
    let o = run(&measured, "--save-baseline");
    assert!(o.status.success(), "{}", all_output(&o));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&measured).unwrap()).unwrap();
    let decode = saved["entries"][&key]["decode"]
        .as_f64()
        .expect("a counted entry");
    // The kernel now "executes" 5% more than the baseline allows for.
    let mut b = saved.clone();
    b["entries"][&key]["decode"] = serde_json::json!(decode / 1.05);
    let path = tmp("inflated");
    std::fs::write(&path, b.to_string()).unwrap();
    let o = run(&path, "--check");
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains(&format!("{key}: decode")), "{out}");
    assert!(out.contains("+5.0% over the baseline"), "{out}");
    assert!(out.contains("1 of 3 counts fail"), "{out}");
    // The committed baseline passes the same counts.
    let o = run(&root().join("qemu/counters-baseline.json"), "--check");
    assert!(o.status.success(), "{}", all_output(&o));
}

#[test]
fn a_budget_one_byte_too_small_fails_with_the_delta() {
    let baseline = scratch("size.json");
    let o = xtask(&[
        "size-report",
        "--target",
        HOST,
        "--save",
        baseline.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", all_output(&o));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&baseline).unwrap()).unwrap();
    let size = saved[0]["stripped_bytes"].as_u64().unwrap();
    let tight = targets_with("tight.toml", |host| {
        let start = host.find("size_budget").unwrap();
        let end = start + host[start..].find('\n').unwrap();
        format!(
            "{}size_budget = {}{}",
            &host[..start],
            size - 1,
            &host[end..]
        )
    });
    let o = xtask(&[
        "--targets",
        tight.to_str().unwrap(),
        "size-report",
        "--target",
        HOST,
    ]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("1 over its budget"), "{out}");
    // And the comparison against the saved baseline shows no change.
    let o = xtask(&[
        "size-report",
        "--target",
        HOST,
        "--compare",
        baseline.to_str().unwrap(),
    ]);
    assert!(all_output(&o).contains("+0 bytes"), "{}", all_output(&o));
}

#[test]
fn a_missing_kernel_symbol_is_named() {
    let toml = targets_with("kernels.toml", |host| {
        host.replace("kernels = [", "kernels = [\"warp9\", ")
    });
    let o = xtask(&[
        "--targets",
        toml.to_str().unwrap(),
        "size-report",
        "--target",
        HOST,
    ]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("bitmatmul_warp9 is missing"), "{out}");
}

#[test]
fn an_unknown_key_in_targets_toml_is_an_error_with_its_line() {
    let toml = targets_with("typo.toml", |host| {
        host.replace("run = ", "colour = \"red\"\nrun = ")
    });
    let o = xtask(&["--targets", toml.to_str().unwrap(), "doctor"]);
    let out = all_output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("colour") && out.contains("line "), "{out}");
}

#[test]
fn an_unknown_target_name_is_an_error() {
    let o = xtask(&["doctor", "--target", "sparc64"]);
    let out = all_output(&o);
    assert!(!o.status.success());
    assert!(out.contains("unknown target 'sparc64'"), "{out}");
}

#[test]
fn the_dotprod_build_refuses_to_start_on_cortex_a53() {
    let triple = "aarch64-unknown-linux-musl";
    let o = xtask(&[
        "validate",
        "--target",
        triple,
        "--cpu",
        "cortex-a53",
        "--model",
        "fixtures/tiny-b158-i2_s.gguf",
    ]);
    assert!(o.status.success(), "{}", all_output(&o));
    // The refusal itself, as a user on a Pi 3 would see it.
    let bin = root()
        .join("target")
        .join(triple)
        .join("harness/bitnet-infer");
    let run = Command::new("qemu-aarch64")
        .args(["-cpu", "cortex-a53"])
        .arg(&bin)
        .args(["info", "--model", "fixtures/tiny-b158-i2_s.gguf"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("dotprod"), "{stderr}");
}
