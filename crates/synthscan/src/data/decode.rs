//! The only place that turns bytes into pixels: format sniffing, size limits, EXIF orientation,
//! RGB, scaled JPEG decoding for photographs, resize.

use crate::error::{Error, Result};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, imageops::FilterType};
use std::io::Cursor;
use std::path::Path;

/// Largest width or height accepted, so a decompression bomb cannot exhaust memory.
pub const MAX_DIMENSION: u32 = 12_000;
/// Upper bound on what one decode may allocate.
pub const MAX_DECODE_BYTES: u64 = 600 * 1024 * 1024;

/// Most pixels (width × height) one decode accepts by default: every image within
/// [`MAX_DIMENSION`] on both sides.
pub const MAX_PIXELS: u64 = MAX_DIMENSION as u64 * MAX_DIMENSION as u64;

/// Images of at most this many pixels (2048 × 2048) are always decoded whole, even when a model
/// needs fewer: every image generator's native output fits (so provenance's watermark reader sees
/// such an image exactly as the generator wrote it), and decoding one is cheap. Larger JPEGs —
/// camera photographs of 12 to 50 megapixels — are decoded at 1/2, 1/4 or 1/8 scale in the DCT
/// domain when the model needs fewer pixels ([`Need`]).
pub const SCALED_MIN_PIXELS: u64 = 2048 * 2048;

/// How many pixels a decode must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Every pixel: a native-resolution crop, Grad-CAM, perturbations, training.
    All,
    /// At least this many pixels on each side: the image is resized whole to a square of this
    /// side (aspect ratio not kept), so a decode at a reduced scale that keeps both sides at
    /// least this long loses nothing the resize would keep.
    Side(u32),
}

/// A decoded image, upright (EXIF orientation applied), in RGB.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The pixels: the whole image, or a reduction of it by `1 / scale`.
    pub image: RgbImage,
    /// The file's image size, upright: what the decision rule and routing see, whatever
    /// `scale` was.
    pub width: u32,
    pub height: u32,
    /// 1 (every pixel), 2, 4 or 8: the DCT-domain reduction the JPEG was decoded at.
    pub scale: u32,
    raw: Raw,
}

/// The pixels exactly as the format decoded them (before orientation and RGB conversion).
#[derive(Clone, Debug)]
enum Raw {
    /// Not kept (not asked for, or decoded at a reduced scale).
    None,
    /// The same as [`Decoded::image`] (RGB, no orientation to apply): not copied.
    Same,
    Own(DynamicImage),
}

impl Decoded {
    /// Call `f` with the pixels exactly as the format decoded them (before orientation and
    /// RGB conversion) when decoded whole with `keep_raw` ([`decode_within`]), else `None`:
    /// provenance's pixel readers take them rather than decoding the file a second time. Not
    /// copied where they are the upright RGB image itself.
    pub fn with_raw<T>(&mut self, f: impl FnOnce(Option<&DynamicImage>) -> T) -> T {
        match &self.raw {
            Raw::None => f(None),
            Raw::Own(raw) => f(Some(raw)),
            Raw::Same => {
                let img = DynamicImage::ImageRgb8(std::mem::take(&mut self.image));
                let out = f(Some(&img));
                self.image = img.into_rgb8();
                out
            }
        }
    }
}

/// The DCT-domain reduction (1, 2, 4 or 8) for a `width`×`height` JPEG that must keep `need`:
/// the largest whose result keeps both sides at least the needed side; 1 for images of at most
/// [`SCALED_MIN_PIXELS`] and whenever every pixel is needed.
pub fn jpeg_scale(width: u32, height: u32, need: Need) -> u32 {
    let Need::Side(side) = need else {
        return 1;
    };
    if u64::from(width) * u64::from(height) <= SCALED_MIN_PIXELS {
        return 1;
    }
    let short = width.min(height);
    [8, 4, 2]
        .into_iter()
        .find(|&d| short.div_ceil(d) >= side.max(1))
        .unwrap_or(1)
}

/// Decode any supported format (JPEG, PNG, WebP, BMP, GIF) from bytes into RGB, upright.
/// `path` only names the source in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    decode_rgb_within(bytes, path, MAX_PIXELS)
}

