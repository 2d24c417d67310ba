//! Host side: checks the tensors, lays out the per-sequence metadata, picks the kernel, the
//! vector width and the number of key splits, and launches.

use burn::tensor::DType;
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::features::MmaConfig;
use cubecl::prelude::*;

use super::kernels::combine::{COMBINE_UNITS, flash_combine};
use super::kernels::common::{FlashConfig, FlashLayoutLaunch, SEQ_WORDS};
use super::kernels::mma::{EMULATION_FLOATS_PER_PLANE, flash_mma};
use super::kernels::plain::flash_plain;
use super::{FlashKernel, FlashParams, SeqLayout, Shape, unsupported};
use crate::AttentionError;

/// Largest head dimension the kernels accept.
const MAX_HEAD_DIM: usize = 256;

/// Runs flash attention on one CubeCL runtime.
pub(crate) fn run<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    shape: &Shape,
    params: &FlashParams,
) -> Result<CubeTensor<R>, AttentionError> {
    let dtype = q.dtype;
    if k.dtype != dtype || v.dtype != dtype {
        return Err(AttentionError::Shape(format!(
            "q, k and v dtypes differ: {:?}, {:?}, {:?}",
            q.dtype, k.dtype, v.dtype
        )));
    }
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(unsupported(format!(
            "dtype {dtype:?} (the flash kernels take f32, f16 or bf16)"
        )));
    }
    let d = shape.head_dim;
    if d == 0 || d > MAX_HEAD_DIM || !d.is_multiple_of(8) {
        return Err(unsupported(format!(
            "head dimension {d} (the flash kernels take multiples of 8 up to {MAX_HEAD_DIM})"
        )));
    }
    let group = shape.q_heads / shape.kv_heads;
    let q = last_dim_contiguous(q);
    let k = last_dim_contiguous(k);
    let v = last_dim_contiguous(v);
    let client = q.client.clone();

    // Strides (elements) of positions and heads, and each sequence's offsets.
    let (qs, ks, vs) = (q.meta.strides(), k.meta.strides(), v.meta.strides());
    let out_shape: Vec<usize>;
    let (o_t, o_h);
    let mut seqs = Vec::<[usize; SEQ_WORDS]>::with_capacity(shape.batch);
    let (q_t, q_h, k_t, k_h, v_t, v_h);
    match &shape.layout {
        SeqLayout::Padded { q_len, key_lens } => {
            (q_t, q_h, k_t, k_h, v_t, v_h) = (qs[2], qs[1], ks[2], ks[1], vs[2], vs[1]);
            out_shape = vec![shape.batch, shape.q_heads, *q_len, d];
            (o_t, o_h) = (d, q_len * d);
            for (b, &kl) in key_lens.iter().enumerate() {
                seqs.push([
                    b * qs[0],
                    *q_len,
                    b * ks[0],
                    b * vs[0],
                    kl,
                    b * shape.q_heads * q_len * d,
                ]);
            }
        }
        SeqLayout::Packed {
            cu_q,
            cu_k,
            key_lens,
        } => {
            (q_t, q_h, k_t, k_h, v_t, v_h) = (qs[0], qs[1], ks[0], ks[1], vs[0], vs[1]);
            let total_q = cu_q[cu_q.len() - 1];
            out_shape = vec![total_q, shape.q_heads, d];
            (o_t, o_h) = (shape.q_heads * d, d);
            for b in 0..shape.batch {
                seqs.push([
                    cu_q[b] * q_t,
                    cu_q[b + 1] - cu_q[b],
                    cu_k[b] * k_t,
                    cu_k[b] * v_t,
                    key_lens[b],
                    cu_q[b] * o_t,
                ]);
            }
        }
    }
    let out =
        empty_device_contiguous_dtype(client.clone(), q.device.clone(), out_shape.into(), dtype);

    // Vector width: 16 bytes where every stride, offset and the head dimension allow it.
    let elem = dtype.size();
    let cap = if R::name(&client) == "cuda" {
        16 / elem
    } else {
        4.min(16 / elem)
    };
    let strides = [q_t, q_h, k_t, k_h, v_t, v_h, o_t, o_h, d];
    let offsets = [&q, &k, &v, &out].map(|t| t.handle.offset_start.unwrap_or(0) as usize / elem);
    let mut vec = cap;
    while vec > 1
        && (strides.iter().any(|s| !s.is_multiple_of(vec))
            || offsets.iter().any(|o| !o.is_multiple_of(vec))
            || seqs.iter().any(|s| {
                s.iter()
                    .enumerate()
                    .any(|(i, x)| i != 1 && i != 4 && !x.is_multiple_of(vec))
            }))
    {
        vec /= 2;
    }
    let limit = u32::MAX as usize;
    let seq_words: Vec<u32> = seqs
        .iter()
        .flat_map(|s| {
            s.iter()
                .enumerate()
                .map(|(i, &x)| if i == 1 || i == 4 { x } else { x / vec })
        })
        .map(|x| u32::try_from(x).unwrap_or(u32::MAX))
        .collect();
    if seq_words.contains(&u32::MAX)
        || [&q, &k, &v, &out]
            .iter()
            .any(|t| t.meta.num_elements() >= limit)
    {
        return Err(unsupported("tensors of 2^32 elements or more"));
    }

    let rows_cap = seqs.iter().map(|s| s[1]).max().unwrap_or(0) * group;
    let max_keys = seqs.iter().map(|s| s[4]).max().unwrap_or(0);
    if rows_cap == 0 {
        return Ok(out);
    }

    let tc = |emulate, pipelined| Kind::TensorCore { emulate, pipelined };
    let kind = match params.kernel {
        FlashKernel::Portable => Kind::Portable,
        FlashKernel::Auto => match tensor_cores(&client, dtype, d) {
            Ok(()) => tc(false, false),
            Err(_) => Kind::Portable,
        },
        FlashKernel::TensorCore | FlashKernel::TensorCorePipelined => {
            tensor_cores(&client, dtype, d).map_err(unsupported)?;
            let pipelined = params.kernel == FlashKernel::TensorCorePipelined;
            if pipelined && vec * elem != 16 {
                return Err(unsupported(
                    "the pipelined tensor-core kernel copies 16 bytes at a time; these tensors' \
                     strides or offsets are not 16-byte aligned",
                ));
            }
            tc(false, pipelined)
        }
        FlashKernel::TensorCoreEmulated | FlashKernel::TensorCorePipelinedEmulated => {
            if !d.is_multiple_of(16) {
                return Err(unsupported(format!(
                    "head dimension {d} on the tensor-core kernel (multiples of 16)"
                )));
            }
            tc(
                true,
                params.kernel == FlashKernel::TensorCorePipelinedEmulated,
            )
        }
    };
    let max_smem = client.properties().hardware.max_shared_memory_size;
    let (block_q, block_k) = match kind {
        Kind::Portable => {
            let bk = (16384 / (2 * d * elem)).clamp(4, 32).next_power_of_two();
            let bk = if bk * 2 * d * elem > 16384 {
                bk / 2
            } else {
                bk
            };
            (32usize, bk)
        }
        Kind::TensorCore { emulate, pipelined } => {
            // Few rows (decoding): small cubes, many of them, and tiles small enough that each
            // unit's share of a K/V tile stays in registers while its loads are in flight.
            let mut planes = if rows_cap > 32 { 4 } else { 2 };
            let mut bk = match (planes, d) {
                (4, d) if d <= 128 => 64,
                (4, _) => 32,
                (_, d) if d <= 64 => 64,
                (_, d) if d <= 128 => 32,
                _ => 16,
            };
            let smem = |planes: usize, bk: usize| {
                let sd = d + 8;
                let emu = if emulate {
                    planes * EMULATION_FLOATS_PER_PLANE * 4
                } else {
                    0
                };
                let stages = if pipelined { 2 } else { 1 };
                (2 * 16 * planes + 2 * stages * bk) * sd * elem + emu
            };
            while smem(planes, bk) > max_smem && bk > 16 {
                bk /= 2;
            }
            while smem(planes, bk) > max_smem && planes > 1 {
                planes /= 2;
            }
            if smem(planes, bk) > max_smem {
                return Err(unsupported(format!(
                    "head dimension {d}: the tensor-core kernel needs {} bytes of shared memory, \
                     the device has {max_smem}",
                    smem(planes, bk)
                )));
            }
            (16 * planes, bk)
        }
    };
    let m_blocks = rows_cap.div_ceil(block_q);
    let slabs = shape.batch * shape.kv_heads;
    let splits = match params.num_splits {
        Some(n) => n.max(1),
        None => {
            let blocks = m_blocks * slabs;
            let sms = client
                .properties()
                .hardware
                .num_streaming_multiprocessors
                .unwrap_or(8) as usize;
            let tiles = max_keys.div_ceil(block_k);
            // Small cubes (decoding) are memory-bound: aim at several resident per
            // multiprocessor so that enough K/V loads are in flight.
            let target = if block_q <= 32 { 4 * sms } else { 2 * sms };
            if blocks >= sms || tiles < 4 {
                1
            } else {
                target.div_ceil(blocks).min(tiles / 2).clamp(1, 128)
            }
        }
    };
    if slabs > 65535 || splits > 65535 {
        return Err(unsupported(format!(
            "{} sequences x {} key/value heads",
            shape.batch, shape.kv_heads
        )));
    }

    let scale = params.scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32;
    let window = params.window_left >= 0 || params.window_right >= 0;
    let softcap = params.softcap != 0.0;
    let cfg = FlashConfig {
        head_dim: d,
        vec,
        block_q,
        block_k,
        causal: params.causal,
        window,
        softcap,
        split: splits > 1,
        emulate: matches!(kind, Kind::TensorCore { emulate: true, .. }),
        pipelined: matches!(
            kind,
            Kind::TensorCore {
                pipelined: true,
                ..
            }
        ),
    };
    let clamp_window = |w: i64| -> i32 {
        if w < 0 {
            -1
        } else {
            w.min(i32::MAX as i64) as i32
        }
    };
    let layout = || {
        FlashLayoutLaunch::new(
            (q_t / vec) as u32,
            (q_h / vec) as u32,
            (k_t / vec) as u32,
            (k_h / vec) as u32,
            (v_t / vec) as u32,
            (v_h / vec) as u32,
            (o_t / vec) as u32,
            (o_h / vec) as u32,
            group as u32,
            shape.kv_heads as u32,
            rows_cap as u32,
            splits as u32,
            clamp_window(params.window_left),
            clamp_window(params.window_right),
            scale,
            params.softcap as f32,
            (d / vec) as u32,
            block_k as u32,
        )
    };

    let seqs_handle = client.create_from_slice(u32::as_bytes(&seq_words));
    let (part_o, part_lse) = if splits > 1 {
        let rows = splits * slabs * rows_cap;
        (client.empty(rows * d * 4), client.empty(rows * 4))
    } else {
        (client.empty(4), client.empty(4))
    };
    let part_len = |h: &cubecl::server::Handle| h.size() as usize / 4;
    let array = |t: &CubeTensor<R>| unsafe {
        ArrayArg::from_raw_parts(t.handle.clone(), t.handle.size() as usize / elem)
    };

    let count = CubeCount::Static(m_blocks as u32, slabs as u32, splits as u32);
    let dtype_arg: StorageType = dtype.into();
    match kind {
        Kind::Portable => unsafe {
            flash_plain::launch_unchecked::<R>(
                &client,
                count,
                CubeDim::new_1d(block_q as u32),
                vec,
                array(&q),
                array(&k),
                array(&v),
                array(&out),
                ArrayArg::from_raw_parts(part_o.clone(), part_len(&part_o)),
                ArrayArg::from_raw_parts(part_lse.clone(), part_len(&part_lse)),
                ArrayArg::from_raw_parts(seqs_handle.clone(), seq_words.len()),
                layout(),
                cfg,
                dtype_arg,
            )
        },
        Kind::TensorCore { .. } => unsafe {
            flash_mma::launch_unchecked::<R>(
                &client,
                count,
                CubeDim::new_1d(block_q as u32 * 2),
                vec,
                array(&q),
                array(&k),
                array(&v),
                array(&out),
                ArrayArg::from_raw_parts(part_o.clone(), part_len(&part_o)),
                ArrayArg::from_raw_parts(part_lse.clone(), part_len(&part_lse)),
                ArrayArg::from_raw_parts(seqs_handle.clone(), seq_words.len()),
                layout(),
                cfg,
                dtype_arg,
            )
        },
    }
    if splits > 1 {
        let units = rows_cap * (d / vec);
        let count = CubeCount::Static(
            units.div_ceil(COMBINE_UNITS as usize) as u32,
            slabs as u32,
            1,
        );
        unsafe {
            flash_combine::launch_unchecked::<R>(
                &client,
                count,
                CubeDim::new_1d(COMBINE_UNITS),
                vec,
                ArrayArg::from_raw_parts(part_o.clone(), part_len(&part_o)),
                ArrayArg::from_raw_parts(part_lse.clone(), part_len(&part_lse)),
                ArrayArg::from_raw_parts(seqs_handle, seq_words.len()),
                array(&out),
                layout(),
                cfg,
                dtype_arg,
            )
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Portable,
    TensorCore { emulate: bool, pipelined: bool },
}

/// Whether the tensor-core kernel runs here: f16/bf16, head dimension a multiple of 16,
/// `mma.m16n8k16` with f32 accumulation, `ldmatrix`, and 32-unit planes.
fn tensor_cores<R: CubeRuntime>(
    client: &ComputeClient<R>,
    dtype: DType,
    d: usize,
) -> Result<(), String> {
    if !matches!(dtype, DType::F16 | DType::BF16) {
        return Err(format!(
            "dtype {dtype:?} on the tensor-core kernel (f16 or bf16)"
        ));
    }
    if !d.is_multiple_of(16) {
        return Err(format!(
            "head dimension {d} on the tensor-core kernel (multiples of 16)"
        ));
    }
    let storage: StorageType = dtype.into();
    let features = client.features();
    let mma = MmaConfig {
        a_type: storage,
        b_type: storage,
        cd_type: StorageType::from(DType::F32),
        m: 16,
        n: 8,
        k: 16,
    };
    let hardware = &client.properties().hardware;
    if !features.matmul.mma.contains(&mma)
        || !features.matmul.ldmatrix.contains(&storage)
        || hardware.plane_size_min != 32
        || hardware.plane_size_max != 32
    {
        return Err("this device has no mma.m16n8k16 tensor cores with ldmatrix".into());
    }
    Ok(())
}

/// The kernels read rows of `head_dim` contiguous elements.
fn last_dim_contiguous<R: CubeRuntime>(t: CubeTensor<R>) -> CubeTensor<R> {
    let strides = t.meta.strides();
    if strides[strides.len() - 1] == 1 {
        t
    } else {
        into_contiguous(t)
    }
}
