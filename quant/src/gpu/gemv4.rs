//! Fused 4-bit GEMV / skinny GEMM: `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`, reading the
//! packed codes and the (double-quantized) absmax directly, accumulating in f32.

use cubecl::prelude::*;

use super::dequant::block_scale;

/// Codes per 16-byte chunk of a weight row.
pub(crate) const CHUNK: usize = 32;

/// Sums each of the `count` per-unit accumulators over the 32 units of the unit's plane and
/// leaves the totals in `totals[plane * count + i]` (visible to the whole cube on return).
/// With plane operations: one `plane_sum` each. Without: through shared memory (`partial`
/// holds `planes * count * 32` values), one unit summing each total.
#[cube]
pub(crate) fn plane_totals<E: Numeric>(
    acc: &Array<E>,
    totals: &mut SharedMemory<E>,
    partial: &mut SharedMemory<E>,
    #[comptime] count: usize,
    #[comptime] use_plane: bool,
) {
    let lane = UNIT_POS_X as usize;
    let base = (UNIT_POS_Y as usize) * count;
    if comptime!(use_plane) {
        #[unroll]
        for i in 0..count {
            let total = plane_sum(acc[i]);
            if lane == comptime!(i % 32) {
                totals[base + i] = total;
            }
        }
    } else {
        #[unroll]
        for i in 0..count {
            partial[(base + i) * 32 + lane] = acc[i];
        }
        sync_cube();
        let mut i = lane;
        while i < count {
            let mut total = E::from_int(0);
            for l in 0..32usize {
                total += partial[(base + i) * 32 + l];
            }
            totals[base + i] = total;
            i += 32;
        }
    }
    sync_cube();
}

/// The total of output `i` over the `split` planes from `first` on (split-K: planes that shared
/// their rows), from the per-plane totals [`plane_totals`] left in `totals`.
#[cube]
pub(crate) fn split_total<E: Numeric>(
    totals: &SharedMemory<E>,
    first: usize,
    i: usize,
    #[comptime] count: usize,
    #[comptime] split: usize,
) -> E {
    let mut v = E::from_int(0);
    #[unroll]
    for p in 0..split {
        v += totals[(first + p) * count + i];
    }
    v
}

