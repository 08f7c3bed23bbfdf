//! Pixel-level readers: the invisible watermark and A1111 "stealth PNG info".
//! Images are decoded with the `image` crate under hard limits.

use crate::container::Format;
use crate::{Signal, Verdict, limits, watermark};
use image::{DynamicImage, GenericImageView, ImageReader, Limits};
use std::io::Cursor;

/// Whether the pixel readers read files of `format` (PNG, JPEG, WebP).
pub fn readable(format: Format) -> bool {
    image_format(format).is_some()
}

fn image_format(format: Format) -> Option<image::ImageFormat> {
    match format {
        Format::Png => Some(image::ImageFormat::Png),
        Format::Jpeg => Some(image::ImageFormat::Jpeg),
        Format::Webp => Some(image::ImageFormat::WebP),
        _ => None,
    }
}

/// Whether decoded pixels are within [`limits::MAX_PIXELS`].
pub fn within_cap(img: &DynamicImage) -> Result<(), String> {
    let (w, h) = img.dimensions();
    if u64::from(w) * u64::from(h) > limits::MAX_PIXELS {
        return Err(format!("{w}x{h} is over the pixel cap: pixels not read"));
    }
    Ok(())
}

/// Decode the pixels of a PNG, JPEG or WebP under the crate's limits.
pub fn decode(bytes: &[u8], format: Format) -> Result<Option<DynamicImage>, String> {
    let Some(fmt) = image_format(format) else {
        return Ok(None);
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut lim = Limits::default();
    lim.max_alloc = Some(limits::MAX_DECODE_ALLOC);
    lim.max_image_width = Some(60_000);
    lim.max_image_height = Some(60_000);
    reader.limits(lim);
    let img = reader
        .decode()
        .map_err(|e| format!("pixels not decoded: {e}"))?;
    within_cap(&img)?;
    Ok(Some(img))
}

/// Watermark and stealth-info signals of decoded pixels.
pub fn signals(img: &DynamicImage) -> Vec<Signal> {
    let mut out = Vec::new();
    if let Some(s) = stealth_signal(img) {
        out.push(s);
    }
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if let Some(s) = watermark::signal(rgb.as_raw(), w, h) {
        out.push(s);
    }
    out
}

const SIGS: [(&[u8; 15], bool, bool); 4] = [
    (b"stealth_pnginfo", true, false),
    (b"stealth_pngcomp", true, true),
    (b"stealth_rgbinfo", false, false),
    (b"stealth_rgbcomp", false, true),
];

/// The least significant bits of the image in the stealth order: columns left to right,
/// each top to bottom; from alpha, or from R, G, B in turn.
struct LsbReader<'a> {
    img: &'a DynamicImage,
    alpha: bool,
    pos: u64,
}

impl LsbReader<'_> {
    fn bit(&mut self) -> Option<u8> {
        let (w, h) = self.img.dimensions();
        let per_pixel = if self.alpha { 1 } else { 3 };
        let pixel = self.pos / per_pixel;
        let (x, y) = (pixel / u64::from(h), pixel % u64::from(h));
        if x >= u64::from(w) {
            return None;
        }
        let p = self.img.get_pixel(x as u32, y as u32).0;
        let ch = if self.alpha {
            3
        } else {
            (self.pos % per_pixel) as usize
        };
        self.pos += 1;
        Some(p[ch] & 1)
    }

    fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        (0..n)
            .map(|_| (0..8).try_fold(0u8, |acc, _| Some(acc << 1 | self.bit()?)))
            .collect()
    }
}

/// A1111's "stealth PNG info" (sd-webui-stealth-pnginfo): a signature, a 32-bit bit count,
/// then the parameters (gzip when `…comp`), hidden in pixel LSBs.
pub fn stealth_signal(img: &DynamicImage) -> Option<Signal> {
    let has_alpha = img.color().has_alpha();
    for alpha in [true, false] {
        if alpha && !has_alpha {
            continue;
        }
        let mut r = LsbReader { img, alpha, pos: 0 };
        let sig = r.bytes(15)?;
        let Some(&(name, _, compressed)) =
            SIGS.iter().find(|s| s.0 == sig.as_slice() && s.1 == alpha)
        else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let len_bytes = r.bytes(4)?;
        let bits = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let text = read_payload(&mut r, bits as usize, compressed);
        let field = format!(
            "stealth PNG info ({name}, {})",
            if alpha { "alpha LSB" } else { "RGB LSB" }
        );
        let value = text.unwrap_or_else(|e| format!("(payload unreadable: {e})"));
        let mut s = Signal::metadata(
            Verdict::Ai,
            &field,
            &value,
            Some("AUTOMATIC1111 stealth PNG info"),
        );
        s.detail =
            format!("{field}: generation parameters hidden in the pixels by an A1111 extension");
        return Some(s);
    }
    None
}