/// Width and height read from the image's header alone (no pixel is decoded or allocated),
/// refused when a side exceeds [`MAX_DIMENSION`] or the pixel count exceeds `max_pixels`.
/// These are the stored sides, before EXIF orientation.
pub fn header_dimensions(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<(u32, u32)> {
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("file is empty".into()));
    }
    if let Some(name) = unsupported_format(bytes) {
        return Err(decode_err(format!("{name} is not supported by this build")));
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

/// The name of an image format, recognised from its first bytes, that this build cannot decode:
/// HEIC/HEIF and AVIF (their decoders need C libraries, libheif and dav1d, that this build does
/// not link) and JPEG XL.
pub fn unsupported_format(bytes: &[u8]) -> Option<&'static str> {
    // ISO base media (HEIF family): a `ftyp` box whose major or compatible brands say what it is.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let end = size.clamp(12, bytes.len().min(256));
        let brands: Vec<&[u8]> = std::iter::once(&bytes[8..12])
            .chain(bytes[16.min(end)..end].chunks_exact(4))
            .collect();
        let has = |names: &[&[u8]]| brands.iter().any(|b| names.contains(b));
        if has(&[b"avif", b"avis"]) {
            return Some("AVIF");
        }
        if has(&[
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
        ]) {
            return Some("HEIC");
        }
        return None;
    }
    if bytes.starts_with(b"\xff\x0a") || bytes.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Some("JPEG XL");
    }
    None
}

/// [`decode_rgb`] with a pixel-count limit of `max_pixels`, checked from the header first.
pub fn decode_rgb_within(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<RgbImage> {
    Ok(decode_within(bytes, path, max_pixels, Need::All, false)?.image)
}

/// Decode `bytes` keeping what `need` asks for (a large JPEG that needs fewer pixels is decoded
/// at a reduced scale: [`jpeg_scale`]), upright, in RGB; the pixel-count limit `max_pixels` is
/// checked from the header first. `keep_raw` keeps the whole decode's own pixels in
/// [`Decoded::raw`] (only when decoded whole).
pub fn decode_within(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
    need: Need,
    keep_raw: bool,
) -> Result<Decoded> {
    let (w, h) = header_dimensions(bytes, path, max_pixels)?;
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    let scale = match reader.format() {
        Some(image::ImageFormat::Jpeg) => jpeg_scale(w, h, need),
        _ => 1,
    };
    if scale > 1 {
        match decode_jpeg_scaled(bytes, w, h, scale) {
            Ok(Some(d)) => return Ok(d),
            // A colour model the scaled decoder does not convert (CMYK, 16 bits): whole.
            Ok(None) => {}
            Err(reason) => return Err(decode_err(reason)),
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits.clone());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_err(e.to_string()))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    limits
        .reserve(decoder.total_bytes())
        .map_err(|e| decode_err(e.to_string()))?;
    let image = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(e.to_string()))?;
    let same =
        matches!(image, DynamicImage::ImageRgb8(_)) && orientation == Orientation::NoTransforms;
    let raw = match (keep_raw, same) {
        (false, _) => Raw::None,
        (true, true) => Raw::Same,
        (true, false) => Raw::Own(image.clone()),
    };
    let mut rgb = DynamicImage::ImageRgb8(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    });
    rgb.apply_orientation(orientation);
    let image = rgb.into_rgb8();
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        image,
        scale: 1,
        raw,
    })
}

