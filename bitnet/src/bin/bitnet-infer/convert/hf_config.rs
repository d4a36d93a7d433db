//! `config.json` of a Hugging Face `BitNetForCausalLM` checkpoint, or of a 1.58-bit
//! `LlamaForCausalLM` one (`quantization_config.quant_method = "bitnet"`: Falcon3-*-1.58bit,
//! Llama3-8B-1.58-100B-tokens).

use std::path::Path;

use serde_json::Value as Json;

use super::read_json;
use bitnet::model::Arch;

/// The hyper-parameters the GGUF needs; names follow transformers' `BitNetConfig` /
/// `LlamaConfig`.
#[derive(Clone, Debug)]
pub struct HfConfig {
    /// `BitnetB158` for `BitNetForCausalLM`, `Llama` for a ternary `LlamaForCausalLM`.
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    /// `relu2` (2B4T) or `silu`.
    pub hidden_act: String,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

pub fn read(dir: &Path) -> Result<HfConfig, String> {
    let path = dir.join("config.json");
    let j = read_json(&path)?;
    let p = path.display();
    let archs: Vec<&str> = j
        .get("architectures")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let arch = if archs.contains(&"BitNetForCausalLM") {
        Arch::BitnetB158
    } else if archs.contains(&"LlamaForCausalLM") {
        check_llama_quantization(&j, &p.to_string())?;
        Arch::Llama
    } else {
        return Err(format!(
            "{p}: field 'architectures' is {archs:?}; expected BitNetForCausalLM or a 1.58-bit LlamaForCausalLM"
        ));
    };
    let field = |k: &str| j.get(k).filter(|v| !v.is_null());
    // Llama's biases would need tensors the engine's blocks do not have.
    for k in ["attention_bias", "mlp_bias"] {
        if let Some(v) = field(k) {
            if v.as_bool() != Some(false) {
                return Err(format!(
                    "{p}: field '{k}' is {v}; only bias-free projections are supported"
                ));
            }
        }
    }
    let usize_of = |k: &str, v: &Json| -> Result<usize, String> {
        v.as_u64()
            .filter(|&n| n > 0 && n <= 1 << 24)
            .map(|n| n as usize)
            .ok_or_else(|| format!("{p}: field '{k}' is {v}; expected a positive integer"))
    };
    let dim = |k: &str| -> Result<usize, String> {
        let v = field(k).ok_or_else(|| format!("{p}: field '{k}' is missing"))?;
        usize_of(k, v)
    };
    let f32_of = |k: &str, v: &Json| -> Result<f32, String> {
        v.as_f64()
            .map(|x| x as f32)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("{p}: field '{k}' is {v}; expected a positive number"))
    };
    let hidden_size = dim("hidden_size")?;
    let num_attention_heads = dim("num_attention_heads")?;
    let num_key_value_heads = match field("num_key_value_heads") {
        Some(v) => usize_of("num_key_value_heads", v)?,
        None => num_attention_heads,
    };
    let head_dim = match field("head_dim") {
        Some(v) => usize_of("head_dim", v)?,
        None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
        None => {
            return Err(format!(
                "{p}: field 'hidden_size' {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            ))
        }
    };
    // transformers 5 moved rope_theta into rope_parameters; older configs have it on top.
    let rope_theta = match (
        field("rope_theta"),
        j.pointer("/rope_parameters/rope_theta"),
    ) {
        (Some(v), _) => f32_of("rope_theta", v)?,
        (None, Some(v)) => f32_of("rope_parameters.rope_theta", v)?,
        (None, None) => arch.default_rope_theta(),
    };
    if let Some(t) = j
        .pointer("/rope_parameters/rope_type")
        .and_then(Json::as_str)
    {
        if t != "default" {
            return Err(format!(
                "{p}: field 'rope_parameters.rope_type' is '{t}'; only 'default' RoPE is supported"
            ));
        }
    }
    if let Some(v) = field("rope_scaling") {
        let ty = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("?");
        return Err(format!(
            "{p}: field 'rope_scaling' has type '{ty}'; only unscaled RoPE is implemented"
        ));
    }
    let rms_norm_eps = match field("rms_norm_eps") {
        Some(v) => f32_of("rms_norm_eps", v)?,
        None => 1e-5,
    };
    let hidden_act = match field("hidden_act") {
        None => arch.default_activation().name().to_string(),
        Some(v) => match v.as_str() {
            Some(a @ ("relu2" | "silu")) => a.to_string(),
            _ => {
                return Err(format!(
                    "{p}: field 'hidden_act' is {v}; expected \"relu2\" or \"silu\""
                ))
            }
        },
    };
    // A list (Llama 3.1 style) names several end tokens; the first is the EOS.
    let id = |k: &str| -> Result<Option<u32>, String> {
        let v = match field(k) {
            None => return Ok(None),
            Some(Json::Array(a)) => match a.first() {
                None => return Ok(None),
                Some(v) => v,
            },
            Some(v) => v,
        };
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{p}: field '{k}' is {v}; expected a token id"))
    };
    Ok(HfConfig {
        arch,
        hidden_size,
        intermediate_size: dim("intermediate_size")?,
        num_hidden_layers: dim("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        max_position_embeddings: match field("max_position_embeddings") {
            Some(v) => usize_of("max_position_embeddings", v)?,
            None => 2048,
        },
        vocab_size: dim("vocab_size")?,
        // transformers' BitNetConfig default.
        tie_word_embeddings: match field("tie_word_embeddings") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                format!("{p}: field 'tie_word_embeddings' is {v}; expected true or false")
            })?,
        },
        hidden_act,
        bos_token_id: id("bos_token_id")?,
        eos_token_id: id("eos_token_id")?,
    })
}

