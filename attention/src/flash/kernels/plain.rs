//! The portable kernel: one unit per row, K/V tiles in shared memory, f32 online softmax.
//!
//! Runs on every CubeCL device (no tensor cores, no plane operations). A cube handles
//! `block_q` rows of one (sequence, key/value head): rows are (query position, query head of
//! the group) pairs, so the heads sharing a key/value head read each K/V tile once.

use cubecl::prelude::*;

use super::common::*;

/// The portable flash kernel (see the module documentation).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_plain<F: Float, N: Size>(
    q: &Array<Vector<F, N>>,
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    part_o: &mut Array<f32>,
    part_lse: &mut Array<f32>,
    seqs: &Array<u32>,
    layout: FlashLayout,
    #[comptime] cfg: FlashConfig,
    #[define(F)] _dtype: StorageType,
) {
    let d = cfg.head_dim;
    let nv = cfg.vec;
    let dv = d / nv;
    let bk = cfg.block_k;
    let bq = cfg.block_q;

    // Loop bounds come from runtime values: shader compilers that unroll loops with constant
    // bounds (lavapipe's LLVM) take minutes on this kernel otherwise.
    let dv_rt = layout.head_vecs as usize;
    let bk_rt = layout.tile_keys as usize;

    let plan = plan_block(seqs, &layout, cfg);
    if plan.row1 <= plan.row0 {
        terminate!();
    }

    let row = plan.row0 + UNIT_POS_X;
    let row_ok = row < plan.row1;
    let qpos = row / layout.group;
    let head = plan.kv_head * layout.group + row % layout.group;

    let mut qr = Array::<f32>::new(d);
    let mut acc = Array::<f32>::new(d);
    let q_off = plan.q_base + qpos * layout.q_stride_t + head * layout.q_stride_h;
    for i in 0..dv_rt {
        let mut x = Vector::<F, N>::new(F::new(0.0));
        if row_ok {
            x = q[(q_off as usize) + i];
        }
        #[unroll]
        for e in 0..nv {
            qr[i * nv + e] = f32::cast_from(x[e]);
            acc[i * nv + e] = 0.0;
        }
    }

    let (lo, hi) = key_range(
        qpos as i32,
        plan.q_len as i32,
        plan.k_len as i32,
        layout.window_left,
        layout.window_right,
        cfg.causal,
        cfg.window,
    );

    let mut smk = SharedMemory::<Vector<F, N>>::new(bk * dv);
    let mut smv = SharedMemory::<Vector<F, N>>::new(bk * dv);
    let mut scores = Array::<f32>::new(bk);
    let mut m = f32::new(NEG);
    let mut l = 0.0f32;

    let k_head = plan.k_base + plan.kv_head * layout.k_stride_h;
    let v_head = plan.v_base + plan.kv_head * layout.v_stride_h;

    for t in plan.tile_begin..plan.tile_end {
        let j0 = plan.kv_lo + (t * bk as u32) as i32;
        sync_cube();
        let mut idx = UNIT_POS_X as usize;
        while idx < bk * dv {
            let jj = idx / dv;
            let c = idx % dv;
            let j = j0 + jj as i32;
            let mut kx = Vector::<F, N>::new(F::new(0.0));
            let mut vx = Vector::<F, N>::new(F::new(0.0));
            if j < plan.k_len as i32 {
                kx = k[(k_head + (j as u32) * layout.k_stride_t) as usize + c];
                vx = v[(v_head + (j as u32) * layout.v_stride_t) as usize + c];
            }
            smk[idx] = kx;
            smv[idx] = vx;
            idx += bq;
        }
        sync_cube();

        if row_ok {
            let mut tile_max = f32::new(NEG);
            for jj in 0..bk_rt {
                let j = j0 + jj as i32;
                let mut s = f32::new(NEG);
                if j >= lo && j < hi {
                    let mut dot = 0.0f32;
                    for i in 0..dv_rt {
                        let kx = smk[jj * dv + i];
                        #[unroll]
                        for e in 0..nv {
                            dot += qr[i * nv + e] * f32::cast_from(kx[e]);
                        }
                    }
                    s = transform_score(dot, layout.scale, layout.softcap, cfg.softcap);
                }
                scores[jj] = s;
                tile_max = max(tile_max, s);
            }
            let m_new = max(m, tile_max);
            let m_use = select(m_new > NEG_HALF, m_new, 0.0f32);
            let alpha = (m - m_use).exp();
            l *= alpha;
            for i in 0..dv_rt * nv {
                acc[i] *= alpha;
            }
            for jj in 0..bk_rt {
                let s = scores[jj];
                if s > NEG_HALF {
                    let p = (s - m_use).exp();
                    l += p;
                    for i in 0..dv_rt {
                        let vx = smv[jj * dv + i];
                        #[unroll]
                        for e in 0..nv {
                            acc[i * nv + e] += p * f32::cast_from(vx[e]);
                        }
                    }
                }
            }
            m = m_new;
        }
    }

    if row_ok {
        let inv = select(l > 0.0, 1.0 / l, 0.0f32);
        if cfg.split {
            let pr = partial_row(row, &layout);
            for i in 0..dv_rt * nv {
                part_o[(pr as usize) * d + i] = acc[i] * inv;
            }
            let m_use = select(m > NEG_HALF, m, 0.0f32);
            part_lse[pr as usize] = select(l > 0.0, m_use + l.ln(), f32::new(NEG));
        } else {
            let o_off = plan.o_base + qpos * layout.o_stride_t + head * layout.o_stride_h;
            for i in 0..dv_rt {
                let mut x = Vector::<F, N>::new(F::new(0.0));
                #[unroll]
                for e in 0..nv {
                    x[e] = F::cast_from(acc[i * nv + e] * inv);
                }
                out[(o_off as usize) + i] = x;
            }
        }
    }
}
