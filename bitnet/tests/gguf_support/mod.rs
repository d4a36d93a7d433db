//! What the file-format and CLI tests share: the binary under test, the fixtures, a GGUF
//! assembled field by field (to write what no valid writer would), and a fixture model
//! rewritten with some metadata or tensors changed.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use bitnet::gguf::{Gguf, GgufWriter, TensorInfo, Value};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// The binary under test: `BITNET_INFER_BIN` when set (e.g. the release build, whose
/// `panic = "abort"` must still turn bad files into exit code 1), else cargo's test build.
pub fn bin() -> PathBuf {
    match std::env::var_os("BITNET_INFER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_bitnet-infer")),
    }
}

pub fn infer(args: &[&str]) -> Output {
    let bin = bin();
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}

/// A GGUF file assembled field by field.
#[derive(Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn header(version: u32, tensor_count: u64, kv_count: u64) -> Raw {
        Raw(b"GGUF".to_vec())
            .u32(version)
            .u64(tensor_count)
            .u64(kv_count)
    }

    pub fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn str(self, s: &str) -> Raw {
        let mut r = self.u64(s.len() as u64);
        r.0.extend_from_slice(s.as_bytes());
        r
    }

    pub fn kv_str(self, key: &str, value: &str) -> Raw {
        self.str(key).u32(8).str(value)
    }

    pub fn kv_u32(self, key: &str, value: u32) -> Raw {
        self.str(key).u32(4).u32(value)
    }

    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }

    /// Zero padding to 32 then `n` data bytes.
    pub fn data(mut self, n: usize) -> Raw {
        let len = self.0.len().next_multiple_of(32);
        self.0.resize(len + n, 0);
        self
    }
}

/// One tensor of `dims` and type id `ty` under `arch`, with 256 data bytes.
pub fn one_tensor(arch: &str, name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    Raw::header(3, 1, 1)
        .kv_str("general.architecture", arch)
        .tensor(name, dims, ty, offset)
        .data(256)
        .0
}

/// The fixture `name` written again with its metadata passed through `meta` (None drops
/// a key) and only the tensors `keep` accepts.
pub fn rewrite_fixture(
    name: &str,
    meta: impl Fn(&str, Value) -> Option<Value>,
    keep: impl Fn(&TensorInfo) -> bool,
) -> Vec<u8> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter() {
        if let Some(v) = meta(k, v.clone()) {
            w.add_metadata(k, v).unwrap();
        }
    }
    for t in g.tensors.iter().filter(|t| keep(t)) {
        w.add_tensor(
            t.name.clone(),
            &t.dims,
            t.ty,
            g.tensor_data(&bytes, t).to_vec(),
        )
        .unwrap();
    }
    w.finish().unwrap()
}

/// Token ids from a JSON array (the reference scripts' `expected.json`).
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Ids as `--prompt-tokens` takes them.
pub fn csv(ids: &[u32]) -> String {
    ids.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// (shape, logits) of `model` over `prompt` then `n` greedy tokens with `kernel` and an f32
/// KV cache (the references compute in f32), through `--logits-out` at the scratch path `npy`.
pub fn greedy_logits(
    model: &std::path::Path,
    prompt: &[u32],
    n: usize,
    kernel: &str,
    npy: &std::path::Path,
) -> (Vec<usize>, Vec<f32>) {
    let o = infer(&[
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        &csv(prompt),
        "-n",
        &n.to_string(),
        "--temperature",
        "0",
        "--kernel",
        kernel,
        "--kv-type",
        "f32",
        "--logits-out",
        npy.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{} {kernel}: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let r = bitnet::npy::read_f32(&std::fs::read(npy).unwrap()).unwrap();
    std::fs::remove_file(npy).ok();
    r
}

/// The greedy sampler's choice: the first index of the largest logit.
pub fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
}
