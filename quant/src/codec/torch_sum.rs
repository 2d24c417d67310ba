//! torch's single-threaded CPU `sum` for contiguous f32, reproduced to the bit.
//!
//! bitsandbytes' double quantization subtracts `absmax.mean()`, so the offset it stores is what
//! torch's reduction kernel computes: 8-lane vector accumulators, 4-way instruction-level
//! parallelism and a 4-level cascade (`multi_row_sum` in ATen's SumKernel.cpp), lanes folded
//! left to right after a scalar tail, and `mean = sum / n` in f32.

const LANES: usize = 8;
const ILP: usize = 4;
const LEVELS: usize = 4;

fn ceil_log2(x: usize) -> usize {
    if x <= 1 {
        0
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

// The indexed loops mirror ATen's code, which keeps the summation order easy to compare.
#[allow(clippy::needless_range_loop)]
/// `multi_row_sum<acc, nrows=ILP>` over `rows` rows of `ILP * width` values each.
fn multi_row_sum<const W: usize>(data: &[f32], rows: usize) -> [[f32; W]; ILP] {
    let level_power = 4usize.max(ceil_log2(rows) / LEVELS);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0.0f32; W]; ILP]; LEVELS];
    let load = |acc0: &mut [[f32; W]; ILP], row: usize| {
        for (k, lane_acc) in acc0.iter_mut().enumerate() {
            let base = (row * ILP + k) * W;
            for (l, a) in lane_acc.iter_mut().enumerate() {
                *a += data[base + l];
            }
        }
    };
    let mut i = 0usize;
    while i + level_step <= rows {
        for _ in 0..level_step {
            load(&mut acc[0], i);
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..ILP {
                for l in 0..W {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0;
                }
            }
            let mask = level_mask << (j * level_power);
            if i & mask != 0 {
                break;
            }
        }
    }
    while i < rows {
        load(&mut acc[0], i);
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..ILP {
            for l in 0..W {
                acc[0][k][l] += acc[j][k][l];
            }
        }
    }
    acc[0]
}

#[allow(clippy::needless_range_loop)]
/// `row_sum`: groups of `ILP` vectors through the cascade, leftover vectors into the first
/// accumulator, then the accumulators folded in order.
fn row_sum<const W: usize>(data: &[f32], vectors: usize) -> [f32; W] {
    let groups = vectors / ILP;
    let mut partial = multi_row_sum::<W>(data, groups);
    for v in groups * ILP..vectors {
        for l in 0..W {
            partial[0][l] += data[v * W + l];
        }
    }
    for k in 1..ILP {
        for l in 0..W {
            partial[0][l] += partial[k][l];
        }
    }
    partial[0]
}

/// torch's `x.sum()` for a contiguous 1-D f32 tensor, single-threaded.
pub(crate) fn torch_sum_f32(x: &[f32]) -> f32 {
    let n = x.len();
    if n < LANES {
        // Too short for a vector: the scalar path runs the same cascade on width-1 "vectors".
        return row_sum::<1>(x, n)[0];
    }
    let vectors = n / LANES;
    let lanes = row_sum::<LANES>(&x[..vectors * LANES], vectors);
    let mut total = 0.0f32;
    for v in &x[vectors * LANES..] {
        total += v;
    }
    for l in lanes {
        total += l;
    }
    total
}

/// torch's `x.mean()` for a contiguous 1-D f32 tensor, single-threaded.
pub(crate) fn torch_mean_f32(x: &[f32]) -> f32 {
    torch_sum_f32(x) / x.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sums_are_exact_on_integers() {
        for n in 0..300usize {
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(
                torch_sum_f32(&x),
                (n * n.saturating_sub(1) / 2) as f32,
                "n = {n}"
            );
        }
    }

    #[test]
    fn order_is_not_sequential() {
        // 1e8 absorbs a following 1.0 in f32; the cascade adds the ones in another order than a
        // left-to-right loop, so the two differ.
        let mut x = vec![1.0f32; 64];
        x[0] = 1e8;
        let sequential: f32 = x.iter().sum();
        assert_eq!(sequential, 1e8);
        assert_ne!(torch_sum_f32(&x), sequential);
    }
}
