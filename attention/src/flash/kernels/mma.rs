//! The tensor-core kernel: FlashAttention-2's register-level algorithm on `mma.m16n8k16`.
//!
//! A cube has `block_q / 16` planes of 32 units; plane `w` owns rows `16w..16w + 16` of the
//! block. Per tile of `block_k` keys, all planes share the K and V tiles in shared memory
//! (rows padded by 8 elements so `ldmatrix` reads are free of bank conflicts):
//!
//! 1. `S = Q K^T` into f32 accumulators (`block_k / 8` tiles of 16x8 per plane), with Q's
//!    fragments held in registers (head dimensions up to 128) or reloaded from shared memory;
//! 2. scale, soft-cap and mask `S` in registers; each unit holds two rows (`g` and `g + 8`,
//!    `g = lane / 4`) whose maxima and sums are reduced over the 4 units of its quad;
//! 3. the online-softmax update rescales the output accumulators in registers;
//! 4. `O += P V`: the accumulator layout of `S` is the A-operand layout of the next `mma`
//!    (as in FlashAttention-2), so `P` goes from registers to the tensor cores directly, and V
//!    is read transposed by `ldmatrix.trans`.
//!
//! With `emulate`, the three plane-level operations (`mma`, `ldmatrix`, quad shuffles) are
//! computed through shared memory with the same register layouts (PTX ISA, "Matrix Fragments
//! for mma.m16n8k16"), so the kernel's logic can be tested on devices without tensor cores.
//! Emulation synchronizes the whole cube inside these operations, which is why all control
//! flow around them is uniform across the cube.

use cubecl::cmma::MmaDefinition;
use cubecl::ir::MatrixIdent;
use cubecl::prelude::barrier::{Barrier, copy_async};
use cubecl::prelude::*;

use super::common::*;

/// Two elements of an operand register (a 32-bit register for f16/bf16).
type Pair<F> = Vector<F, Const<2>>;
/// Two f32 accumulator elements.
type Acc = Vector<f32, Const<2>>;

/// Scratch floats per plane when emulating: A (16x16), B (16x8) and a 32-lane exchange.
pub(crate) const EMULATION_FLOATS_PER_PLANE: usize = 256 + 128 + 32;
const EMU_B: usize = 256;
const EMU_X: usize = 384;

/// `acc += a * b` for one 16x8x16 tile: `a` 4 registers (row-major A layout), `b` 2 registers,
/// `acc` 2 pairs (rows `g` and `g + 8`).
#[cube]
fn mma_acc<F: Float>(
    a: &Array<Pair<F>>,
    b: &Array<Pair<F>>,
    acc: &mut Array<Acc>,
    scratch: &mut SharedMemory<f32>,
    #[comptime] emulate: bool,
) {
    if emulate {
        let lane = UNIT_POS % 32u32;
        let base = (UNIT_POS / 32u32) as usize * EMULATION_FLOATS_PER_PLANE;
        let g = lane / 4u32;
        let t = lane % 4u32;
        #[unroll]
        for r in 0..4u32 {
            let x = a[r as usize];
            #[unroll]
            for e in 0..2u32 {
                let row = g + 8 * (r % 2);
                let col = 2u32 * t + e + 8 * (r / 2);
                scratch[base + (row * 16u32 + col) as usize] = f32::cast_from(x[e as usize]);
            }
        }
        #[unroll]
        for r in 0..2u32 {
            let x = b[r as usize];
            #[unroll]
            for e in 0..2u32 {
                let kk = 2u32 * t + e + 8 * r;
                scratch[base + EMU_B + (kk * 8 + g) as usize] = f32::cast_from(x[e as usize]);
            }
        }
        sync_cube();
        #[unroll]
        for h in 0..2u32 {
            let mut c = acc[h as usize];
            let row = g + 8 * h;
            #[unroll]
            for e in 0..2u32 {
                let col = 2u32 * t + e;
                let mut sum = c[e as usize];
                for kk in 0..16u32 {
                    sum += scratch[base + (row * 16u32 + kk) as usize]
                        * scratch[base + EMU_B + (kk * 8u32 + col) as usize];
                }
                c[e as usize] = sum;
            }
            acc[h as usize] = c;
        }
        sync_cube();
    } else {
        let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
        def.execute_inplace(a, b, acc);
    }
}