/// A `LlamaForCausalLM` is converted only as transformers' offline `BitLinear` stores it:
/// packed trits plus a `weight_scale` divisor, the raw input quantized (no `use_rms_norm`).
fn check_llama_quantization(j: &Json, p: &str) -> Result<(), String> {
    let q = j
        .get("quantization_config")
        .filter(|q| !q.is_null())
        .ok_or_else(|| {
            format!(
                "{p}: field 'quantization_config' is missing; only 1.58-bit LlamaForCausalLM checkpoints (quant_method \"bitnet\") are supported"
            )
        })?;
    let s = |k: &str| q.get(k).filter(|v| !v.is_null());
    match s("quant_method").and_then(Json::as_str) {
        Some("bitnet") => {}
        _ => {
            return Err(format!(
                "{p}: field 'quantization_config.quant_method' is {}; only \"bitnet\" (1.58-bit) LlamaForCausalLM checkpoints are supported",
                s("quant_method").unwrap_or(&Json::Null)
            ))
        }
    }
    if let Some(v) = s("use_rms_norm") {
        if v.as_bool() != Some(false) {
            return Err(format!(
                "{p}: field 'quantization_config.use_rms_norm' is {v}; a llama file has no norm inside its BitLinear layers"
            ));
        }
    }
    // AutoBitLinear stores master weights (online) or multiplies by weight_scale (offline):
    // neither is the published packed layout, whose BitLinear divides by it.
    if let Some(v) = s("linear_class") {
        if v.as_str() != Some("bitlinear") {
            let mode = s("quantization_mode").unwrap_or(&Json::Null);
            return Err(format!(
                "{p}: field 'quantization_config.linear_class' is {v} (quantization_mode {mode}); only \"bitlinear\" (packed trits, weight_scale divisor) is supported for LlamaForCausalLM"
            ));
        }
    }
    if let Some(v) = s("quantization_mode") {
        if v.as_str() != Some("offline") {
            return Err(format!(
                "{p}: field 'quantization_config.quantization_mode' is {v}; only \"offline\" (packed weights) is supported for LlamaForCausalLM"
            ));
        }
    }
    Ok(())
}
