//! Random cases and the f64 reference for the flash kernel tests.
#![allow(dead_code)]

use kiln_attention::FlashParams;

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    pub fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// One attention problem in the padded `[batch, heads, len, head_dim]` layout.
#[derive(Debug, Clone)]
pub struct Case {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub head_dim: usize,
    pub scale: f64,
    pub causal: bool,
    pub window_left: i64,
    pub window_right: i64,
    pub softcap: f64,
    pub key_lens: Option<Vec<usize>>,
    pub splits: Option<usize>,
}

impl Case {
    /// A random case; `i` cycles through the mask kinds so every kind is covered.
    pub fn random(rng: &mut Rng, i: usize) -> Self {
        let head_dim = [64, 128][rng.below(2)];
        let (q_heads, kv_heads) = [(4, 1), (2, 2), (8, 2), (1, 1)][rng.below(4)];
        let batch = 1 + rng.below(2);
        let q_len = if rng.below(4) == 0 {
            1 + rng.below(4)
        } else {
            1 + rng.below(200)
        };
        let k_len = match rng.below(3) {
            0 => q_len,
            1 => q_len + rng.below(100),
            _ => 1 + rng.below(300),
        };
        let kind = i % 6;
        let causal = matches!(kind, 1 | 3 | 5);
        let (window_left, window_right) = match kind {
            2 => (rng.below(64) as i64, rng.below(16) as i64),
            3 => (rng.below(96) as i64, -1),
            4 => (-1, rng.below(8) as i64),
            _ => (-1, -1),
        };
        let softcap = if kind == 5 || rng.below(5) == 0 {
            5.0 + 45.0 * rng.unit()
        } else {
            0.0
        };
        let key_lens = if rng.below(3) == 0 {
            Some((0..batch).map(|_| rng.below(k_len + 1)).collect())
        } else {
            None
        };
        let scale = if rng.below(2) == 0 {
            1.0 / (head_dim as f64).sqrt()
        } else {
            0.05 + 0.2 * rng.unit()
        };
        Self {
            batch,
            q_heads,
            kv_heads,
            q_len,
            k_len,
            head_dim,
            scale,
            causal,
            window_left,
            window_right,
            softcap,
            key_lens,
            splits: None,
        }
    }

    pub fn params(&self) -> FlashParams {
        FlashParams {
            scale: Some(self.scale),
            causal: self.causal,
            window_left: self.window_left,
            window_right: self.window_right,
            softcap: self.softcap,
            key_lens: self.key_lens.clone(),
            num_splits: self.splits,
            ..FlashParams::default()
        }
    }

    /// Keys `[lo, hi)` that query `i` of `q_len` sees among `k_len` keys.
    pub fn key_range(&self, i: usize, q_len: usize, k_len: usize) -> (usize, usize) {
        let shift = k_len as i64 - q_len as i64;
        let at = i as i64 + shift;
        let mut lo = 0i64;
        let mut hi = k_len as i64;
        if self.causal {
            hi = hi.min(at + 1);
        }
        if self.window_left >= 0 {
            lo = lo.max(at - self.window_left);
        }
        if self.window_right >= 0 {
            hi = hi.min(at + self.window_right + 1);
        }
        (lo.max(0) as usize, hi.max(0) as usize)
    }

    /// One row of attention: `q_row` against keys/values given by index closures.
    fn attend(
        &self,
        q_row: &[f32],
        keys: std::ops::Range<usize>,
        key: impl Fn(usize) -> usize,
        k: &[f32],
        v: &[f32],
        out: &mut [f64],
    ) {
        let d = self.head_dim;
        out.iter_mut().for_each(|o| *o = 0.0);
        if keys.is_empty() {
            return;
        }
        let scores: Vec<f64> = keys
            .clone()
            .map(|j| {
                let kr = &k[key(j)..key(j) + d];
                let dot: f64 = q_row
                    .iter()
                    .zip(kr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let s = dot * self.scale;
                if self.softcap > 0.0 {
                    self.softcap * (s / self.softcap).tanh()
                } else {
                    s
                }
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let total: f64 = w.iter().sum();
        for (j, wj) in keys.zip(&w) {
            let vr = &v[key(j)..key(j) + d];
            for (o, &x) in out.iter_mut().zip(vr) {
                *o += wj / total * x as f64;
            }
        }
    }
}

/// The reference on `[batch, heads, len, head_dim]` tensors.
pub fn reference_padded(case: &Case, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
    let (b, hq, hk, sq, sk, d) = (
        case.batch,
        case.q_heads,
        case.kv_heads,
        case.q_len,
        case.k_len,
        case.head_dim,
    );
    let group = hq / hk;
    let mut out = vec![0.0f64; b * hq * sq * d];
    for bi in 0..b {
        let keys = case.key_lens.as_ref().map_or(sk, |l| l[bi]);
        for h in 0..hq {
            let kvh = h / group;
            for i in 0..sq {
                let (lo, hi) = case.key_range(i, sq, keys);
                let qo = ((bi * hq + h) * sq + i) * d;
                let key = |j: usize| ((bi * hk + kvh) * sk + j) * d;
                case.attend(
                    &q[qo..qo + d],
                    lo..hi.max(lo),
                    key,
                    k,
                    v,
                    &mut out[qo..qo + d],
                );
            }
        }
    }
    out
}

/// The reference on packed `[tokens, heads, head_dim]` tensors.
pub fn reference_varlen(
    case: &Case,
    cu_q: &[usize],
    cu_k: &[usize],
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Vec<f64> {
    let (hq, hk, d) = (case.q_heads, case.kv_heads, case.head_dim);
    let group = hq / hk;
    let mut out = vec![0.0f64; cu_q[cu_q.len() - 1] * hq * d];
    for s in 0..cu_q.len() - 1 {
        let (q0, sq) = (cu_q[s], cu_q[s + 1] - cu_q[s]);
        let (k0, sk) = (cu_k[s], cu_k[s + 1] - cu_k[s]);
        for h in 0..hq {
            let kvh = h / group;
            for i in 0..sq {
                let (lo, hi) = case.key_range(i, sq, sk);
                let qo = ((q0 + i) * hq + h) * d;
                let key = |j: usize| ((k0 + j) * hk + kvh) * d;
                case.attend(
                    &q[qo..qo + d],
                    lo..hi.max(lo),
                    key,
                    k,
                    v,
                    &mut out[qo..qo + d],
                );
            }
        }
    }
    out
}