/// The fused kernel. A cube is `32 x planes` units; each plane of 32 owns `rows` consecutive
/// weight rows, each unit a 16-byte chunk (32 codes) of every one of them per step, so that a
/// plane reads 512 contiguous bytes of a row per load. The x values of a chunk are loaded once
/// per step for all rows. Cubes stride over the row groups.
///
/// Requires `k % blocksize == 0` (so `k % 32 == 0` and blocks never straddle rows).
#[cube(launch_unchecked)]
pub(crate) fn gemv4_kernel<F: Float, NX: Size>(
    packed: &Array<Vector<u32, Const<4>>>,
    absmax: &Array<f32>,
    nested_codes: &Array<u32>,
    nested_absmax: &Array<f32>,
    nested_code: &Array<f32>,
    code: &Array<f32>,
    x: &Array<Vector<F, NX>>,
    bias: &Array<F>,
    y: &mut Array<F>,
    n_rows: u32,
    k: u32,
    offset: f32,
    block_shift: u32,
    #[comptime] m: usize,
    #[comptime] rows: usize,
    #[comptime] planes: usize,
    #[comptime] depth: usize,
    #[comptime] nested: bool,
    #[comptime] has_bias: bool,
    #[comptime] pair_copies: usize,
    #[comptime] use_plane: bool,
    #[comptime] factor_scale: bool,
    #[comptime] split: usize,
) {
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let threads = CUBE_DIM as usize;
    let t = UNIT_POS as usize;

    // Code tables in shared memory: 16 single codes, or 256 byte-indexed pairs replicated
    // `pair_copies` times so that the units of a half-plane hit distinct banks.
    let mut table = SharedMemory::<f32>::new(16usize);
    let mut pairs = SharedMemory::<Vector<f32, Const<2>>>::new(comptime!(256 * pair_copies.max(1)));
    let mut nested_table = SharedMemory::<f32>::new(if nested { 256usize } else { 1usize });
    let mut totals = SharedMemory::<f32>::new(comptime!(planes * rows * m));
    let mut partial = SharedMemory::<f32>::new(if use_plane {
        1usize
    } else {
        comptime!(planes * rows * m * 32)
    });
    let mut i = t;
    while i < 16 {
        table[i] = code[i];
        i += threads;
    }
    if comptime!(pair_copies > 0) {
        let mut e = t;
        while e < 256 * pair_copies {
            let byte = e / pair_copies;
            let mut p = Vector::<f32, Const<2>>::empty();
            p[0] = code[byte / 16];
            p[1] = code[byte % 16];
            pairs[e] = p;
            e += threads;
        }
    }
    if comptime!(nested) {
        let mut j = t;
        while j < 256 {
            nested_table[j] = nested_code[j];
            j += threads;
        }
    }
    sync_cube();

    let n = n_rows as usize;
    let kk = k as usize;
    let chunks = kk / CHUNK;
    let blocks_per_row = kk >> block_shift as usize;
    let vx = x.vector_size();
    let x_row = kk / vx;
    // `split` consecutive planes share their rows and split each row's chunks between them.
    let set = warp / split;
    let kpart = warp % split;
    let group_rows = comptime!(planes / split * rows);
    let groups = n.div_ceil(group_rows);
    let copy = lane % comptime!(pair_copies.max(1));

    let mut g = CUBE_POS;
    while g < groups {
        let row0 = g * group_rows + set * rows;
        let mut row_of = Array::<usize>::new(rows);
        #[unroll]
        for r in 0..rows {
            row_of[r] = min(row0 + r, n - 1);
        }
        let mut acc = Array::<f32>::new(comptime!(rows * m));
        let mut part = Array::<f32>::new(comptime!(rows * m));
        #[unroll]
        for i in 0..comptime!(rows * m) {
            acc[i] = 0.0;
        }

        let mut c = lane + kpart * comptime!(32 * depth);
        while c < chunks {
            // Issue the 16-byte loads of `depth` chunks of every row before decoding any.
            let mut w = Array::<u32>::new(comptime!(depth * rows * 4));
            let mut scale = Array::<f32>::new(comptime!(depth * rows));
            let mut kbase = Array::<usize>::new(depth);
            #[unroll]
            for d in 0..depth {
                let cd = c + d * 32;
                // Past the row's end: re-read this unit's first chunk, with a zero scale.
                let cc = select(cd < chunks, cd, c);
                kbase[d] = cc * CHUNK;
                #[unroll]
                for r in 0..rows {
                    let v = packed[row_of[r] * chunks + cc];
                    #[unroll]
                    for j in 0..4usize {
                        w[(d * rows + r) * 4 + j] = v[j];
                    }
                }
            }
            #[unroll]
            for d in 0..depth {
                let valid = c + d * 32 < chunks;
                #[unroll]
                for r in 0..rows {
                    let s = block_scale(
                        row_of[r] * blocks_per_row + (kbase[d] >> block_shift as usize),
                        absmax,
                        nested_codes,
                        nested_absmax,
                        &nested_table,
                        offset,
                        nested,
                    );
                    scale[d * rows + r] = select(valid, s, 0.0f32);
                }
            }
            #[unroll]
            for d in 0..depth {
                let k0 = kbase[d];
                if comptime!(factor_scale) {
                    #[unroll]
                    for i in 0..comptime!(rows * m) {
                        part[i] = 0.0;
                    }
                }
                #[unroll]
                for j in 0..4usize {
                    // Decode 8 codes of each row.
                    let mut q = Array::<f32>::new(comptime!(rows * 8));
                    #[unroll]
                    for r in 0..rows {
                        let word = w[(d * rows + r) * 4 + j];
                        if comptime!(pair_copies > 0) {
                            #[unroll]
                            for b in 0..4usize {
                                let byte = (word >> comptime!(8 * b as u32)) & 0xFF;
                                let p =
                                    pairs[(byte as usize) * comptime!(pair_copies.max(1)) + copy];
                                q[r * 8 + 2 * b] = p[0];
                                q[r * 8 + 2 * b + 1] = p[1];
                            }
                        } else {
                            #[unroll]
                            for e in 0..8usize {
                                let shift = comptime!(((e / 2) * 8 + 4 * (1 - e % 2)) as u32);
                                q[r * 8 + e] = table[((word >> shift) & 0xF) as usize];
                            }
                        }
                        if comptime!(!factor_scale) {
                            #[unroll]
                            for e in 0..8usize {
                                q[r * 8 + e] *= scale[d * rows + r];
                            }
                        }
                    }
                    #[unroll]
                    for mi in 0..m {
                        let mut xf = Array::<f32>::new(8usize);
                        let xbase = mi * x_row + (k0 + j * 8) / vx;
                        #[unroll]
                        for v in 0..comptime!(8 / vx) {
                            let xv = Vector::<f32, NX>::cast_from(x[xbase + v]);
                            #[unroll]
                            for e in 0..vx {
                                xf[v * vx + e] = xv[e];
                            }
                        }
                        #[unroll]
                        for r in 0..rows {
                            let mut s = if comptime!(factor_scale) {
                                part[r * m + mi]
                            } else {
                                acc[r * m + mi]
                            };
                            #[unroll]
                            for e in 0..8usize {
                                s = fma(xf[e], q[r * 8 + e], s);
                            }
                            if comptime!(factor_scale) {
                                part[r * m + mi] = s;
                            } else {
                                acc[r * m + mi] = s;
                            }
                        }
                    }
                }
                if comptime!(factor_scale) {
                    #[unroll]
                    for r in 0..rows {
                        #[unroll]
                        for mi in 0..m {
                            acc[r * m + mi] =
                                fma(part[r * m + mi], scale[d * rows + r], acc[r * m + mi]);
                        }
                    }
                }
            }
            c += comptime!(32 * depth * split);
        }

        plane_totals(
            &acc,
            &mut totals,
            &mut partial,
            comptime!(rows * m),
            use_plane,
        );
        if kpart == 0 {
            let mut i = lane;
            while i < comptime!(rows * m) {
                let r = i / m;
                let mi = i % m;
                let row = row0 + r;
                if row < n {
                    let mut v = split_total(&totals, warp, i, comptime!(rows * m), split);
                    if comptime!(has_bias) {
                        v += f32::cast_from(bias[row]);
                    }
                    y[mi * n + row] = F::cast_from(v);
                }
                i += 32;
            }
        }
        sync_cube();
        g += CUBE_COUNT;
    }
}
