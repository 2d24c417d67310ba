//! Shared pieces of kiln's benchmarks: units and the report format.

/// Throughput in GB/s (10^9 bytes per second) of `bytes` moved in `seconds`.
pub fn gb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

/// TFLOP/s of `flops` floating-point operations in `seconds`.
pub fn tflop_per_s(flops: f64, seconds: f64) -> f64 {
    flops / seconds / 1e12
}

/// FLOPs of an attention forward pass, counted as FlashAttention's papers count them
/// (`4 * batch * heads * q_len * k_len * head_dim`, halved when causal).
pub fn attention_flops(
    batch: usize,
    heads: usize,
    q_len: usize,
    k_len: usize,
    head_dim: usize,
    causal: bool,
) -> f64 {
    let full = 4.0 * (batch * heads * q_len * k_len * head_dim) as f64;
    if causal { full / 2.0 } else { full }
}

/// `ours / reference` speed-up from two times (`reference_s / ours_s`): above 1 means kiln is faster.
pub fn speedup(ours_s: f64, reference_s: f64) -> f64 {
    reference_s / ours_s
}

/// Where benchmark records go: `$KILN_BENCH_OUT`, else `target/kiln-bench/records` of the
/// workspace. `cargo xtask bench` reads them into its report.
pub fn records_dir() -> std::path::PathBuf {
    match std::env::var_os("KILN_BENCH_OUT") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kiln-bench/records")
        }
    }
}

/// Writes one benchmark's record (a JSON document) as `<records_dir>/<name>.json`. A bench
/// that cannot write its record fails: the report would silently lack it.
pub fn write_record(name: &str, json: &str) {
    let dir = records_dir();
    let path = dir.join(format!("{name}.json"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, json)) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(gb_per_s(3_000_000_000, 1.5), 2.0);
        assert_eq!(tflop_per_s(5e12, 0.5), 10.0);
        // Batch 4, 32 heads, 2048 tokens, head dim 128: two matmuls of 2*s*s*d FLOPs per head,
        // 2.749e11 in all, half of it when causal.
        assert_eq!(
            attention_flops(4, 32, 2048, 2048, 128, false),
            274_877_906_944.0
        );
        assert_eq!(
            attention_flops(4, 32, 2048, 2048, 128, true),
            137_438_953_472.0
        );
        assert_eq!(speedup(1.0, 3.0), 3.0);
    }
}