fn read_payload(r: &mut LsbReader<'_>, bits: usize, compressed: bool) -> Result<String, String> {
    if !bits.is_multiple_of(8) || bits / 8 > limits::MAX_TEXT_BYTES {
        return Err(format!("implausible length of {bits} bits"));
    }
    let data = r.bytes(bits / 8).ok_or("runs past the image")?;
    if !compressed {
        return Ok(String::from_utf8_lossy(&data).into_owned());
    }
    let raw = gunzip(&data)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Inflate a gzip member (RFC 1952) with a size cap.
pub fn gunzip(d: &[u8]) -> Result<Vec<u8>, String> {
    if d.len() < 18 || d[0] != 0x1f || d[1] != 0x8b || d[2] != 8 {
        return Err("not gzip".into());
    }
    let flags = d[3];
    let mut at = 10;
    if flags & 4 != 0 {
        let x = d.get(at..at + 2).ok_or("truncated")?;
        at += 2 + usize::from(u16::from_le_bytes([x[0], x[1]]));
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let rest = d.get(at..).ok_or("truncated")?;
            at += rest.iter().position(|&c| c == 0).ok_or("truncated")? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let body = d.get(at..).ok_or("truncated")?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(body, limits::MAX_TEXT_BYTES)
        .map_err(|e| format!("{:?}", e.status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    /// An RGBA image whose alpha LSBs carry `bytes` in stealth order.
    fn stealth_image(bytes: &[u8], w: u32, h: u32) -> DynamicImage {
        let mut img = RgbaImage::from_pixel(w, h, Rgba([10, 20, 30, 254]));
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        for (k, bit) in bits.iter().enumerate() {
            let (x, y) = (k as u32 / h, k as u32 % h);
            img.put_pixel(x, y, Rgba([10, 20, 30, 254 | bit]));
        }
        DynamicImage::ImageRgba8(img)
    }

    #[test]
    fn reads_stealth_pnginfo() {
        let text = b"a cat\nSteps: 20, Sampler: Euler";
        let mut payload = b"stealth_pnginfo".to_vec();
        payload.extend_from_slice(&((text.len() * 8) as u32).to_be_bytes());
        payload.extend_from_slice(text);
        let s = stealth_signal(&stealth_image(&payload, 40, 30)).expect("found");
        assert_eq!(s.says, Verdict::Ai);
        assert_eq!(s.value.as_deref(), Some("a cat\nSteps: 20, Sampler: Euler"));
    }

    #[test]
    fn stealth_with_a_lying_length_is_recorded() {
        let mut payload = b"stealth_pngcomp".to_vec();
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        let s = stealth_signal(&stealth_image(&payload, 40, 30)).expect("signature found");
        assert!(s.value.unwrap_or_default().contains("unreadable"));
    }

    #[test]
    fn plain_images_have_no_stealth_info() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 255])));
        assert!(stealth_signal(&img).is_none());
    }

    #[test]
    fn gunzip_roundtrip_and_garbage() {
        let deflated = miniz_oxide::deflate::compress_to_vec(b"hello hello", 6);
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(&deflated);
        gz.extend_from_slice(&[0; 8]);
        assert_eq!(gunzip(&gz).as_deref(), Ok(b"hello hello".as_slice()));
        assert!(gunzip(b"nope").is_err());
        assert!(
            gunzip(&[
                0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0, 0, 0, 0, 0, 0
            ])
            .is_err()
        );
    }

    #[test]
    fn garbage_pixels_are_an_error() {
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0", Format::Png).is_err());
        assert!(decode(b"GIF89a", Format::Gif).is_ok_and(|o| o.is_none()));
    }
}
