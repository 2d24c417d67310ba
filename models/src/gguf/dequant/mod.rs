//! Dequantization of ggml blocks to f32, bit-equal with gguf-py's `gguf.quants.dequantize`.

mod kquants;
mod legacy;

use rayon::prelude::*;

use super::{GgmlType, GgufError};

/// Below this many output elements the work stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;
/// Output elements per parallel task (a multiple of every block size).
const TASK_ELEMS: usize = 1 << 14;

type BlockFn = fn(&[u8], &mut [f32]);

fn block_fn(ty: GgmlType) -> Option<BlockFn> {
    Some(match ty {
        GgmlType::F32 => legacy::f32s,
        GgmlType::F16 => legacy::f16s,
        GgmlType::BF16 => legacy::bf16s,
        GgmlType::Q4_0 => legacy::q4_0,
        GgmlType::Q4_1 => legacy::q4_1,
        GgmlType::Q5_0 => legacy::q5_0,
        GgmlType::Q5_1 => legacy::q5_1,
        GgmlType::Q8_0 => legacy::q8_0,
        GgmlType::Q2_K => kquants::q2_k,
        GgmlType::Q3_K => kquants::q3_k,
        GgmlType::Q4_K => kquants::q4_k,
        GgmlType::Q5_K => kquants::q5_k,
        GgmlType::Q6_K => kquants::q6_k,
        GgmlType::Q8_K => kquants::q8_k,
        _ => return None,
    })
}

/// Dequantizes whole blocks of type `ty` from `data` into `out`.
///
/// `out.len()` must be a multiple of the block size and `data.len()` exactly the bytes of
/// `out.len()` elements. Large inputs are split over the rayon pool; nothing is allocated.
///
/// ```
/// use kiln_models::gguf::{dequantize_into, GgmlType};
/// // One Q8_0 block: f16 scale 0.5, then 32 int8 quants.
/// let mut block = vec![0x00, 0x38];
/// block.extend((0..32).map(|i| (i as i8 - 16) as u8));
/// let mut out = [0f32; 32];
/// dequantize_into(GgmlType::Q8_0, &block, &mut out).unwrap();
/// assert_eq!(out[0], -8.0);
/// assert_eq!(out[31], 7.5);
/// ```
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    let err = |reason: String| GgufError::Dequantize { ty, reason };
    let f = block_fn(ty).ok_or_else(|| {
        err(format!(
            "not supported (supported: {})",
            GgmlType::supported_list()
        ))
    })?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if !out.len().is_multiple_of(bs) {
        return Err(err(format!(
            "{} output elements is not a multiple of the block size {bs}",
            out.len()
        )));
    }
    let expected = out.len() / bs * ts;
    if data.len() != expected {
        return Err(err(format!(
            "{} bytes given, {} elements need {expected}",
            data.len(),
            out.len()
        )));
    }
    if out.len() < PARALLEL_MIN {
        f(data, out);
    } else {
        let blocks_per_task = TASK_ELEMS / bs;
        out.par_chunks_mut(blocks_per_task * bs)
            .zip(data.par_chunks(blocks_per_task * ts))
            .for_each(|(o, d)| f(d, o));
    }
    Ok(())
}
