//! `bitnet-infer convert`: a Hugging Face `BitNetForCausalLM` checkpoint (packed uint8
//! weights as `microsoft/bitnet-b1.58-2B-4T`, or bf16/f16/f32 master weights as its `-bf16`
//! sibling and `tools/train`) to a `bitnet-b1.58` GGUF, or a 1.58-bit `LlamaForCausalLM`
//! (packed, as Falcon3-*-1.58bit) to a `llama` GGUF: q/k rows in llama.cpp's order, and
//! with `--fold-scale` its scales too (see `Plan::scale_tensors`).
//!
//! The header is written first (every tensor's size follows from the config), then each
//! tensor is converted and written in turn, so memory holds one tensor, not the model.
//! Output goes to `OUT.tmp`, renamed at the end and removed on any error.

mod hf_config;
mod hf_tokenizer;
mod hf_weights;
mod ternarize;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bitnet::gguf::{GgufStream, GgufWriter, Value};
use bitnet::model::tensors::{self, BlockDims, TensorSpec, TernarySpec};
use bitnet::model::Arch;
use bitnet::quants::{self, tq1_0, tq2_0, GgmlType};
use safetensors::Dtype;
use serde_json::Value as Json;

use crate::args::ConvertArgs;
use hf_config::HfConfig;
use hf_weights::{Checkpoint, Tensor};

