//! A decoder for the `invisible-watermark` package's `dwtDct` method (imwatermark 0.2.0,
//! `maxDct.py`), as embedded by the Stable Diffusion 1.x / 2.x / SDXL reference scripts
//! and FLUX reference code.
//!
//! What the Python decoder does, and this one exactly mirrors:
//! 1. `cv2.cvtColor(bgr, COLOR_BGR2YUV)` on 8-bit pixels (OpenCV's fixed-point formula);
//! 2. only channel 1 (U) is used: the default scales are `[0, 36, 36]` and the loop runs
//!    over `range(2)`, so Y (scale 0) is skipped and V is never reached;
//! 3. a one-level Haar DWT (`pywt.dwt2`) of the top-left `rows//4*4 × cols//4*4` crop; the
//!    approximation band is split into 4×4 blocks in row-major order;
//! 4. in each block (no DCT is taken, despite the name), the largest-magnitude coefficient
//!    other than the first is found; its bit is `(|v| mod 36) > 18`;
//! 5. block *n* votes for payload bit `n mod len`; a bit is 1 when its mean vote × 255 > 127.
//!
//! The bit agreement with each known payload is reported; images under 256×256 pixels are
//! refused, as the Python package does.

use crate::{Signal, SignalKind, Strength, Verdict};

/// Agreement at or above this is reported as a decoded watermark (AI). Chance is ~0.5;
/// unwatermarked camera photos of the fixtures stay under 0.7, a mark embedded in a busy
/// photo can fall to ~0.8 (the fixture `f11e2a7b…` is expected UNKNOWN at 0.79).
pub const THRESHOLD: f64 = 0.90;
/// Agreement at or above this (and under the threshold) is reported as a weak,
/// inconclusive match.
pub const WEAK: f64 = 0.75;

const SCALE: f64 = 36.0;
const BLOCK: usize = 4;

/// The known payloads: name, who embeds it, bits (most significant first).
pub fn payloads() -> Vec<(&'static str, &'static str, Vec<bool>)> {
    let bytes_bits = |b: &[u8]| -> Vec<bool> {
        b.iter()
            .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1 == 1))
            .collect()
    };
    let sdxl: Vec<bool> = (0..48)
        .rev()
        .map(|i| (0xB3EC_907B_B19Eu64 >> i) & 1 == 1)
        .collect();
    vec![
        (
            "StableDiffusionV1",
            "Stable Diffusion 1.x",
            bytes_bits(b"StableDiffusionV1"),
        ),
        ("SDV2", "Stable Diffusion 2.x", bytes_bits(b"SDV2")),
        (
            "SDXL",
            "Stable Diffusion XL / FLUX (48 bits 0xB3EC907BB19E)",
            sdxl,
        ),
    ]
}

/// OpenCV's 8-bit BGR→YUV U channel: `U = descale((B − Y)·8061 + 128·2¹⁴, 14)`.
pub fn u_channel(r: u8, g: u8, b: u8) -> u8 {
    let descale = |x: i32| (x + (1 << 13)) >> 14;
    let y = descale(i32::from(b) * 1868 + i32::from(g) * 9617 + i32::from(r) * 4899);
    descale((i32::from(b) - y) * 8061 + (128 << 14)).clamp(0, 255) as u8
}

/// Per-block votes (0 or 1) of an RGB image, in the decoder's block order.
/// `None` when the image is under 256×256 pixels.
pub fn block_votes(rgb: &[u8], width: usize, height: usize) -> Option<Vec<u8>> {
    if width * height < 256 * 256 || rgb.len() < width * height * 3 {
        return None;
    }
    let (rows, cols) = (height / 4 * 4, width / 4 * 4);
    let u = |y: usize, x: usize| {
        let p = (y * width + x) * 3;
        f64::from(u_channel(rgb[p], rgb[p + 1], rgb[p + 2]))
    };
    // Haar approximation band, summed in pywt's order: c·x[2k+1] + c·x[2k] per axis.
    let c = std::f64::consts::FRAC_1_SQRT_2;
    let (ca_rows, ca_cols) = (rows / 2, cols / 2);
    let mut ca = vec![0.0f64; ca_rows * ca_cols];
    for i in 0..ca_rows {
        for j in 0..ca_cols {
            let col = |x: usize| c * u(2 * i + 1, x) + c * u(2 * i, x);
            ca[i * ca_cols + j] = c * col(2 * j + 1) + c * col(2 * j);
        }
    }
    let mut votes = Vec::with_capacity((ca_rows / BLOCK) * (ca_cols / BLOCK));
    for bi in 0..ca_rows / BLOCK {
        for bj in 0..ca_cols / BLOCK {
            let at = |k: usize| ca[(bi * BLOCK + k / BLOCK) * ca_cols + bj * BLOCK + k % BLOCK];
            let mut best = 1;
            for k in 2..BLOCK * BLOCK {
                if at(k).abs() > at(best).abs() {
                    best = k;
                }
            }
            votes.push(u8::from(at(best).abs() % SCALE > 0.5 * SCALE));
        }
    }
    Some(votes)
}

