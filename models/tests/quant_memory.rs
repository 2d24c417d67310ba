//! Quantizing on load never holds the full-precision model: a Llama of several layers, written
//! as f32 safetensors, loads with NF4 while the heap (counted by this binary's global allocator)
//! peaks far below the f32 model's size. The same load unquantized peaks above it, which shows
//! the counter sees the model's tensors.
//!
//! One test in this binary: the allocator counts every thread, so nothing may run beside it.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_attention::AttentionImpl;
use kiln_models::llama::{Llama, LlamaConfig};
use kiln_models::nn::RopeScaling;
use kiln_models::weights::{FloatDtype, SafetensorsSource, WeightOptions};
use kiln_quant::QuantConfig;
use kiln_quant::codec::FourBitType;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

type B = NdArray;

const LAYERS: usize = 8;
const HIDDEN: usize = 256;
const INTERMEDIATE: usize = 768;
const VOCAB: usize = 256;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;

fn config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: HIDDEN,
        intermediate_size: INTERMEDIATE,
        num_hidden_layers: LAYERS,
        num_attention_heads: HEADS,
        num_key_value_heads: Some(KV_HEADS),
        head_dim: None,
        rms_norm_eps: 1e-5,
        vocab_size: VOCAB,
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        hidden_act: "silu".to_owned(),
        sliding_window: None,
    }
}

/// Every tensor of the model, with its shape.
fn tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("model.embed_tokens.weight".to_owned(), vec![VOCAB, HIDDEN])];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let kv = KV_HEADS * HEAD_DIM;
        for (name, shape) in [
            ("input_layernorm", vec![HIDDEN]),
            ("post_attention_layernorm", vec![HIDDEN]),
            ("self_attn.q_proj", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj", vec![kv, HIDDEN]),
            ("self_attn.v_proj", vec![kv, HIDDEN]),
            ("self_attn.o_proj", vec![HIDDEN, HIDDEN]),
            ("mlp.gate_proj", vec![INTERMEDIATE, HIDDEN]),
            ("mlp.up_proj", vec![INTERMEDIATE, HIDDEN]),
            ("mlp.down_proj", vec![HIDDEN, INTERMEDIATE]),
        ] {
            t.push((format!("{p}.{name}.weight"), shape));
        }
    }
    t.push(("model.norm.weight".to_owned(), vec![HIDDEN]));
    t.push(("lm_head.weight".to_owned(), vec![VOCAB, HIDDEN]));
    t
}

/// Writes the model as one f32 safetensors file; returns its dir and the tensor bytes.
fn write_model() -> (PathBuf, usize) {
    let dir = std::env::temp_dir().join(format!("kiln-quant-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in tensors() {
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(4 * n);
        for _ in 0..n {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = if name.contains("norm") {
                1.0
            } else {
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            };
            data.extend_from_slice(&v.to_le_bytes());
        }
        bytes.push((name, shape, data));
    }
    let total = bytes.iter().map(|(_, _, d)| d.len()).sum();
    let views: HashMap<String, safetensors::tensor::TensorView<'_>> = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(&views, None, &dir.join("model.safetensors")).unwrap();
    (dir, total)
}

/// Loads the model; returns it with the heap's peak during the load and what it keeps,
/// both above the heap in use before.
fn load(dir: &Path, quantization: Option<QuantConfig>) -> (Llama<B>, usize, usize) {
    let mut src = SafetensorsSource::open(dir)
        .unwrap()
        .with_options(WeightOptions {
            dtype: FloatDtype::F32,
            quantization,
        });
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let model = Llama::<B>::load(
        config(),
        &mut src,
        AttentionImpl::Eager,
        &Default::default(),
    )
    .unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    let kept = LIVE.load(Ordering::SeqCst).saturating_sub(before);
    (model, peak, kept)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn nf4_loading_peaks_far_below_the_f32_model() {
    let (dir, f32_bytes) = write_model();
    let linear_params = LAYERS
        * (2 * HIDDEN * HIDDEN + 2 * KV_HEADS * HEAD_DIM * HIDDEN + 3 * HIDDEN * INTERMEDIATE);
    let largest_linear = 4 * HIDDEN * INTERMEDIATE;

    let nf4 = QuantConfig::four_bit(FourBitType::Nf4).with_double_quant(true);
    let (model, peak, kept) = load(&dir, Some(nf4));
    // The model runs.
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![1i64, 5, 9], [1, 3]),
        &Default::default(),
    );
    let logits = model.forward(ids, &mut model.new_cache(), true).unwrap();
    assert_eq!(logits.dims(), [1, 1, VOCAB]);
    drop(model);
    let (dense, dense_peak, dense_kept) = load(&dir, None);
    drop(dense);
    std::fs::remove_dir_all(&dir).unwrap();

    println!(
        "f32 model: {:.2} MiB ({linear_params} Linear parameters in {LAYERS} layers; largest Linear {:.2} MiB)",
        mib(f32_bytes),
        mib(largest_linear)
    );
    println!(
        "NF4 + double quant load: peak {:.2} MiB ({:.1}% of f32), kept {:.2} MiB",
        mib(peak),
        100.0 * peak as f64 / f32_bytes as f64,
        mib(kept)
    );
    println!(
        "f32 load: peak {:.2} MiB, kept {:.2} MiB",
        mib(dense_peak),
        mib(dense_kept)
    );
    // What stays unquantized: embeddings, lm_head and norms in f32.
    let unquantized = 4 * (2 * VOCAB * HIDDEN + (2 * LAYERS + 1) * HIDDEN);
    // NF4 with double quant: half a byte per weight, one absmax byte per 64 weights.
    let quantized = linear_params / 2 + linear_params / 64;
    assert!(
        kept < unquantized + quantized + quantized / 2,
        "the NF4 model keeps {kept} bytes, expected about {}",
        unquantized + quantized
    );
    // The peak is the quantized model plus a few copies of one Linear, not the f32 model.
    assert!(
        peak < unquantized + quantized + 6 * largest_linear,
        "NF4 load peaked at {peak} bytes"
    );
    assert!(
        peak < f32_bytes / 3,
        "NF4 load peaked at {peak} of {f32_bytes} bytes"
    );
    assert!(
        dense_kept >= f32_bytes,
        "the counter misses tensors: the f32 model keeps {dense_kept} of {f32_bytes} bytes"
    );
}