/// [`mma_acc`] on accumulator tile `i` of `accs` (pairs `2i` and `2i + 1`).
#[cube]
fn mma_tile<F: Float>(
    a: &Array<Pair<F>>,
    b: &Array<Pair<F>>,
    accs: &mut Array<Acc>,
    #[comptime] i: usize,
    scratch: &mut SharedMemory<f32>,
    #[comptime] emulate: bool,
) {
    let mut c = Array::<Acc>::new(2usize);
    c[0usize] = accs[2 * i];
    c[1usize] = accs[2 * i + 1];
    mma_acc::<F>(a, b, &mut c, scratch, emulate);
    accs[2 * i] = c[0usize];
    accs[2 * i + 1] = c[1usize];
}

/// `x` of the unit whose lane is `lane ^ mask` (within the plane).
#[cube]
fn shuffle_xor(
    x: f32,
    #[comptime] mask: u32,
    scratch: &mut SharedMemory<f32>,
    #[comptime] emulate: bool,
) -> f32 {
    if emulate {
        let lane = UNIT_POS % 32u32;
        let base = (UNIT_POS / 32u32) as usize * EMULATION_FLOATS_PER_PLANE + EMU_X;
        scratch[base + lane as usize] = x;
        sync_cube();
        let y = scratch[base + (lane ^ mask) as usize];
        sync_cube();
        y
    } else {
        plane_shuffle_xor(x, mask)
    }
}

/// `ldmatrix.x4` of four 8x8 matrices of a row-major tile in shared memory (row stride
/// `stride` elements), the block starting at element (`row0`, `col0`). Matrix `i` starts at
/// (`row0 + 8 * (i / 2)`, `col0 + 8 * (i % 2)`) when `k_order`, else at
/// (`row0 + 8 * (i % 2)`, `col0 + 8 * (i / 2)`). Register `i` of lane `l` holds matrix `i`'s
/// elements (`l / 4`, `2 (l % 4) + {0, 1}`), or with `trans` (`2 (l % 4) + {0, 1}`, `l / 4`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn ldsm_x4<F: Float, N: Size>(
    smem: &SharedMemory<Vector<F, N>>,
    row0: u32,
    col0: u32,
    #[comptime] stride: usize,
    #[comptime] k_order: bool,
    #[comptime] trans: bool,
    #[comptime] nv: usize,
    #[comptime] emulate: bool,
) -> Array<Pair<F>> {
    let lane = UNIT_POS % 32u32;
    let mut out = Array::<Pair<F>>::new(4usize);
    if emulate {
        #[unroll]
        for i in 0..4u32 {
            let (mr, mc) = if k_order {
                (8 * (i / 2), 8 * (i % 2))
            } else {
                (8 * (i % 2), 8 * (i / 2))
            };
            let mut x = Pair::<F>::empty();
            #[unroll]
            for e in 0..2u32 {
                let mut row = row0 + mr + lane / 4u32;
                let mut col = col0 + mc + 2u32 * (lane % 4u32) + e;
                if trans {
                    row = row0 + mr + 2u32 * (lane % 4u32) + e;
                    col = col0 + mc + lane / 4u32;
                }
                let idx = (row as usize) * stride + col as usize;
                let v = smem[idx / nv];
                x[e as usize] = v[idx % nv];
            }
            out[i as usize] = x;
        }
    } else {
        let i = lane / 8u32;
        let mut mr = 8u32 * (i % 2u32);
        let mut mc = 8u32 * (i / 2u32);
        if k_order {
            mr = 8u32 * (i / 2u32);
            mc = 8u32 * (i % 2u32);
        }
        let start = ((row0 + mr + lane % 8u32) as usize * stride + (col0 + mc) as usize) / nv;
        let row = smem.slice(start, start + 8 / nv);
        let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
        let regs = def.load_matrix::<Vector<F, N>, Const<2>>(&row, MatrixIdent::A, 4usize, trans);
        #[unroll]
        for r in 0..4usize {
            out[r] = regs[r];
        }
    }
    out
}

