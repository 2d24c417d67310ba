//! Code tables: NF4, FP4 and bitsandbytes' signed dynamic 8-bit map.

use std::sync::OnceLock;

/// The NF4 code table (index = 4-bit code; sorted), as `bitsandbytes.functional.get_4bit_type("nf4")`.
pub fn nf4_code() -> &'static [f32; 16] {
    static TABLE: OnceLock<[f32; 16]> = OnceLock::new();
    TABLE.get_or_init(|| {
        // bnb builds a float32 tensor from Python floats (f64), so round from f64.
        const NF4: [f64; 16] = [
            -1.0,
            -0.6961928009986877,
            -0.5250730514526367,
            -0.39491748809814453,
            -0.28444138169288635,
            -0.18477343022823334,
            -0.09105003625154495,
            0.0,
            0.07958029955625534,
            0.16093020141124725,
            0.24611230194568634,
            0.33791524171829224,
            0.44070982933044434,
            0.5626170039176941,
            0.7229568362236023,
            1.0,
        ];
        NF4.map(|v| v as f32)
    })
}

/// The FP4 code table in bit-pattern order (bit 3 = sign), as `get_4bit_type("fp4")`.
pub fn fp4_code() -> &'static [f32; 16] {
    static TABLE: OnceLock<[f32; 16]> = OnceLock::new();
    TABLE.get_or_init(|| {
        // e2m1 with bnb's bias, normalized by its largest magnitude (12) in f32. bnb writes the
        // negative zero as the Python integer `-0`, which is +0.0: code 8 dequantizes to +0.0.
        const RAW: [f32; 16] = [
            0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0.0, -0.0625, -8.0, -12.0, -4.0, -6.0,
            -2.0, -3.0,
        ];
        RAW.map(|v| v / 12.0)
    })
}

/// Nearest-code search for a 4-bit table: midpoints between value-sorted codes, and the code
/// of each sorted position.
#[derive(Debug, Clone)]
pub(crate) struct FourBitSearch {
    /// 15 midpoints, then `+inf` so that a 4-step branch-free search needs no bounds check.
    pub bounds: [f32; 16],
    /// Sorted position -> 4-bit code.
    pub order: [u8; 16],
}

impl FourBitSearch {
    fn new(code: &[f32; 16], order: [u8; 16]) -> Self {
        let mut bounds = [f32::INFINITY; 16];
        for i in 0..15 {
            let (a, b) = (code[order[i] as usize], code[order[i + 1] as usize]);
            bounds[i] = (a + b) / 2.0;
        }
        FourBitSearch { bounds, order }
    }

    /// `torch.bucketize(x, bounds, right=False)`: the number of midpoints strictly below `x`,
    /// so a value exactly on a midpoint goes to the lower code.
    #[inline(always)]
    pub fn position(&self, x: f32) -> usize {
        let b = &self.bounds;
        let mut i = 0usize;
        i += ((b[i + 7] < x) as usize) << 3;
        i += ((b[i + 3] < x) as usize) << 2;
        i += ((b[i + 1] < x) as usize) << 1;
        i += (b[i] < x) as usize;
        i
    }
}

pub(crate) fn nf4_search() -> &'static FourBitSearch {
    static SEARCH: OnceLock<FourBitSearch> = OnceLock::new();
    SEARCH.get_or_init(|| {
        FourBitSearch::new(
            nf4_code(),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        )
    })
}

pub(crate) fn fp4_search() -> &'static FourBitSearch {
    static SEARCH: OnceLock<FourBitSearch> = OnceLock::new();
    // `torch.argsort` of the FP4 table as bnb 0.50.2 computes it on CPU; +0.0 (code 0) and -0.0
    // (code 8) tie, and torch puts code 0 first. So 0 and small negative values get code 0, small
    // positive ones code 8 (the sign-bit zero): quirky, and exactly what bnb writes.
    SEARCH.get_or_init(|| {
        FourBitSearch::new(
            fp4_code(),
            [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3],
        )
    })
}

/// bitsandbytes' signed dynamic 8-bit map, `create_dynamic_map(signed=True)`: 256 sorted f32
/// values in [-1, 1], bit-identical to bnb's (it backs double quantization).
pub fn dynamic_map() -> &'static [f32; 256] {
    static MAP: OnceLock<[f32; 256]> = OnceLock::new();
    MAP.get_or_init(build_dynamic_map)
}

/// `torch.linspace(0.1, 1, steps, dtype=float32)` on CPU: torch evaluates `start + step * i`
/// for the first half and `end - step * (steps - 1 - i)` for the rest, with fused multiply-adds.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

fn build_dynamic_map() -> [f32; 256] {
    // signed=True, max_exponent_bits=7, total_bits=8: no "additional items".
    const SCALES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data: Vec<f32> = Vec::with_capacity(256);
    for (i, scale) in SCALES.iter().enumerate() {
        let boundaries = torch_linspace_f32(0.1, 1.0, (1 << i) + 1);
        // The Python scalar is cast to f32 before the f32 multiply.
        let s = *scale as f32;
        let means: Vec<f32> = boundaries.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        data.extend(means.iter().map(|m| s * m));
        data.extend(means.iter().map(|m| -s * m));
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    let mut out = [0.0f32; 256];
    out.copy_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_matches_linear_count() {
        for search in [nf4_search(), fp4_search()] {
            for k in -2000..=2000 {
                let x = k as f32 / 1000.0;
                let count = search.bounds[..15].iter().filter(|b| **b < x).count();
                assert_eq!(search.position(x), count, "x = {x}");
            }
            for b in &search.bounds[..15] {
                let count = search.bounds[..15].iter().filter(|c| *c < b).count();
                assert_eq!(search.position(*b), count, "on midpoint {b}");
            }
        }
    }

    #[test]
    fn dynamic_map_shape() {
        let map = dynamic_map();
        // 1.0 is in the map, -1.0 is not: the most negative entry is a mean of two boundaries.
        assert!(map[0] > -1.0 && map[0] < -0.99);
        assert_eq!(map[255], 1.0);
        assert_eq!(map.iter().filter(|v| **v == 0.0).count(), 1);
        assert!(map.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }
}
