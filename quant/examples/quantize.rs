//! Quantizes an HF safetensors model directory into a bitsandbytes checkpoint.
//!
//! `cargo run --release -p kiln-quant --example quantize -- IN_DIR OUT_DIR nf4|fp4|int8
//! [--double-quant] [--blocksize N] [--compute-dtype float32|float16|bfloat16] [--skip MODULE]...`

use kiln_quant::QuantConfig;
use kiln_quant::checkpoint::quantize_checkpoint;
use kiln_quant::codec::{FloatDtype, FourBitType};

fn usage() -> ! {
    eprintln!(
        "usage: quantize IN_DIR OUT_DIR nf4|fp4|int8 [--double-quant] [--blocksize N] \
         [--compute-dtype float32|float16|bfloat16] [--skip MODULE]..."
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, quant, rest @ ..] = args.as_slice() else {
        usage()
    };
    let mut cfg = match quant.as_str() {
        "nf4" => QuantConfig::four_bit(FourBitType::Nf4),
        "fp4" => QuantConfig::four_bit(FourBitType::Fp4),
        "int8" => QuantConfig::int8(),
        _ => usage(),
    };
    let mut skips = Vec::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--double-quant" => cfg = cfg.with_double_quant(true),
            "--blocksize" => {
                let n = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                cfg = cfg.with_blocksize(n);
            }
            "--compute-dtype" => {
                let d = it
                    .next()
                    .and_then(|v| FloatDtype::from_torch_name(v))
                    .unwrap_or_else(|| usage());
                cfg = cfg.with_compute_dtype(d);
            }
            "--skip" => skips.push(it.next().cloned().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    if !skips.is_empty() {
        cfg = cfg.with_skip_modules(skips);
    }
    let result = quantize_checkpoint(input, output, &cfg, |p| {
        eprintln!("[{}/{}] {:?} {}", p.index, p.total, p.action, p.name);
    });
    match result {
        Ok(s) => println!(
            "{} weights quantized, {} tensors copied; {} -> {} bytes; {:.3} bits/param",
            s.tensors_quantized,
            s.tensors_copied,
            s.bytes_before,
            s.bytes_after,
            s.bits_per_param()
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