/// Copies rows `first..first + rows` of one head of K and of V (row `j` at
/// `k_base + j * k_stride`, resp. `v_base + j * v_stride`; rows at or after `limit`
/// zero-filled) into shared tiles of row stride `sdv` vectors. Each unit issues all of its
/// loads before its stores, so they are in flight together.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_kv<F: Float, N: Size>(
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    sk: &mut SharedMemory<Vector<F, N>>,
    sv: &mut SharedMemory<Vector<F, N>>,
    dst_row: u32,
    k_base: u32,
    k_stride: u32,
    v_base: u32,
    v_stride: u32,
    first: i32,
    limit: i32,
    #[comptime] rows: usize,
    #[comptime] dv: usize,
    #[comptime] sdv: usize,
    #[comptime] threads: usize,
) {
    let per = comptime!((rows * dv).div_ceil(threads));
    let mut kr = Array::<Vector<F, N>>::new(per);
    let mut vr = Array::<Vector<F, N>>::new(per);
    #[unroll]
    for i in 0..per {
        let idx = UNIT_POS as usize + i * threads;
        let j = first + (idx / dv) as i32;
        let mut kx = Vector::<F, N>::new(F::new(0.0));
        let mut vx = Vector::<F, N>::new(F::new(0.0));
        if idx < rows * dv && j < limit {
            kx = k[(k_base + (j as u32) * k_stride) as usize + idx % dv];
            vx = v[(v_base + (j as u32) * v_stride) as usize + idx % dv];
        }
        kr[i] = kx;
        vr[i] = vx;
    }
    #[unroll]
    for i in 0..per {
        let idx = UNIT_POS as usize + i * threads;
        if idx < rows * dv {
            let dst = (dst_row as usize + idx / dv) * sdv + idx % dv;
            sk[dst] = kr[i];
            sv[dst] = vr[i];
        }
    }
}

/// [`load_kv`] with asynchronous copies (`cp.async`, 16 bytes each) into rows
/// `dst_row..` of the tiles; rows at or after `limit` are zero-filled by plain stores. Each unit
/// must then commit its copies to a barrier and wait on it before the tiles are read.
#[cube]
#[allow(clippy::too_many_arguments)]
fn copy_kv_async<F: Float, N: Size>(
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    sk: &mut SharedMemory<Vector<F, N>>,
    sv: &mut SharedMemory<Vector<F, N>>,
    dst_row: u32,
    k_base: u32,
    k_stride: u32,
    v_base: u32,
    v_stride: u32,
    first: i32,
    limit: i32,
    #[comptime] rows: usize,
    #[comptime] dv: usize,
    #[comptime] sdv: usize,
    #[comptime] threads: usize,
) {
    let per = comptime!((rows * dv).div_ceil(threads));
    let nv = N::value();
    #[unroll]
    for i in 0..per {
        let idx = UNIT_POS as usize + i * threads;
        if idx < rows * dv {
            let j = first + (idx / dv) as i32;
            let dst = (dst_row as usize + idx / dv) * sdv + idx % dv;
            if j < limit {
                let ks = (k_base + (j as u32) * k_stride) as usize + idx % dv;
                let vs = (v_base + (j as u32) * v_stride) as usize + idx % dv;
                copy_async(
                    &k.slice(ks, ks + 1),
                    &mut sk.slice_mut(dst, dst + 1),
                    comptime!(nv as u32),
                );
                copy_async(
                    &v.slice(vs, vs + 1),
                    &mut sv.slice_mut(dst, dst + 1),
                    comptime!(nv as u32),
                );
            } else {
                sk[dst] = Vector::<F, N>::new(F::new(0.0));
                sv[dst] = Vector::<F, N>::new(F::new(0.0));
            }
        }
    }
}

