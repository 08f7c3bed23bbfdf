//! Turning a [`CamMap`] into files a person can look at: bilinear upsampling to the original
//! image's size, a jet colour map, alpha blending, an enlarged copy of small images, and CSV.

use super::CamMap;
use crate::error::{Error, Result, write_file};
use image::{ImageFormat, Rgb, RgbImage, imageops::FilterType};
use serde::Serialize;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Opacity of the heat map in overlays.
pub const DEFAULT_ALPHA: f32 = 0.45;
/// Images whose long side is below this also get an enlarged overlay.
pub const SMALL_SIDE: u32 = 128;
/// Smallest long side of the enlarged overlay.
pub const LARGE_SIDE: u32 = 256;

/// The files written for one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CamFiles {
    /// `<stem>.cam.png`: the map over the image, at the image's own size.
    pub overlay: PathBuf,
    /// `<stem>.cam.large.png`: the same, enlarged, for images under [`SMALL_SIDE`] pixels.
    pub large: Option<PathBuf>,
    /// `<stem>.cam.csv`: the raw map at the layer's resolution.
    pub csv: PathBuf,
}

/// Bilinear resize of the map to `width`×`height` (pixel centres aligned, edges clamped, as
/// OpenCV's and PyTorch's `align_corners=False`). Row-major.
pub fn upsample(map: &CamMap, width: usize, height: usize) -> Vec<f32> {
    let (mw, mh) = (map.width, map.height);
    if mw == 0 || mh == 0 {
        return vec![0.0; width * height];
    }
    let axis = |dst: usize, src_len: usize, dst_len: usize| -> (usize, usize, f32) {
        let s = ((dst as f32 + 0.5) * src_len as f32 / dst_len as f32 - 0.5)
            .clamp(0.0, (src_len - 1) as f32);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(src_len - 1);
        (i0, i1, s - i0 as f32)
    };
    let xs: Vec<_> = (0..width).map(|x| axis(x, mw, width)).collect();
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let (y0, y1, fy) = axis(y, mh, height);
        for &(x0, x1, fx) in &xs {
            let top = map.at(x0, y0) * (1.0 - fx) + map.at(x1, y0) * fx;
            let bottom = map.at(x0, y1) * (1.0 - fx) + map.at(x1, y1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The jet colour map: 0 → dark blue, 0.5 → green, 1 → dark red.
pub fn jet(v: f32) -> [u8; 3] {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let ramp =
        |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ramp(3.0), ramp(2.0), ramp(1.0)]
}

fn blend(base: &RgbImage, heat: &[f32], alpha: f32) -> RgbImage {
    let alpha = alpha.clamp(0.0, 1.0);
    let w = base.width() as usize;
    RgbImage::from_fn(base.width(), base.height(), |x, y| {
        let colour = jet(heat[y as usize * w + x as usize]);
        let px = base.get_pixel(x, y).0;
        Rgb([0, 1, 2]
            .map(|c| ((1.0 - alpha) * px[c] as f32 + alpha * colour[c] as f32).round() as u8))
    })
}

/// The map upsampled to the image's size, coloured and blended over it.
pub fn overlay(image: &RgbImage, map: &CamMap, alpha: f32) -> RgbImage {
    let heat = upsample(map, image.width() as usize, image.height() as usize);
    blend(image, &heat, alpha)
}

/// For an image under [`SMALL_SIDE`] pixels on its long side: the image scaled up by a whole
/// factor (nearest neighbour, so its pixels stay visible) to at least [`LARGE_SIDE`], with the
/// map upsampled smoothly to that size on top. `None` for larger images.
pub fn enlarged_overlay(image: &RgbImage, map: &CamMap, alpha: f32) -> Option<RgbImage> {
    let long = image.width().max(image.height());
    if long == 0 || long >= SMALL_SIDE {
        return None;
    }
    let factor = LARGE_SIDE.div_ceil(long);
    let big = image::imageops::resize(
        image,
        image.width() * factor,
        image.height() * factor,
        FilterType::Nearest,
    );
    Some(overlay(&big, map, alpha))
}

fn png_bytes(image: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Cursor::new(Vec::new());
    image
        .write_to(&mut buf, ImageFormat::Png)
        .map_err(|e| Error::output(path, format!("cannot encode PNG: {e}")))?;
    Ok(buf.into_inner())
}

/// Write `<stem>.cam.png`, `<stem>.cam.large.png` (small images only) and `<stem>.cam.csv`
/// into `dir` (created when missing). `image` is the original, full-size image.
pub fn write_outputs(
    map: &CamMap,
    image: &RgbImage,
    dir: &Path,
    stem: &str,
    alpha: f32,
) -> Result<CamFiles> {
    let overlay_path = dir.join(format!("{stem}.cam.png"));
    write_file(
        &overlay_path,
        png_bytes(&overlay(image, map, alpha), &overlay_path)?,
    )?;
    let large = match enlarged_overlay(image, map, alpha) {
        Some(big) => {
            let path = dir.join(format!("{stem}.cam.large.png"));
            write_file(&path, png_bytes(&big, &path)?)?;
            Some(path)
        }
        None => None,
    };
    let csv = dir.join(format!("{stem}.cam.csv"));
    write_file(&csv, map.to_csv())?;
    Ok(CamFiles {
        overlay: overlay_path,
        large,
        csv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::CamMethod;

    fn map(width: usize, height: usize, values: Vec<f32>) -> CamMap {
        CamMap {
            width,
            height,
            values,
            target: 1,
            target_name: "FAKE".into(),
            p_fake: 0.7,
            label: "FAKE".into(),
            layer: "stage2".into(),
            method: CamMethod::GradCam,
        }
    }

    #[test]
    fn upsampling_keeps_constant_maps_and_the_peak_cell() {
        let flat = map(2, 2, vec![0.3; 4]);
        assert!(upsample(&flat, 7, 5).iter().all(|v| (v - 0.3).abs() < 1e-6));
        // A single hot cell of a 4x4 map lands on the matching 8x8 block of a 32x32 image.
        let mut values = vec![0.0; 16];
        values[2 * 4 + 1] = 1.0; // x = 1, y = 2
        let up = upsample(&map(4, 4, values), 32, 32);
        assert_eq!(up.len(), 32 * 32);
        let i = crate::explain::argmax(&up);
        let (x, y) = (i % 32, i / 32);
        assert!(
            (8..16).contains(&x) && (16..24).contains(&y),
            "peak at ({x}, {y})"
        );
        assert!(up.iter().all(|v| (0.0..=1.0).contains(v)));
        // Identity at the same size.
        let m = map(3, 2, vec![0.0, 0.5, 1.0, 0.25, 0.75, 0.1]);
        assert_eq!(upsample(&m, 3, 2), m.values);
    }

    #[test]
    fn jet_runs_from_blue_through_green_to_red() {
        let [r, g, b] = jet(0.0);
        assert!(b > 100 && r == 0 && g == 0);
        let [r, g, b] = jet(0.5);
        assert!(g == 255 && r < 200 && b < 200);
        let [r, g, b] = jet(1.0);
        assert!(r > 100 && g == 0 && b == 0);
        assert_eq!(jet(f32::NAN), jet(0.0));
        assert_eq!(jet(7.0), jet(1.0));
    }

    #[test]
    fn overlays_keep_the_original_size_and_small_images_get_a_large_copy() {
        let img = RgbImage::from_pixel(40, 24, Rgb([100, 100, 100]));
        let m = map(8, 8, (0..64).map(|i| i as f32 / 63.0).collect());
        let o = overlay(&img, &m, 0.5);
        assert_eq!(o.dimensions(), (40, 24));
        // Blending: half grey, half colour.
        let px = o.get_pixel(0, 0).0;
        let c = jet(upsample(&m, 40, 24)[0]);
        for k in 0..3 {
            assert!((px[k] as i32 - ((100.0 + c[k] as f32) / 2.0).round() as i32).abs() <= 1);
        }
        let big = enlarged_overlay(&img, &m, 0.5).unwrap();
        assert_eq!(big.dimensions(), (280, 168));
        assert!(enlarged_overlay(&RgbImage::new(200, 100), &m, 0.5).is_none());

        let dir = std::env::temp_dir().join(format!("synthscan-render-{}", std::process::id()));
        let files = write_outputs(&m, &img, &dir, "pic", 0.5).unwrap();
        assert_eq!(files.overlay, dir.join("pic.cam.png"));
        assert_eq!(files.large, Some(dir.join("pic.cam.large.png")));
        let back = image::open(&files.overlay).unwrap();
        assert_eq!((back.width(), back.height()), (40, 24));
        let back = image::open(files.large.as_ref().unwrap()).unwrap();
        assert_eq!((back.width(), back.height()), (280, 168));
        let csv = std::fs::read_to_string(&files.csv).unwrap();
        assert_eq!(csv.lines().count(), 8);
        assert!(csv.lines().all(|l| l.split(',').count() == 8));
        let big_img = RgbImage::new(160, 130);
        let files = write_outputs(&m, &big_img, &dir, "big", 0.5).unwrap();
        assert_eq!(files.large, None);
        assert!(!dir.join("big.cam.large.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