/// A baseline or progressive JPEG decoded at `1 / scale` in the DCT domain (jpeg-decoder's
/// scaled IDCT), upright; `Ok(None)` for a colour model this path does not convert.
fn decode_jpeg_scaled(
    bytes: &[u8],
    width: u32,
    height: u32,
    scale: u32,
) -> std::result::Result<Option<Decoded>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.set_max_decoding_buffer_size(MAX_DECODE_BYTES as usize);
    let want = |side: u32| side.div_ceil(scale).min(u32::from(u16::MAX)) as u16;
    let (sw, sh) = decoder
        .scale(want(width), want(height))
        .map_err(|e| e.to_string())?;
    // Told before decoding: a colour model this path does not convert costs nothing here.
    let grey = match decoder.info().ok_or("no JPEG frame header")?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        _ => return Ok(None),
    };
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let rgb = match grey {
        false => RgbImage::from_raw(sw, sh, pixels),
        true => RgbImage::from_raw(sw, sh, pixels.iter().flat_map(|&v| [v, v, v]).collect()),
    }
    .ok_or("the scaled JPEG decode returned too few pixels")?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    let swapped = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (width, height) = if swapped {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Some(Decoded {
        image: img.into_rgb8(),
        width,
        height,
        scale,
        raw: Raw::None,
    }))
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
    fn heic_and_avif_are_named_and_tiff_decodes() {
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let err = decode_rgb(heic, Path::new("a.heic"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HEIC is not supported by this build"), "{err}");
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        let err = decode_rgb(avif, Path::new("a.avif"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AVIF is not supported by this build"), "{err}");
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 5]));
        let mut tiff = Cursor::new(Vec::new());
        img.write_to(&mut tiff, image::ImageFormat::Tiff).unwrap();
        assert_eq!(decode_rgb(tiff.get_ref(), Path::new("a.tif")).unwrap(), img);
    }

    fn jpeg_bytes(img: &RgbImage, exif_orientation: Option<u16>) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        let jpeg = out.into_inner();
        let Some(o) = exif_orientation else {
            return jpeg;
        };
        // An APP1 Exif segment (little-endian TIFF, one IFD entry: Orientation) after SOI.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        tiff.extend_from_slice(&o.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut with = jpeg[..2].to_vec();
        with.extend_from_slice(&[0xff, 0xe1]);
        with.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        with.extend_from_slice(&app1);
        with.extend_from_slice(&jpeg[2..]);
        with
    }

    #[test]
    fn a_large_jpeg_is_decoded_scaled_only_when_the_model_needs_fewer_pixels() {
        // 2400x1800 (4.3 MP): 1/8 keeps 300x225, both >= 224.
        assert_eq!(jpeg_scale(2400, 1800, Need::Side(224)), 8);
        assert_eq!(jpeg_scale(2400, 1800, Need::Side(300)), 4);
        assert_eq!(jpeg_scale(2400, 1800, Need::All), 1);
        // At most 4 MP: always whole (every generator's own output size).
        assert_eq!(jpeg_scale(2048, 2048, Need::Side(32)), 1);
        assert_eq!(jpeg_scale(512, 512, Need::Side(32)), 1);
        assert_eq!(jpeg_scale(4000, 3000, Need::Side(2000)), 1);
        let img = RgbImage::from_fn(2400, 1800, |x, y| {
            image::Rgb([(x / 10) as u8, (y / 8) as u8, ((x + y) / 20) as u8])
        });
        let bytes = jpeg_bytes(&img, None);
        let p = Path::new("big.jpg");
        let d = decode_within(&bytes, p, MAX_PIXELS, Need::Side(224), true).unwrap();
        assert_eq!((d.width, d.height, d.scale), (2400, 1800, 8));
        assert_eq!(d.image.dimensions(), (300, 225));
        let mut d = d;
        assert!(d.with_raw(|raw| raw.is_none()));
        // The reduction resizes to what the whole decode resizes to, within JPEG noise.
        let whole = decode_within(&bytes, p, MAX_PIXELS, Need::All, true).unwrap();
        assert_eq!((whole.scale, whole.image.dimensions()), (1, (2400, 1800)));
        let (a, b) = (
            resize_square(&d.image, 224),
            resize_square(&whole.image, 224),
        );
        let diff = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.as_raw().len() as f64;
        assert!(diff < 2.0, "mean difference {diff}");
        // A greyscale JPEG comes out as RGB at the same reduction.
        let grey = image::GrayImage::from_fn(2400, 1800, |x, y| image::Luma([(x ^ y) as u8]));
        let mut out = Cursor::new(Vec::new());
        grey.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        let d = decode_within(out.get_ref(), p, MAX_PIXELS, Need::Side(224), false).unwrap();
        assert_eq!((d.scale, d.image.dimensions()), (8, (300, 225)));
        assert!(d.image.pixels().all(|px| px[0] == px[1] && px[1] == px[2]));
    }

    #[test]
    fn exif_orientation_is_applied_whole_and_scaled() {
        let img = RgbImage::from_fn(2600, 1700, |x, y| {
            image::Rgb([if x < 1300 { 250 } else { 5 }, (y / 8) as u8, 90])
        });
        // 6: rotate 90 degrees clockwise to display; the upright image is 1700x2600.
        let bytes = jpeg_bytes(&img, Some(6));
        let p = Path::new("rotated.jpg");
        for need in [Need::All, Need::Side(224)] {
            let d = decode_within(&bytes, p, MAX_PIXELS, need, false).unwrap();
            assert_eq!((d.width, d.height), (1700, 2600), "{need:?}");
            let (w, h) = d.image.dimensions();
            assert!(h > w, "{need:?}: {w}x{h}");
            // The left half (bright red) is now the top.
            assert!(d.image.get_pixel(w / 2, h / 8)[0] > 200, "{need:?}");
            assert!(d.image.get_pixel(w / 2, h * 7 / 8)[0] < 50, "{need:?}");
        }
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