/// One tile of keys (`bk` rows of K and V from row `stage_row` of the shared tiles, keys
/// `j0..`): `S = Q K^T`, masking, the online-softmax update of `stats` (`m0, m1, l0, l1` of the
/// unit's two rows) and `O += P V`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn tile_math<F: Float, N: Size>(
    sq: &SharedMemory<Vector<F, N>>,
    sk: &SharedMemory<Vector<F, N>>,
    sv: &SharedMemory<Vector<F, N>>,
    stage_row: u32,
    qf: &Array<Pair<F>>,
    s_acc: &mut Array<Acc>,
    o_acc: &mut Array<Acc>,
    stats: &mut Array<f32>,
    scratch: &mut SharedMemory<f32>,
    j0: i32,
    bounds: &Array<i32>,
    layout: &FlashLayout,
    #[comptime] cfg: FlashConfig,
) {
    let d = cfg.head_dim;
    let nv = cfg.vec;
    let bk = cfg.block_k;
    let sd = d + 8;
    let emulate = cfg.emulate;
    let q_in_regs = d <= 128;
    let lane = UNIT_POS % 32u32;
    let plane = UNIT_POS / 32u32;
    let t = lane % 4u32;
    let lo0 = bounds[0usize];
    let hi0 = bounds[1usize];
    let lo1 = bounds[2usize];
    let hi1 = bounds[3usize];
    let lo_all = bounds[4usize];
    let hi_all = bounds[5usize];
    let mut m0 = stats[0usize];
    let mut m1 = stats[1usize];
    let mut l0 = stats[2usize];
    let mut l1 = stats[3usize];

    // S = Q K^T.
    #[unroll]
    for i in 0..bk / 8 * 2 {
        s_acc[i] = Acc::new(0.0);
    }
    #[unroll]
    for kk in 0..d / 16 {
        let mut a = Array::<Pair<F>>::new(4usize);
        if q_in_regs {
            #[unroll]
            for r in 0..4usize {
                a[r] = qf[kk * 4 + r];
            }
        } else {
            let f = ldsm_x4::<F, N>(
                sq,
                plane * 16u32,
                (kk * 16) as u32,
                sd,
                false,
                false,
                nv,
                emulate,
            );
            #[unroll]
            for r in 0..4usize {
                a[r] = f[r];
            }
        }
        #[unroll]
        for np in 0..bk / 16 {
            let b4 = ldsm_x4::<F, N>(
                sk,
                stage_row + (np * 16) as u32,
                (kk * 16) as u32,
                sd,
                true,
                false,
                nv,
                emulate,
            );
            let mut b = Array::<Pair<F>>::new(2usize);
            b[0usize] = b4[0usize];
            b[1usize] = b4[1usize];
            mma_tile::<F>(&a, &b, s_acc, 2 * np, scratch, emulate);
            b[0usize] = b4[2usize];
            b[1usize] = b4[3usize];
            mma_tile::<F>(&a, &b, s_acc, 2 * np + 1, scratch, emulate);
        }
    }

    // Scale, soft-cap, mask; row maxima.
    let full = j0 >= lo_all && j0 + (bk as i32) <= hi_all;
    let mut mx0 = f32::new(NEG);
    let mut mx1 = f32::new(NEG);
    #[unroll]
    for nt in 0..bk / 8 {
        #[unroll]
        for h in 0..2usize {
            let mut x = s_acc[2 * nt + h];
            #[unroll]
            for e in 0..2usize {
                let mut s = transform_score(x[e], layout.scale, layout.softcap, cfg.softcap);
                if !full {
                    let key = j0 + (nt * 8 + e) as i32 + 2i32 * t as i32;
                    let (lo, hi) = if h == 0 { (lo0, hi0) } else { (lo1, hi1) };
                    s = select(key >= lo && key < hi, s, f32::new(NEG));
                }
                x[e] = s;
                if h == 0 {
                    mx0 = max(mx0, s);
                } else {
                    mx1 = max(mx1, s);
                }
            }
            s_acc[2 * nt + h] = x;
        }
    }
    mx0 = max(mx0, shuffle_xor(mx0, 1u32, scratch, emulate));
    mx0 = max(mx0, shuffle_xor(mx0, 2u32, scratch, emulate));
    mx1 = max(mx1, shuffle_xor(mx1, 1u32, scratch, emulate));
    mx1 = max(mx1, shuffle_xor(mx1, 2u32, scratch, emulate));

    let m_new0 = max(m0, mx0);
    let m_new1 = max(m1, mx1);
    let mu0 = select(m_new0 > NEG_HALF, m_new0, 0.0f32);
    let mu1 = select(m_new1 > NEG_HALF, m_new1, 0.0f32);
    let alpha0 = (m0 - mu0).exp();
    let alpha1 = (m1 - mu1).exp();
    m0 = m_new0;
    m1 = m_new1;

    // Probabilities (masked keys exactly zero) and this unit's partial row sums.
    let mut rs0 = 0.0f32;
    let mut rs1 = 0.0f32;
    #[unroll]
    for nt in 0..bk / 8 {
        #[unroll]
        for h in 0..2usize {
            let mut x = s_acc[2 * nt + h];
            let mu = if h == 0 { mu0 } else { mu1 };
            #[unroll]
            for e in 0..2usize {
                let p = select(x[e] > NEG_HALF, (x[e] - mu).exp(), 0.0f32);
                x[e] = p;
                if h == 0 {
                    rs0 += p;
                } else {
                    rs1 += p;
                }
            }
            s_acc[2 * nt + h] = x;
        }
    }
    l0 = l0 * alpha0 + rs0;
    l1 = l1 * alpha1 + rs1;
    #[unroll]
    for dt in 0..d / 8 {
        o_acc[2 * dt] = o_acc[2 * dt] * Acc::new(alpha0);
        o_acc[2 * dt + 1] = o_acc[2 * dt + 1] * Acc::new(alpha1);
    }

    // O += P V.
    #[unroll]
    for kk in 0..bk / 16 {
        let mut pa = Array::<Pair<F>>::new(4usize);
        pa[0usize] = Pair::<F>::cast_from(s_acc[4 * kk]);
        pa[1usize] = Pair::<F>::cast_from(s_acc[4 * kk + 1]);
        pa[2usize] = Pair::<F>::cast_from(s_acc[4 * kk + 2]);
        pa[3usize] = Pair::<F>::cast_from(s_acc[4 * kk + 3]);
        #[unroll]
        for dp in 0..d / 16 {
            let b4 = ldsm_x4::<F, N>(
                sv,
                stage_row + (kk * 16) as u32,
                (dp * 16) as u32,
                sd,
                false,
                true,
                nv,
                emulate,
            );
            let mut b = Array::<Pair<F>>::new(2usize);
            b[0usize] = b4[0usize];
            b[1usize] = b4[1usize];
            mma_tile::<F>(&pa, &b, o_acc, 2 * dp, scratch, emulate);
            b[0usize] = b4[2usize];
            b[1usize] = b4[3usize];
            mma_tile::<F>(&pa, &b, o_acc, 2 * dp + 1, scratch, emulate);
        }
    }

    stats[0usize] = m0;
    stats[1usize] = m1;
    stats[2usize] = l0;
    stats[3usize] = l1;
}

