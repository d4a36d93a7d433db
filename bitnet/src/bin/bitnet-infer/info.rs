//! `bitnet-infer info`: what a model file holds and what this CPU will run it with.

use bitnet::gguf::GgufFile;
use bitnet::kernels::Kernel;
use bitnet::model::{tensor_type_summary, KvType, KvTypes};

use crate::args::InfoArgs;
use crate::setup::json_str;

pub fn main(a: &InfoArgs) -> Result<(), String> {
    let file = GgufFile::open(&a.model).map_err(|e| e.to_string())?;
    let g = file.gguf();
    let path = a.model.display();
    let selected = crate::setup::kernel(&a.kernel)?;
    // Loading checks every tensor's shape and type, so `info` also validates the file.
    let model = crate::setup::load_model(&file, selected).map_err(|e| format!("{path}: {e}"))?;
    let c = &model.config;
    let tied = g.tensor("output.weight").is_none();
    let available: Vec<&str> = Kernel::available().map(Kernel::name).collect();
    // Available kernels whose logits are expected to equal the scalar kernel's bit for bit.
    let logits_exact: Vec<&str> = Kernel::available()
        .filter(|k| k.logits_exact())
        .map(Kernel::name)
        .collect();
    let types = tensor_type_summary(g);
    // KV cache bytes per token and at the model's context, for each type this model's head
    // size allows (keys and values of the same type; mixed types add half of each).
    let kv: Vec<(KvType, usize)> = KvType::ALL
        .into_iter()
        .filter(|t| c.head_dim.is_multiple_of(t.block_elems()))
        .filter_map(|t| Some((t, KvTypes::from(t).bytes_per_token(c.n_layer, c.kv_dim())?)))
        .collect();
    // What run-time detection saw (CPUID, HWCAP, `riscv_hwprobe`): the kernels' own snapshot.
    let feats: Vec<(&str, bool)> = bitnet::cpu::CpuFeatures::get().list().collect();
    let present: Vec<&str> = feats.iter().filter(|f| f.1).map(|f| f.0).collect();
    if a.json {
        let list = |v: &[&str]| {
            let items: Vec<String> = v.iter().map(|s| json_str(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let tensors: Vec<String> = types
            .iter()
            .map(|(ty, count, bytes)| {
                format!(
                    "{}: {{\"count\": {count}, \"bytes\": {bytes}}}",
                    json_str(ty.name())
                )
            })
            .collect();
        let cpu: Vec<String> = feats
            .iter()
            .map(|(n, on)| format!("{}: {on}", json_str(n)))
            .collect();
        println!("{{");
        println!("  \"file\": {},", json_str(&path.to_string()));
        println!("  \"gguf_version\": {},", g.version);
        println!("  \"architecture\": {},", json_str(&c.arch_name));
        println!("  \"ffn_activation\": {},", json_str(c.act.name()));
        println!(
            "  \"hyperparameters\": {{\"n_layer\": {}, \"dim\": {}, \"n_ff\": {}, \"n_head\": {}, \
             \"n_kv_head\": {}, \"head_dim\": {}, \"n_rot\": {}, \"rope_type\": {}, \
             \"rope_theta\": {}, \"eps\": {:e}, \"context_length\": {}, \"vocab\": {}}},",
            c.n_layer,
            c.dim,
            c.n_ff,
            c.n_head,
            c.n_kv_head,
            c.head_dim,
            c.n_rot,
            json_str(c.rope_type.name()),
            c.rope_theta,
            c.eps,
            c.ctx_len,
            c.vocab
        );
        println!(
            "  \"head\": {{\"tied\": {tied}, \"type\": {}}},",
            json_str(model.head().ty.name())
        );
        println!("  \"bytes_per_token\": {},", model.bytes_per_token());
        let kv_json: Vec<String> = kv
            .iter()
            .map(|(t, per)| {
                format!(
                    "{}: {{\"bytes_per_token\": {per}, \"bytes_at_context\": {}}}",
                    json_str(t.name()),
                    per.saturating_mul(c.ctx_len)
                )
            })
            .collect();
        println!("  \"kv_cache\": {{{}}},", kv_json.join(", "));
        println!(
            "  \"tensors\": {{\"count\": {}, \"types\": {{{}}}}},",
            g.tensors.len(),
            tensors.join(", ")
        );
        println!(
            "  \"cpu\": {{\"arch\": {}, \"features\": {{{}}}}},",
            json_str(std::env::consts::ARCH),
            cpu.join(", ")
        );
        println!(
            "  \"kernels\": {{\"available\": {}, \"selected\": {}, \"prefetch\": {}, \
             \"logits_exact\": {}, \"cpu_features\": {}}}",
            list(&available),
            json_str(selected.name()),
            json_str(bitnet::kernels::prefetch::describe()),
            list(&logits_exact),
            list(&present)
        );
        println!("}}");
        return Ok(());
    }
    println!("file          {path}");
    println!("gguf version  {}", g.version);
    println!(
        "architecture  {} (ffn activation {})",
        c.arch_name,
        c.act.name()
    );
    println!("layers        {}", c.n_layer);
    println!("hidden        {}", c.dim);
    println!("ffn           {}", c.n_ff);
    println!(
        "heads         {} query, {} kv, head size {}",
        c.n_head, c.n_kv_head, c.head_dim
    );
    println!(
        "rope          {}, {} dims, theta {}",
        c.rope_type.name(),
        c.n_rot,
        c.rope_theta
    );
    println!("rms eps       {:e}", c.eps);
    println!("context       {}", c.ctx_len);
    println!("vocab         {}", c.vocab);
    let head = if tied {
        "tied to token_embd"
    } else {
        "output.weight"
    };
    println!("head          {head} ({})", model.head().ty);
    println!(
        "bytes/token   {} (ternary weights + head read per decode step)",
        model.bytes_per_token()
    );
    println!(
        "kv cache      bytes per token (keys + values, all layers) and at the context of {}:",
        c.ctx_len
    );
    for (t, per) in &kv {
        println!(
            "  {:<6} {per:>9} bytes/token {:>14} bytes",
            t.name(),
            per.saturating_mul(c.ctx_len)
        );
    }
    println!("tensors       {}", g.tensors.len());
    for (ty, count, bytes) in types {
        println!("  {:<6} {count:>5} tensors {:>12} bytes", ty.name(), bytes);
    }
    let feats: Vec<String> = feats
        .into_iter()
        .map(|(n, on)| format!("{}{n}", if on { "+" } else { "-" }))
        .collect();
    println!(
        "cpu           {} {}",
        std::env::consts::ARCH,
        feats.join(" ")
    );
    println!(
        "kernels       available: {}; selected: {selected}; software prefetch: {}; \
         logits bit-identical to scalar: {}",
        available.join(", "),
        bitnet::kernels::prefetch::describe(),
        logits_exact.join(", ")
    );
    Ok(())
}
