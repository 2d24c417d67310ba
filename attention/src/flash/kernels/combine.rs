//! Reduces the per-split partial results of a split-KV launch by log-sum-exp.

use cubecl::prelude::*;

use super::common::*;

/// Units per cube of the combine kernel.
pub(crate) const COMBINE_UNITS: u32 = 256;

/// One unit per output vector: weights each split's normalized partial output by
/// `exp(lse_split - lse_max)`; rows that no split saw a key for become zeros.
#[cube(launch_unchecked)]
pub(crate) fn flash_combine<F: Float, N: Size>(
    part_o: &Array<f32>,
    part_lse: &Array<f32>,
    seqs: &Array<u32>,
    out: &mut Array<Vector<F, N>>,
    layout: FlashLayout,
    #[comptime] cfg: FlashConfig,
    #[define(F)] _dtype: StorageType,
) {
    let d = cfg.head_dim;
    let nv = cfg.vec;
    let dv = (d / nv) as u32;
    let b_kvh = CUBE_POS_Y;
    let slabs = CUBE_COUNT_Y;
    let batch = b_kvh / layout.kv_heads;
    let kv_head = b_kvh % layout.kv_heads;
    let meta = (batch as usize) * SEQ_WORDS;
    let rows = seqs[meta + SEQ_Q_LEN] * layout.group;

    let idx = CUBE_POS_X * COMBINE_UNITS + UNIT_POS_X;
    let row = idx / dv;
    let c = idx % dv;
    if row >= rows {
        terminate!();
    }

    let mut lse_max = f32::new(NEG);
    for s in 0..layout.splits {
        let pr = (s * slabs + b_kvh) * layout.rows_cap + row;
        lse_max = max(lse_max, part_lse[pr as usize]);
    }
    let mut acc = Array::<f32>::new(nv);
    #[unroll]
    for e in 0..nv {
        acc[e] = 0.0;
    }
    let mut total = 0.0f32;
    if lse_max > NEG_HALF {
        for s in 0..layout.splits {
            let pr = (s * slabs + b_kvh) * layout.rows_cap + row;
            let lse = part_lse[pr as usize];
            if lse > NEG_HALF {
                let w = (lse - lse_max).exp();
                total += w;
                let base = (pr as usize) * d + (c as usize) * nv;
                #[unroll]
                for e in 0..nv {
                    acc[e] += w * part_o[base + e];
                }
            }
        }
    }
    let inv = select(total > 0.0, 1.0 / total, 0.0f32);
    let qpos = row / layout.group;
    let head = kv_head * layout.group + row % layout.group;
    let o_off = seqs[meta + SEQ_O_BASE] + qpos * layout.o_stride_t + head * layout.o_stride_h;
    let mut x = Vector::<F, N>::new(F::new(0.0));
    #[unroll]
    for e in 0..nv {
        x[e] = F::cast_from(acc[e] * inv);
    }
    out[(o_off + c) as usize] = x;
}