/// The tensor-core flash kernel (see the module documentation).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn flash_mma<F: Float, N: Size>(
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
    let planes = bq / 16;
    let threads = planes * 32;
    // Shared-memory row stride: 8 elements (16 bytes) of padding per row.
    let sd = d + 8;
    let sdv = sd / nv;
    let emulate = cfg.emulate;
    let q_in_regs = d <= 128;

    let plan = plan_block(seqs, &layout, cfg);
    if plan.row1 <= plan.row0 {
        terminate!();
    }

    let lane = UNIT_POS % 32u32;
    let plane = UNIT_POS / 32u32;
    let g = lane / 4u32;
    let t = lane % 4u32;

    let mut sq = SharedMemory::<Vector<F, N>>::new_aligned(bq * sdv, 16usize);
    let stages = comptime!(if cfg.pipelined { 2usize } else { 1usize });
    let mut sk = SharedMemory::<Vector<F, N>>::new_aligned(stages * bk * sdv, 16usize);
    let mut sv = SharedMemory::<Vector<F, N>>::new_aligned(stages * bk * sdv, 16usize);
    let mut scratch = SharedMemory::<f32>::new(comptime!(if emulate {
        planes * EMULATION_FLOATS_PER_PLANE
    } else {
        1
    }));

    // The block's queries, rows beyond the sequence zero-filled.
    let mut idx = UNIT_POS as usize;
    while idx < bq * dv {
        let r = (idx / dv) as u32;
        let c = idx % dv;
        let row = plan.row0 + r;
        let mut x = Vector::<F, N>::new(F::new(0.0));
        if row < plan.row1 {
            let qpos = row / layout.group;
            let head = plan.kv_head * layout.group + row % layout.group;
            x = q[(plan.q_base + qpos * layout.q_stride_t + head * layout.q_stride_h) as usize + c];
        }
        sq[(r as usize) * sdv + c] = x;
        idx += threads;
    }
    sync_cube();

    let mut qf = Array::<Pair<F>>::new(comptime!(if q_in_regs { d / 16 * 4 } else { 4 }));
    if q_in_regs {
        #[unroll]
        for kk in 0..d / 16 {
            let f = ldsm_x4::<F, N>(
                &sq,
                plane * 16u32,
                (kk * 16) as u32,
                sd,
                false,
                false,
                nv,
                emulate,
            );
            #[unroll]
            for r in 0..4usize {
                qf[kk * 4 + r] = f[r];
            }
        }
    }

    // Visible keys of this unit's two rows.
    let row_a = plan.row0 + plane * 16u32 + g;
    let (lo0, hi0) = key_range(
        (row_a / layout.group) as i32,
        plan.q_len as i32,
        plan.k_len as i32,
        layout.window_left,
        layout.window_right,
        cfg.causal,
        cfg.window,
    );
    let (lo1, hi1) = key_range(
        ((row_a + 8u32) / layout.group) as i32,
        plan.q_len as i32,
        plan.k_len as i32,
        layout.window_left,
        layout.window_right,
        cfg.causal,
        cfg.window,
    );
    // Keys every row of the block sees: tiles inside need no masking.
    let (lo_all, _h) = key_range(
        ((plan.row1 - 1u32) / layout.group) as i32,
        plan.q_len as i32,
        plan.k_len as i32,
        layout.window_left,
        layout.window_right,
        cfg.causal,
        cfg.window,
    );
    let (_l, hi_all) = key_range(
        (plan.row0 / layout.group) as i32,
        plan.q_len as i32,
        plan.k_len as i32,
        layout.window_left,
        layout.window_right,
        cfg.causal,
        cfg.window,
    );

    let mut bounds = Array::<i32>::new(6usize);
    bounds[0usize] = lo0;
    bounds[1usize] = hi0;
    bounds[2usize] = lo1;
    bounds[3usize] = hi1;
    bounds[4usize] = lo_all;
    bounds[5usize] = hi_all;
    let mut stats = Array::<f32>::new(4usize);
    stats[0usize] = f32::new(NEG);
    stats[1usize] = f32::new(NEG);
    stats[2usize] = 0.0f32;
    stats[3usize] = 0.0f32;
    let mut o_acc = Array::<Acc>::new(d / 8 * 2);
    #[unroll]
    for i in 0..d / 8 * 2 {
        o_acc[i] = Acc::new(0.0);
    }
    let mut s_acc = Array::<Acc>::new(bk / 8 * 2);

    let k_head = plan.k_base + plan.kv_head * layout.k_stride_h;
    let v_head = plan.v_base + plan.kv_head * layout.v_stride_h;

    if cfg.pipelined && !emulate {
        // Two K/V stages filled by asynchronous copies: tile t + 1 is in flight while tile t
        // is computed.
        let bar0 = Barrier::shared(threads as u32, UNIT_POS == 0u32);
        let bar1 = Barrier::shared(threads as u32, UNIT_POS == 0u32);
        sync_cube();
        if plan.tile_begin < plan.tile_end {
            copy_kv_async::<F, N>(
                k,
                v,
                &mut sk,
                &mut sv,
                0u32,
                k_head,
                layout.k_stride_t,
                v_head,
                layout.v_stride_t,
                plan.kv_lo + (plan.tile_begin * bk as u32) as i32,
                plan.k_len as i32,
                bk,
                dv,
                sdv,
                threads,
            );
            bar0.commit_copy_async();
        }
        for tile in plan.tile_begin..plan.tile_end {
            let j0 = plan.kv_lo + (tile * bk as u32) as i32;
            let stage = (tile - plan.tile_begin) % 2u32;
            if tile + 1u32 < plan.tile_end {
                copy_kv_async::<F, N>(
                    k,
                    v,
                    &mut sk,
                    &mut sv,
                    (1u32 - stage) * bk as u32,
                    k_head,
                    layout.k_stride_t,
                    v_head,
                    layout.v_stride_t,
                    j0 + bk as i32,
                    plan.k_len as i32,
                    bk,
                    dv,
                    sdv,
                    threads,
                );
                if stage == 0u32 {
                    bar1.commit_copy_async();
                } else {
                    bar0.commit_copy_async();
                }
            }
            if stage == 0u32 {
                bar0.arrive_and_wait();
            } else {
                bar1.arrive_and_wait();
            }
            tile_math::<F, N>(
                &sq,
                &sk,
                &sv,
                stage * bk as u32,
                &qf,
                &mut s_acc,
                &mut o_acc,
                &mut stats,
                &mut scratch,
                j0,
                &bounds,
                &layout,
                cfg,
            );
            sync_cube();
        }
    } else {
        for tile in plan.tile_begin..plan.tile_end {
            let j0 = plan.kv_lo + (tile * bk as u32) as i32;
            // With `pipelined` (emulated), alternate stages as the asynchronous path does.
            let mut stage = 0u32;
            if cfg.pipelined {
                stage = (tile - plan.tile_begin) % 2u32;
            }
            sync_cube();
            load_kv::<F, N>(
                k,
                v,
                &mut sk,
                &mut sv,
                stage * bk as u32,
                k_head,
                layout.k_stride_t,
                v_head,
                layout.v_stride_t,
                j0,
                plan.k_len as i32,
                bk,
                dv,
                sdv,
                threads,
            );
            sync_cube();
            tile_math::<F, N>(
                &sq,
                &sk,
                &sv,
                stage * bk as u32,
                &qf,
                &mut s_acc,
                &mut o_acc,
                &mut stats,
                &mut scratch,
                j0,
                &bounds,
                &layout,
                cfg,
            );
        }
    }

    let m0 = stats[0usize];
    let m1 = stats[1usize];
    let mut l0 = stats[2usize];
    let mut l1 = stats[3usize];
    // Full row sums over the quad; normalize.
    l0 += shuffle_xor(l0, 1u32, &mut scratch, emulate);
    l0 += shuffle_xor(l0, 2u32, &mut scratch, emulate);
    l1 += shuffle_xor(l1, 1u32, &mut scratch, emulate);
    l1 += shuffle_xor(l1, 2u32, &mut scratch, emulate);
    let inv0 = select(l0 > 0.0, 1.0 / l0, 0.0f32);
    let inv1 = select(l1 > 0.0, 1.0 / l1, 0.0f32);

    if cfg.split {
        #[unroll]
        for h in 0..2u32 {
            let row = row_a + 8u32 * h;
            if row < plan.row1 {
                let pr = partial_row(row, &layout) as usize;
                let inv = if h == 0 { inv0 } else { inv1 };
                #[unroll]
                for dt in 0..d / 8 {
                    let x = o_acc[2 * dt + h as usize];
                    let col = dt * 8 + 2usize * t as usize;
                    part_o[pr * d + col] = x[0usize] * inv;
                    part_o[pr * d + col + 1] = x[1usize] * inv;
                }
                if t == 0u32 {
                    let m = if h == 0 { m0 } else { m1 };
                    let l = if h == 0 { l0 } else { l1 };
                    let mu = select(m > NEG_HALF, m, 0.0f32);
                    part_lse[pr] = select(l > 0.0, mu + l.ln(), f32::new(NEG));
                }
            }
        }
    } else {
        // Stage the block's output in shared memory, then store whole vectors.
        let mut so = SharedMemory::<Pair<F>>::new_aligned(bq * sd / 2, 16usize);
        #[unroll]
        for dt in 0..d / 8 {
            let col = dt * 8 + 2usize * t as usize;
            let r0 = (plane * 16u32 + g) as usize;
            so[(r0 * sd + col) / 2] = Pair::<F>::cast_from(o_acc[2 * dt] * Acc::new(inv0));
            so[((r0 + 8) * sd + col) / 2] =
                Pair::<F>::cast_from(o_acc[2 * dt + 1] * Acc::new(inv1));
        }
        sync_cube();
        let mut idx = UNIT_POS as usize;
        while idx < bq * dv {
            let r = (idx / dv) as u32;
            let c = idx % dv;
            let row = plan.row0 + r;
            if row < plan.row1 {
                let qpos = row / layout.group;
                let head = plan.kv_head * layout.group + row % layout.group;
                let mut x = Vector::<F, N>::new(F::new(0.0));
                #[unroll]
                for e in 0..nv {
                    let el = (r as usize) * sd + c * nv + e;
                    let pair = so[el / 2];
                    x[e] = pair[el % 2];
                }
                out[(plan.o_base + qpos * layout.o_stride_t + head * layout.o_stride_h) as usize
                    + c] = x;
            }
            idx += threads;
        }
    }
}
