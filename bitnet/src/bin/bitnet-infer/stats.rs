//! Process figures for the stats block.

/// Peak resident set size in bytes (Linux `VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory the system can give a new allocation without swapping (Linux `MemAvailable`), in
/// bytes, if the platform reports it.
pub fn mem_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The KV cache line of the stats block: bytes per token, at the current context, allocated.
pub fn print_kv(kv: &bitnet::model::KvCache, c: &bitnet::model::Config, pos: usize) {
    let per = kv.types.bytes_per_token(c.n_layer, c.kv_dim()).unwrap_or(0);
    eprintln!(
        "kv cache     {} bytes/token ({}); {:.2} MB at the current context of {pos} tokens, \
         {:.2} MB allocated for {}",
        per,
        kv.types,
        (per * pos) as f64 / 1e6,
        kv.bytes() as f64 / 1e6,
        kv.ctx
    );
}

/// Mean and sample standard deviation.
pub struct Stats {
    pub samples: Vec<f64>,
}

impl Stats {
    pub fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }

    pub fn stddev(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
    }

    pub fn json(&self) -> String {
        let s: Vec<String> = self.samples.iter().map(|x| format!("{x:.3}")).collect();
        format!(
            "{{\"mean\": {:.3}, \"stddev\": {:.3}, \"samples\": [{}]}}",
            self.mean(),
            self.stddev(),
            s.join(", ")
        )
    }
}
