//! CPU throughput of kiln-quant's bitsandbytes codecs (input bytes per second).
//!
//! `cargo bench -p kiln-benches --bench quant_codec`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln_quant::codec::{FourBitType, Int8Rowwise, Quantized4bit};
use kiln_quant::half::f16;
use std::hint::black_box;

const ROWS: usize = 4096;
const COLS: usize = 4096;

fn matrix() -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..ROWS * COLS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn codecs(c: &mut Criterion) {
    let w32 = matrix();
    let w16: Vec<f16> = w32.iter().map(|v| f16::from_f32(*v)).collect();
    let shape = [ROWS, COLS];
    let n = (ROWS * COLS) as u64;

    let mut g = c.benchmark_group("nf4_4096x4096");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(n * 4));
    g.bench_function(BenchmarkId::new("quantize", "f32"), |b| {
        b.iter(|| Quantized4bit::quantize(black_box(&w32), &shape, FourBitType::Nf4, 64, false))
    });
    g.bench_function(BenchmarkId::new("quantize_double_quant", "f32"), |b| {
        b.iter(|| Quantized4bit::quantize(black_box(&w32), &shape, FourBitType::Nf4, 64, true))
    });
    let q = Quantized4bit::quantize(&w32, &shape, FourBitType::Nf4, 64, false).expect("quantize");
    g.bench_function(BenchmarkId::new("dequantize", "f32"), |b| {
        b.iter(|| black_box(&q).dequantize::<f32>())
    });
    g.throughput(Throughput::Bytes(n * 2));
    g.bench_function(BenchmarkId::new("quantize", "f16"), |b| {
        b.iter(|| Quantized4bit::quantize(black_box(&w16), &shape, FourBitType::Nf4, 64, false))
    });
    let q16 = Quantized4bit::quantize(&w16, &shape, FourBitType::Nf4, 64, false).expect("quantize");
    g.bench_function(BenchmarkId::new("dequantize", "f16"), |b| {
        b.iter(|| black_box(&q16).dequantize::<f16>())
    });
    g.finish();

    let mut g = c.benchmark_group("int8_rowwise_4096x4096");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(n * 4));
    g.bench_function(BenchmarkId::new("quantize", "f32"), |b| {
        b.iter(|| Int8Rowwise::quantize(black_box(&w32), ROWS, COLS))
    });
    let q8 = Int8Rowwise::quantize(&w32, ROWS, COLS).expect("quantize");
    g.bench_function(BenchmarkId::new("dequantize", "f32"), |b| {
        b.iter(|| black_box(&q8).dequantize())
    });
    g.throughput(Throughput::Bytes(n * 2));
    g.bench_function(BenchmarkId::new("quantize", "f16"), |b| {
        b.iter(|| Int8Rowwise::quantize(black_box(&w16), ROWS, COLS))
    });
    g.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