pub fn main(a: &ConvertArgs) -> Result<(), String> {
    let head_type = match a.head.as_str() {
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        "f32" => GgmlType::F32,
        other => return Err(format!("--head {other}: expected f16, q8_0 or f32")),
    };
    let tmp = tmp_path(&a.output);
    let started = std::time::Instant::now();
    let result = convert(&a.dir, &tmp, a.r#type.as_deref(), head_type, a.fold_scale);
    match result {
        Ok(()) => std::fs::rename(&tmp, &a.output).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", a.output.display())
        })?,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    // Time and peak memory: the figures that show conversion streams tensor by tensor.
    let size = std::fs::metadata(&a.output).map_or(0, |m| m.len());
    let rss = crate::stats::peak_rss_bytes()
        .map_or_else(String::new, |b| format!(", peak RSS {} MiB", b >> 20));
    eprintln!(
        "wrote {} ({:.1} MB) in {:.1} s{rss}",
        a.output.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `OUT.tmp` next to `OUT`, so the final rename cannot cross file systems.
fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

pub(crate) fn read_json(path: &Path) -> Result<Json, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

/// `--type`, or the architecture's default: I2_S for BitNet (bitnet.cpp's format), TQ2_0 for
/// llama (type id 36 is not I2_S under llama in llama.cpp, so a llama I2_S file is invalid).
fn weight_type(arg: Option<&str>, arch: Arch) -> Result<GgmlType, String> {
    let default = match arch {
        Arch::Llama => "tq2_0",
        _ => "i2_s",
    };
    match (arg.unwrap_or(default), arch) {
        ("i2_s", Arch::Llama) => Err(
            "--type i2_s: a LlamaForCausalLM converts to architecture 'llama', where GGUF type \
             36 is not I2_S (I2_S exists only under the bitnet architectures); use --type \
             tq2_0 (the default) or tq1_0"
                .into(),
        ),
        ("i2_s", _) => Ok(GgmlType::I2_S),
        ("tq2_0", _) => Ok(GgmlType::TQ2_0),
        ("tq1_0", _) => Ok(GgmlType::TQ1_0),
        (other, _) => Err(format!("--type {other}: expected i2_s, tq2_0 or tq1_0")),
    }
}

fn convert(
    dir: &Path,
    tmp: &Path,
    type_arg: Option<&str>,
    head_type: GgmlType,
    fold_scale: bool,
) -> Result<(), String> {
    let config = hf_config::read(dir)?;
    let weight_type = weight_type(type_arg, config.arch)?;
    if fold_scale && weight_type == GgmlType::I2_S {
        return Err(
            "--fold-scale: I2_S has one exact f32 scale per tensor already; the flag is for \
             --type tq2_0 or tq1_0"
                .into(),
        );
    }
    // The tokenizer gets one entry per id up to config.json's vocab_size (up to 2^24:
    // ~1 GB from a 100-byte file), so the embedding must have that many rows first: then
    // the checkpoint's own size justifies the allocation.
    let ckpt = Checkpoint::open(dir)?;
    ckpt.tensor(EMBED)?
        .expect_shape(&[config.vocab_size, config.hidden_size])?;
    let tokenizer = hf_tokenizer::read(dir, &config)?;
    let plan = Plan {
        config,
        weight_type,
        head_type,
        fold_scale,
        ckpt,
    };
    let mut w = GgufWriter::new();
    plan.metadata(&mut w, dir, tokenizer)?;
    let names = plan.declare(&mut w)?;
    let file = File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut out = w.stream(BufWriter::new(file)).map_err(io)?;
    for name in names {
        plan.write(&mut out, &name)
            .map_err(|e| e.unwrap_or_else(io))?;
    }
    let file = out.finish().map_err(io)?;
    file.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)
}

struct Plan {
    config: HfConfig,
    weight_type: GgmlType,
    head_type: GgmlType,
    /// TQ types: beta folded into each block's f16 `d` instead of a `.scale` tensor.
    fold_scale: bool,
    ckpt: Checkpoint,
}

/// A failure converting (the message) or writing (the I/O error, named by the caller).
type WriteResult = Result<(), Result<String, std::io::Error>>;

fn msg(e: String) -> Result<String, std::io::Error> {
    Ok(e)
}

/// The checkpoint's name of block tensor `name` (a `tensors::layer_tensors` name) of layer
/// `l`.
fn hf_name(l: usize, name: &str) -> String {
    let hf = match name {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_sub_norm" => "self_attn.attn_sub_norm",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_sub_norm" => "mlp.ffn_sub_norm",
        "ffn_down" => "mlp.down_proj",
        other => unreachable!("block tensor '{other}' has no checkpoint name"),
    };
    format!("model.layers.{l}.{hf}.weight")
}

const EMBED: &str = "model.embed_tokens.weight";
const NORM: &str = "model.norm.weight";
const LM_HEAD: &str = "lm_head.weight";

impl Plan {
    fn dims(&self) -> BlockDims {
        let c = &self.config;
        BlockDims {
            dim: c.hidden_size,
            q_dim: c.num_attention_heads * c.head_dim,
            kv_dim: c.num_key_value_heads * c.head_dim,
            n_ff: c.intermediate_size,
        }
    }

    /// The TQ types get beta as an F32 `.scale` tensor rather than folded into each
    /// block's f16 `d`, which rounds it to 11 bits: on the llama proof against transformers
    /// (fixtures/hf-random/llama-packed) that rounding flips int8 activation codes and moves
    /// the logits by ~7e-2, against ~4e-6 with the exact scale. `--fold-scale` folds it as
    /// llama.cpp's converter does, for files meant for llama.cpp.
    fn scale_tensors(&self) -> bool {
        self.weight_type != GgmlType::I2_S && !self.fold_scale
    }

    fn layer_tensors(&self) -> &'static [TensorSpec] {
        tensors::layer_tensors(self.config.arch)
    }

    fn metadata(
        &self,
        w: &mut GgufWriter,
        dir: &Path,
        tokenizer: Vec<(&'static str, Value)>,
    ) -> Result<(), String> {
        let c = &self.config;
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "converted".into());
        let file_type = match self.weight_type {
            GgmlType::I2_S => 40,
            GgmlType::TQ1_0 => 36,
            _ => 37,
        };
        let arch = c.arch.name();
        let key = |k: &str| format!("{arch}.{k}");
        let u32v = |v: usize| Value::U32(v as u32);
        let mut entries: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::from(arch)),
            ("general.name".into(), Value::String(name)),
            ("general.file_type".into(), Value::U32(file_type)),
            (key("vocab_size"), u32v(c.vocab_size)),
            (key("context_length"), u32v(c.max_position_embeddings)),
            (key("embedding_length"), u32v(c.hidden_size)),
            (key("feed_forward_length"), u32v(c.intermediate_size)),
            (key("block_count"), u32v(c.num_hidden_layers)),
            (key("attention.head_count"), u32v(c.num_attention_heads)),
            (key("attention.head_count_kv"), u32v(c.num_key_value_heads)),
            (
                key("attention.layer_norm_rms_epsilon"),
                Value::F32(c.rms_norm_eps),
            ),
            (key("rope.freq_base"), Value::F32(c.rope_theta)),
            (key("rope.dimension_count"), u32v(c.head_dim)),
        ];
        if c.head_dim * c.num_attention_heads != c.hidden_size {
            entries.push((key("attention.key_length"), u32v(c.head_dim)));
        }
        // Only a departure from the architecture's default activation needs saying.
        if c.hidden_act != c.arch.default_activation().name() {
            entries.push((key("hidden_act"), Value::String(c.hidden_act.clone())));
        }
        entries.extend(tokenizer.into_iter().map(|(k, v)| (k.to_string(), v)));
        for (k, v) in entries {
            w.add_metadata(k.clone(), v)
                .map_err(|e| format!("{k}: {e}"))?;
        }
        Ok(())
    }

    /// Declares every output tensor, in the engine's file order; returns their names.
    fn declare(&self, w: &mut GgufWriter) -> Result<Vec<String>, String> {
        let c = &self.config;
        let d = self.dims();
        let mut names = Vec::new();
        let mut add = |name: String, dims: &[usize], ty: GgmlType| -> Result<(), String> {
            let dims: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
            w.declare_tensor(name.clone(), &dims, ty)
                .map_err(|e| format!("{name}: {e} (check config.json's sizes against --type)"))?;
            names.push(name);
            Ok(())
        };
        add(
            tensors::TOKEN_EMBD.into(),
            &[c.hidden_size, c.vocab_size],
            self.head_type,
        )?;
        for l in 0..c.num_hidden_layers {
            for &t in self.layer_tensors() {
                match t {
                    TensorSpec::Norm(n) => add(
                        tensors::weight_name(l, n.name),
                        &[d.get(n.len)],
                        GgmlType::F32,
                    )?,
                    TensorSpec::Ternary(t) => {
                        add(
                            tensors::weight_name(l, t.name),
                            &[d.get(t.cols), d.get(t.rows)],
                            self.weight_type,
                        )?;
                        if self.scale_tensors() {
                            add(tensors::scale_name(l, t.name), &[1], GgmlType::F32)?;
                        }
                    }
                }
            }
        }
        add(tensors::OUTPUT_NORM.into(), &[c.hidden_size], GgmlType::F32)?;
        if !c.tie_word_embeddings {
            add(
                tensors::OUTPUT.into(),
                &[c.hidden_size, c.vocab_size],
                self.head_type,
            )?;
        }
        Ok(names)
    }

    /// Converts and writes output tensor `name`. A `.scale` tensor is written together
    /// with its weight, so it is skipped here.
    fn write<W: Write>(&self, out: &mut GgufStream<'_, W>, name: &str) -> WriteResult {
        let c = &self.config;
        let d = self.dims();
        if name == tensors::TOKEN_EMBD || name == tensors::OUTPUT {
            let src = if name == tensors::TOKEN_EMBD {
                EMBED
            } else {
                LM_HEAD
            };
            let data = self.dense(src, c.vocab_size, c.hidden_size).map_err(msg)?;
            return out.write_tensor(name, &data).map_err(Err);
        }
        if name == tensors::OUTPUT_NORM {
            let data = self.norm(NORM, c.hidden_size).map_err(msg)?;
            return out.write_tensor(name, &data).map_err(Err);
        }
        if name.ends_with(".scale") {
            return Ok(());
        }
        let (l, short) = parse_block_name(name);
        for &t in self.layer_tensors() {
            match t {
                TensorSpec::Norm(n) if n.name == short => {
                    let data = self.norm(&hf_name(l, n.name), d.get(n.len)).map_err(msg)?;
                    return out.write_tensor(name, &data).map_err(Err);
                }
                TensorSpec::Ternary(t) if t.name == short => {
                    let (data, beta) = self.ternary(l, &t, &d).map_err(msg)?;
                    out.write_tensor(name, &data).map_err(Err)?;
                    if self.scale_tensors() {
                        let scale = tensors::scale_name(l, t.name);
                        out.write_tensor(&scale, &beta.to_le_bytes()).map_err(Err)?;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        unreachable!("tensor '{name}' was declared but has no source")
    }

    fn norm(&self, src: &str, len: usize) -> Result<Vec<u8>, String> {
        let t = self.float_tensor(src)?;
        t.expect_shape(&[len])?;
        Ok(t.to_f32()?.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// A float tensor, or an error naming its dtype.
    fn float_tensor(&self, src: &str) -> Result<Tensor<'_>, String> {
        let t = self.ckpt.tensor(src)?;
        if !t.is_float() {
            return Err(t.error(format_args!(
                "dtype {:?}, expected BF16, F16 or F32",
                t.dtype
            )));
        }
        Ok(t)
    }

    /// The embedding (or untied head), encoded a row at a time so no f32 copy of the
    /// whole matrix is made.
    fn dense(&self, src: &str, rows: usize, cols: usize) -> Result<Vec<u8>, String> {
        let t = self.float_tensor(src)?;
        t.expect_shape(&[rows, cols])?;
        let ty = self.head_type;
        let row_bytes = ty
            .tensor_bytes(cols as u64)
            .filter(|_| (cols as u64).is_multiple_of(ty.block_elems()))
            .ok_or_else(|| t.error(format_args!("{cols} columns cannot be stored as {ty}")))?
            as usize;
        let mut out = vec![0u8; rows * row_bytes];
        let mut row = vec![0.0f32; cols];
        for (r, dst) in out.chunks_exact_mut(row_bytes).enumerate() {
            t.rows_to_f32(r * cols, &mut row)?;
            match ty {
                GgmlType::F16 => quants::quantize_row_f16_ref(&row, dst),
                GgmlType::Q8_0 => quants::quantize_row_q8_0_ref(&row, dst),
                _ => quants::quantize_row_f32_ref(&row, dst),
            }
            .map_err(|e| t.error(e))?;
        }
        Ok(out)
    }

    /// Projection `spec` of layer `l`, encoded as the output type, and its beta.
    fn ternary(
        &self,
        l: usize,
        spec: &TernarySpec,
        d: &BlockDims,
    ) -> Result<(Vec<u8>, f32), String> {
        let (rows, cols) = (d.get(spec.rows), d.get(spec.cols));
        let src = hf_name(l, spec.name);
        let t = self.ckpt.tensor(&src)?;
        let (trits, beta) = match t.dtype {
            Dtype::U8 => {
                t.expect_shape(&[rows.div_ceil(4), cols])?;
                let trits = ternarize::unpack(t.data, rows, cols).map_err(|(r, c)| {
                    t.error(format_args!("code 3 (not a trit) for row {r}, column {c}"))
                })?;
                let scale_name = format!("{}_scale", src);
                let s = self.float_tensor(&scale_name)?;
                if s.shape.iter().product::<usize>() != 1 {
                    return Err(s.error(format_args!("shape {:?}, expected [1]", s.shape)));
                }
                let ws = s.to_f32()?[0];
                let beta = ternarize::beta_from_weight_scale(ws)
                    .ok_or_else(|| s.error(format_args!("{ws} is not a positive finite scale")))?;
                (trits, beta)
            }
            _ if t.is_float() && self.config.arch != Arch::Llama => {
                t.expect_shape(&[rows, cols])?;
                ternarize::from_master(&t.to_f32()?)
            }
            other if self.config.arch == Arch::Llama => {
                return Err(t.error(format_args!(
                    "dtype {other:?}, expected U8 (packed trits, as quantization_config \
                     quant_method \"bitnet\" stores them)"
                )))
            }
            other => {
                return Err(t.error(format_args!(
                    "dtype {other:?}, expected U8 (packed) or BF16, F16, F32 (master weights)"
                )))
            }
        };
        // llama.cpp's NORM RoPE rotates adjacent pairs; the checkpoint's q/k rows are in
        // transformers' rotate-half order: permute them as llama.cpp's converter does.
        let trits = match (self.config.arch, spec.name) {
            (Arch::Llama, "attn_q") => {
                ternarize::permute_for_norm_rope(&trits, self.config.num_attention_heads, cols)
            }
            (Arch::Llama, "attn_k") => {
                ternarize::permute_for_norm_rope(&trits, self.config.num_key_value_heads, cols)
            }
            _ => trits,
        };
        let ty = self.weight_type;
        let n = rows * cols;
        let bytes = ty
            .tensor_bytes(n as u64)
            .ok_or_else(|| t.error(format_args!("{n} elements cannot be stored as {ty}")))?;
        let mut out = vec![0u8; bytes as usize];
        let block_d = |block: usize| {
            if self.scale_tensors() {
                vec![1.0; n / block]
            } else {
                ternarize::folded_block_scales(&trits, block, beta)
            }
        };
        match ty {
            GgmlType::I2_S => quants::pack_i2_s(&trits, beta, &mut out),
            GgmlType::TQ2_0 => {
                quants::pack_row_tq2_0(&trits, &block_d(tq2_0::BLOCK_ELEMS), &mut out)
            }
            _ => quants::pack_row_tq1_0(&trits, &block_d(tq1_0::BLOCK_ELEMS), &mut out),
        }
        .map_err(|e| t.error(format_args!("as {ty}: {e}")))?;
        Ok((out, beta))
    }
}

/// `blk.N.name.weight` -> (N, name).
fn parse_block_name(name: &str) -> (usize, &str) {
    let rest = name.strip_prefix("blk.").unwrap_or(name);
    let (l, rest) = rest.split_once('.').unwrap_or(("0", rest));
    let short = rest.strip_suffix(".weight").unwrap_or(rest);
    (l.parse().unwrap_or(0), short)
}
