//! The k-quants: super-blocks of 256 elements (`Q2_K` .. `Q8_K`).
//!
//! Layouts and arithmetic follow gguf-py's `dequantize_blocks` (itself ggml's
//! `dequantize_row_q*_K`): scales are multiplied first, then the quant, then the minimum is
//! subtracted, each step rounded to f32.

use super::legacy::f16_at;

const QK_K: usize = 256;

/// `scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16`; 2-bit quants, 16 sub-blocks of 16.
pub(super) fn q2_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(84)) {
        let scales = &b[0..16];
        let qs = &b[16..80];
        let d = f16_at(b, 80);
        let dmin = f16_at(b, 82);
        for (e, o) in y.iter_mut().enumerate() {
            let sc = scales[e / 16];
            let dl = d * (sc & 0x0F) as f32;
            let ml = dmin * (sc >> 4) as f32;
            let (g, s, l) = (e / 128, (e % 128) / 32, e % 32);
            let q = (qs[g * 32 + l] >> (2 * s)) & 3;
            *o = dl * q as f32 - ml;
        }
    }
}

/// `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16`; 3-bit quants, 6-bit signed scales.
pub(super) fn q3_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(110)) {
        let hmask = &b[0..32];
        let qs = &b[32..96];
        let sc = &b[96..108];
        let d = f16_at(b, 108);
        let mut scales = [0f32; 16];
        for (k, s) in scales.iter_mut().enumerate() {
            let low = if k < 8 { sc[k] & 0x0F } else { sc[k - 8] >> 4 };
            let high = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
            *s = (((low | high << 4) as i8) - 32) as f32;
        }
        for (e, o) in y.iter_mut().enumerate() {
            let (g, s, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = ((qs[g * 32 + l] >> (2 * s)) & 3) as i8;
            let hbit = (hmask[l] >> (e / 32)) & 1;
            // The high bit set means no offset; clear means -4.
            let q = low - (((hbit ^ 1) << 2) as i8);
            *o = (d * scales[e / 16]) * q as f32;
        }
    }
}

/// The 6-bit scales and minimums of `Q4_K`/`Q5_K` (ggml's `get_scale_min_k4`).
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[j + 4] & 0x3F;
    }
    for j in 4..8 {
        sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
        mn[j] = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// `d, dmin: f16, scales: [u8; 12], qs: [u8; 128]`; 8 sub-blocks of 32.
pub(super) fn q4_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(144)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let (sc, mn) = scale_min_k4(&b[4..16]);
        let qs = &b[16..144];
        for (j, yj) in y.chunks_exact_mut(32).enumerate() {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            let (g, shift) = (j / 2, 4 * (j % 2));
            for (l, o) in yj.iter_mut().enumerate() {
                let q = (qs[g * 32 + l] >> shift) & 0x0F;
                *o = d1 * q as f32 - m1;
            }
        }
    }
}

/// `d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`; 5-bit quants.
pub(super) fn q5_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(176)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let (sc, mn) = scale_min_k4(&b[4..16]);
        let qh = &b[16..48];
        let qs = &b[48..176];
        for (j, yj) in y.chunks_exact_mut(32).enumerate() {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            let (g, shift) = (j / 2, 4 * (j % 2));
            for (l, o) in yj.iter_mut().enumerate() {
                let q = ((qs[g * 32 + l] >> shift) & 0x0F) | ((qh[l] >> j) & 1) << 4;
                *o = d1 * q as f32 - m1;
            }
        }
    }
}

/// `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`; 6-bit quants, 16 sub-blocks of 16.
pub(super) fn q6_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(210)) {
        let ql = &b[0..128];
        let qh = &b[128..192];
        let scales = &b[192..208];
        let d = f16_at(b, 208);
        for (e, o) in y.iter_mut().enumerate() {
            let g = e / 128;
            let r = e % 128;
            let low = (ql[g * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            let high = (qh[g * 32 + r % 32] >> (2 * (r / 32))) & 3;
            let q = ((low | high << 4) as i8) - 32;
            *o = (d * (scales[e / 16] as i8) as f32) * q as f32;
        }
    }
}

/// `d: f32, qs: [i8; 256], bsums: [i16; 16]`; `y = d * q` (ggml's `dequantize_row_q8_K`).
pub(super) fn q8_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(292)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (o, &q) in y.iter_mut().zip(&b[4..260]) {
            *o = d * (q as i8) as f32;
        }
    }
}
