//! What a matrix run found, as data: statuses and failure kinds are enums, every failure
//! carries its kind and a sentence naming target, profile, kernel and model. `table`
//! renders it; the JSON is these types serialised.

pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    BuildOnly,
}

impl Status {
    pub fn of(failures: &[Failure]) -> Status {
        if failures.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::BuildOnly => "build-only",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// A requirement is missing (`cargo xtask setup`).
    NotReady,
    Build,
    /// Over the size budget.
    Size,
    /// Dynamic where it must be static.
    Linkage,
    /// A kernel's entry point symbol is missing.
    Symbol,
    /// The engine detects other kernels than the profile expects.
    KernelsDetected,
    /// A run exited non-zero, was killed, or hung.
    Run,
    /// A run died of SIGILL.
    IllegalInstruction,
    /// Logits beyond tolerance from the host's scalar run.
    LogitsVsHost,
    /// Logits beyond tolerance from the independent reference (numpy, or transformers for a trained model).
    LogitsVsOracle,
    /// Argmax differs where the reference's top-2 margin is clear.
    Argmax,
    /// A kernel declared logits-exact whose logits differ from the host scalar run's.
    NotBitIdentical,
    /// An exactness test failed.
    KernelTest,
    /// A kernel the profile lists ran no exactness test case.
    KernelUntested,
    /// A binary built for a feature did not refuse cleanly on a CPU without it.
    Refusal,
    /// A kernel's instructions per token grew past the baseline, or could not be counted.
    Counters,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// Exactness test cases that exercised one kernel (counted by the tests themselves).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCount {
    pub ran: u64,
    pub passed: u64,
}

/// One kernel's logits runs on one profile.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KernelLogits {
    /// Runs (model x KV type x thread count) and positions compared in each.
    pub runs: usize,
    pub prefill_positions: usize,
    pub decode_positions: usize,
    /// The engine declares this kernel's logits bit-identical to the scalar kernel's.
    pub declared_exact: bool,
    /// Every run's logits equal the host scalar run's bit for bit.
    pub logits_bit_identical: bool,
    pub max_abs_vs_host: f32,
    /// Max |diff| from the independent references (numpy, transformers) (None: no reference for these models).
    pub max_abs_vs_oracle: Option<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileReport {
    pub name: String,
    pub board: String,
    pub status: Status,
    /// The start-up check on a CPU lacking a built-in feature (no logits there).
    pub refusal: bool,
    pub threads: Vec<usize>,
    /// Kernels the engine detected here, each run in turn.
    pub kernels: BTreeMap<String, KernelLogits>,
    /// Exactness test cases per kernel (absent: no test binary for this target).
    pub kernel_tests: Option<BTreeMap<String, TestCount>>,
    /// Every kernel this profile lists ran exactness tests, and all of them passed.
    pub kernel_tests_passed: Option<bool>,
    /// Every run's logits equal the host scalar run's bit for bit.
    pub logits_bit_identical: Option<bool>,
    pub max_abs_vs_host: Option<f32>,
    pub max_abs_vs_oracle: Option<f32>,
    /// Kernel -> guest instructions per [prefill, decode] token on the gate model, counted
    /// under QEMU (emulated profiles of a matrix run with the gate on).
    #[serde(default)]
    pub instructions_per_token: BTreeMap<String, [f64; 2]>,
    pub failures: Vec<Failure>,
}

impl ProfileReport {
    pub fn new(name: &str, board: &str) -> ProfileReport {
        ProfileReport {
            name: name.into(),
            board: board.into(),
            status: Status::Fail,
            refusal: false,
            threads: Vec::new(),
            kernels: BTreeMap::new(),
            kernel_tests: None,
            kernel_tests_passed: None,
            logits_bit_identical: None,
            max_abs_vs_host: None,
            max_abs_vs_oracle: None,
            instructions_per_token: BTreeMap::new(),
            failures: Vec::new(),
        }
    }
}

/// Kernels the target carries that no profile here could prove, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unproven {
    pub kernels: Vec<String>,
    pub why: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetReport {
    pub triple: String,
    pub stands_for: String,
    pub status: Status,
    pub size_bytes: Option<u64>,
    pub budget_bytes: u64,
    pub is_static: Option<bool>,
    /// Kernel entry points found in the binary.
    pub symbols: Vec<String>,
    pub profiles: Vec<ProfileReport>,
    pub unproven: Vec<Unproven>,
    pub failures: Vec<Failure>,
    pub seconds: f64,
}

impl TargetReport {
    pub fn all_failures(&self) -> impl Iterator<Item = &Failure> {
        self.failures
            .iter()
            .chain(self.profiles.iter().flat_map(|p| &p.failures))
    }
}

/// The whole run, as `--json` writes it and `summary` reads it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatrixReport {
    pub ok: bool,
    pub host: String,
    pub targets: Vec<TargetReport>,
}
