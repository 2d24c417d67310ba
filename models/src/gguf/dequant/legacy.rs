//! Plain types and the 32-element block quants (`Q4_0` .. `Q8_0`).
//!
//! Each function decodes whole blocks from `src` into `dst` (`dst.len()` = blocks x block size).
//! The arithmetic follows gguf-py's `dequantize_blocks` operation by operation (f32, no fused
//! multiply-add), which is what makes the results bit-equal.

use half::{bf16, f16};

#[inline]
pub(super) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

pub(super) fn f32s(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub(super) fn f16s(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(super) fn bf16s(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// `d: f16, qs: [u8; 16]`; `y = d * (q - 8)`, low nibbles first.
pub(super) fn q4_0(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = d * ((qs[j] & 0x0F) as i32 - 8) as f32;
            y[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
        }
    }
}

/// `d, m: f16, qs: [u8; 16]`; `y = d * q + m`.
pub(super) fn q4_1(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(20)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            y[j] = d * (qs[j] & 0x0F) as f32 + m;
            y[j + 16] = d * (qs[j] >> 4) as f32 + m;
        }
    }
}

/// `d: f16, qh: u32, qs: [u8; 16]`; bit `j` of `qh` is bit 4 of element `j`; `y = d * (q - 16)`.
pub(super) fn q5_0(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(22)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let lo = (qs[j] & 0x0F) as u32 | ((qh >> j) & 1) << 4;
            let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (lo as i32 - 16) as f32;
            y[j + 16] = d * (hi as i32 - 16) as f32;
        }
    }
}

/// `d, m: f16, qh: u32, qs: [u8; 16]`; `y = d * q + m`.
pub(super) fn q5_1(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(24)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let lo = (qs[j] & 0x0F) as u32 | ((qh >> j) & 1) << 4;
            let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
            y[j] = d * lo as f32 + m;
            y[j + 16] = d * hi as f32 + m;
        }
    }
}

/// `d: f16, qs: [i8; 32]`; `y = q * d`.
pub(super) fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
        let d = f16_at(b, 0);
        for (o, &q) in y.iter_mut().zip(&b[2..34]) {
            *o = (q as i8) as f32 * d;
        }
    }
}