/// The `len` payload bits the votes decode to.
pub fn decode_bits(votes: &[u8], len: usize) -> Vec<bool> {
    let mut sum = vec![0usize; len];
    let mut n = vec![0usize; len];
    for (k, &v) in votes.iter().enumerate() {
        sum[k % len] += usize::from(v);
        n[k % len] += 1;
    }
    // np.array(l).mean() * 255 > 127; an empty list gives NaN, i.e. false.
    sum.iter()
        .zip(&n)
        .map(|(&s, &n)| n > 0 && (s as f64 / n as f64) * 255.0 > 127.0)
        .collect()
}

/// Fraction of bits equal.
pub fn agreement(a: &[bool], b: &[bool]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / b.len().max(1) as f64
}

/// Each payload's name, embedder and bit agreement, for an RGB image.
pub fn agreements(
    rgb: &[u8],
    width: usize,
    height: usize,
) -> Option<Vec<(&'static str, &'static str, f64)>> {
    let votes = block_votes(rgb, width, height)?;
    Some(
        payloads()
            .into_iter()
            .map(|(name, who, bits)| {
                (
                    name,
                    who,
                    agreement(&decode_bits(&votes, bits.len()), &bits),
                )
            })
            .collect(),
    )
}

/// The best-matching payload and its agreement, for an RGB image.
pub fn best_match(
    rgb: &[u8],
    width: usize,
    height: usize,
) -> Option<(&'static str, &'static str, f64)> {
    agreements(rgb, width, height)?
        .into_iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
}

/// A watermark signal: AI at or above [`THRESHOLD`], an inconclusive note above [`WEAK`].
pub fn signal(rgb: &[u8], width: usize, height: usize) -> Option<Signal> {
    let (name, who, agree) = best_match(rgb, width, height)?;
    let rounded = (agree * 1000.0).round() / 1000.0;
    let (says, detail) = if agree >= THRESHOLD {
        (
            Verdict::Ai,
            format!(
                "invisible-watermark dwtDct payload {name} ({who}) decoded at {rounded:.3} bit agreement"
            ),
        )
    } else if agree >= WEAK {
        (
            Verdict::None,
            format!(
                "weak partial match of the {name} payload ({rounded:.3} bit agreement, under the \
                 {THRESHOLD} threshold): inconclusive"
            ),
        )
    } else {
        return None;
    };
    let mut s = Signal::new(SignalKind::Watermark, says, Strength::Statistical, detail);
    s.bit_agreement = Some(rounded);
    s.payload = Some(name.to_string());
    s.generator = Some(who.to_string());
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bits() {
        let p = payloads();
        assert_eq!(p[0].2.len(), 136);
        assert_eq!(p[1].2.len(), 32);
        assert_eq!(p[2].2.len(), 48);
        // 'S' = 0x53 = 01010011
        assert_eq!(
            &p[1].2[..8],
            &[false, true, false, true, false, false, true, true]
        );
        // 0xB = 1011
        assert_eq!(&p[2].2[..4], &[true, false, true, true]);
    }

    #[test]
    fn u_channel_matches_opencv_values() {
        // OpenCV's fixed-point formula, worked by hand.
        assert_eq!(u_channel(0, 0, 0), 128);
        assert_eq!(u_channel(255, 255, 255), 128);
        assert_eq!(u_channel(0, 0, 255), 239); // pure blue: Y = 29, 128 + 0.492·226 = 239.2
        assert_eq!(u_channel(255, 0, 0), 91); // pure red: Y = 76, 128 − 0.492·76 = 90.6
    }

    #[test]
    fn decode_bits_votes_by_position() {
        let votes = [1, 0, 1, 0, 1, 1];
        assert_eq!(decode_bits(&votes, 2), vec![true, false]);
        assert_eq!(decode_bits(&votes, 4), vec![true, true, true, false]);
        assert_eq!(agreement(&[true, false], &[true, true]), 0.5);
    }

    #[test]
    fn small_images_are_refused_and_flat_ones_are_not_marked() {
        assert!(block_votes(&[0; 3 * 100 * 100], 100, 100).is_none());
        let grey = vec![128u8; 3 * 320 * 240];
        let (_, _, agree) = best_match(&grey, 320, 240).expect("big enough");
        assert!(agree < THRESHOLD, "{agree}");
        assert!(signal(&grey, 320, 240).is_none_or(|s| s.says != Verdict::Ai));
    }

    #[test]
    fn truncated_pixel_buffer_is_refused() {
        assert!(block_votes(&[0; 10], 300, 300).is_none());
    }
}
