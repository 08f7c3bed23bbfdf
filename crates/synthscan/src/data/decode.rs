//! The only place that turns bytes into pixels: format sniffing, size limits, RGB, resize.

use crate::error::{Error, Result};
use image::{ImageDecoder, ImageReader, RgbImage, imageops::FilterType};
use std::io::Cursor;
use std::path::Path;

/// Largest width or height accepted, so a decompression bomb cannot exhaust memory.
pub const MAX_DIMENSION: u32 = 12_000;
/// Upper bound on what one decode may allocate.
pub const MAX_DECODE_BYTES: u64 = 600 * 1024 * 1024;

/// Most pixels (width × height) one decode accepts by default: every image within
/// [`MAX_DIMENSION`] on both sides.
pub const MAX_PIXELS: u64 = MAX_DIMENSION as u64 * MAX_DIMENSION as u64;

/// Decode any supported format (JPEG, PNG, WebP, BMP, GIF) from bytes into RGB.
/// `path` only names the source in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    decode_rgb_within(bytes, path, MAX_PIXELS)
}

/// Width and height read from the image's header alone (no pixel is decoded or allocated),
/// refused when a side exceeds [`MAX_DIMENSION`] or the pixel count exceeds `max_pixels`.
pub fn header_dimensions(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<(u32, u32)> {
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("file is empty".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(decode_err("unrecognised image format".into()));
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| decode_err(e.to_string()))?;
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit: MAX_DIMENSION,
        });
    }
    if width as u64 * height as u64 > max_pixels {
        return Err(Error::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok((width, height))
}

/// Most bytes per pixel a supported format decodes into (16-bit RGBA PNG).
const MAX_NATIVE_BYTES_PER_PIXEL: u64 = 8;

/// Bytes that decoding an image of `native` bytes in its file's own colour type and `pixels`
/// pixels takes at its peak: the decoder's output, as much again for the decoder's own buffers,
/// the RGB copy made from it ([`decode_rgb_within`]) and a byte a pixel for what follows
/// (resizing, provenance). Measured: one 40-megapixel JPEG upload raises the server's peak RSS
/// by 370 MB (9.25 bytes a pixel); this says 10.
fn decode_peak(native: u64, pixels: u64) -> u64 {
    2 * native + 4 * pixels
}

/// What [`decode_rgb_within`] takes at most for an image of `max_pixels` pixels in any
/// supported format.
pub fn worst_decode_bytes(max_pixels: u64) -> u64 {
    let pixels = max_pixels.min(MAX_PIXELS);
    decode_peak(MAX_NATIVE_BYTES_PER_PIXEL * pixels, pixels)
}

/// Width, height and the memory [`decode_rgb_within`] will take for this image, from its header
/// alone (nothing is decoded); the same refusals as [`header_dimensions`]. The server weighs
/// each upload with it against its decode budget before decoding.
pub fn decode_bytes(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<(u32, u32, u64)> {
    let (width, height) = header_dimensions(bytes, path, max_pixels)?;
    let pixels = width as u64 * height as u64;
    let native = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .map_or(MAX_NATIVE_BYTES_PER_PIXEL * pixels, |d| d.total_bytes());
    Ok((width, height, decode_peak(native, pixels)))
}

/// [`decode_rgb`] with a pixel-count limit of `max_pixels`, checked from the header first.
pub fn decode_rgb_within(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<RgbImage> {
    header_dimensions(bytes, path, max_pixels)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(image.to_rgb8())
}

/// Resize to a square `size`×`size` input (no-op when already that size).
pub fn resize_square(image: &RgbImage, size: u32) -> RgbImage {
    if image.width() == size && image.height() == size {
        return image.clone();
    }
    image::imageops::resize(image, size, size, FilterType::Triangle)
}

/// Read, decode and resize one file into `size`×`size` RGB bytes (HWC).
pub fn load_rgb(path: &Path, size: u32) -> Result<Vec<u8>> {
    Ok(resize_square(&read_rgb(path)?, size).into_raw())
}

/// Read and decode a file at its own size (errors name the file).
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    decode_rgb(&crate::error::read_file(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_and_resizes_png() {
        let img = decode_rgb(&png_bytes(40, 20), Path::new("a.png")).unwrap();
        assert_eq!((img.width(), img.height()), (40, 20));
        let small = resize_square(&img, 32);
        assert_eq!(small.as_raw().len(), 32 * 32 * 3);
    }

    #[test]
    fn empty_and_garbage_name_the_file() {
        let err = decode_rgb(&[], Path::new("empty.jpg")).unwrap_err();
        assert!(err.to_string().contains("empty.jpg"), "{err}");
        let err = decode_rgb(b"hello, not an image", Path::new("text.png")).unwrap_err();
        assert!(err.to_string().contains("text.png"), "{err}");
    }

    #[test]
    fn truncated_png_is_an_error() {
        let bytes = png_bytes(64, 64);
        let err = decode_rgb(&bytes[..bytes.len() / 2], Path::new("cut.png")).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }

    #[test]
    fn oversized_header_is_refused_before_decoding() {
        // A BMP header claiming 20000x20000 pixels, with no pixel data behind it.
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&(54u32).to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&(54u32).to_le_bytes());
        bmp.extend_from_slice(&(40u32).to_le_bytes());
        bmp.extend_from_slice(&(20_000i32).to_le_bytes());
        bmp.extend_from_slice(&(20_000i32).to_le_bytes());
        bmp.extend_from_slice(&(1u16).to_le_bytes());
        bmp.extend_from_slice(&(24u16).to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        let err = decode_rgb(&bmp, Path::new("bomb.bmp")).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }

    #[test]
    fn pixel_count_limit_is_read_from_the_header() {
        let bytes = png_bytes(40, 20);
        assert_eq!(
            header_dimensions(&bytes, Path::new("a.png"), 800).unwrap(),
            (40, 20)
        );
        let err = header_dimensions(&bytes, Path::new("a.png"), 799).unwrap_err();
        assert!(matches!(err, Error::TooManyPixels { .. }), "{err}");
        assert!(err.to_string().contains("a.png"), "{err}");
        let err = decode_rgb_within(&bytes, Path::new("a.png"), 799).unwrap_err();
        assert!(matches!(err, Error::TooManyPixels { .. }), "{err}");
    }
}
