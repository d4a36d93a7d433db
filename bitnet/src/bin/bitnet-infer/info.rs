//! `bitnet-infer info`: what a model file holds and what this CPU will run it with.

use bitnet::gguf::GgufFile;
use bitnet::kernels::Kernel;
use bitnet::model::{tensor_type_summary, Model};

use crate::args::InfoArgs;
use crate::stats::cpu_features;

pub fn main(a: &InfoArgs) -> Result<(), String> {
    let file = GgufFile::open(&a.model).map_err(|e| e.to_string())?;
    let g = file.gguf();
    let path = a.model.display();
    // Loading checks every tensor's shape and type, so `info` also validates the file.
    let model =
        Model::load(g, file.source(), Kernel::detect()).map_err(|e| format!("{path}: {e}"))?;
    let c = &model.config;
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
        "rope          neox, {} dims, theta {}",
        c.n_rot, c.rope_theta
    );
    println!("rms eps       {:e}", c.eps);
    println!("context       {}", c.ctx_len);
    println!("vocab         {}", c.vocab);
    let tied = if g.tensor("output.weight").is_some() {
        "output.weight"
    } else {
        "tied to token_embd"
    };
    println!("head          {tied}");
    println!("tensors       {}", g.tensors.len());
    for (ty, count, bytes) in tensor_type_summary(g) {
        println!("  {:<6} {count:>5} tensors {:>12} bytes", ty.name(), bytes);
    }
    let feats: Vec<String> = cpu_features()
        .into_iter()
        .map(|(n, on)| format!("{}{n}", if on { "+" } else { "-" }))
        .collect();
    println!(
        "cpu           {} {}",
        std::env::consts::ARCH,
        feats.join(" ")
    );
    let available: Vec<&str> = Kernel::ALL
        .iter()
        .filter(|k| k.is_available())
        .map(|k| k.name())
        .collect();
    println!(
        "kernels       available: {}; selected: {}",
        available.join(", "),
        Kernel::detect()
    );
    Ok(())
}
