//! `?explain=gradcam`: the Grad-CAM map of an upload through [`crate::explain`], blended over
//! the image and returned as a base64 PNG.

use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use crate::explain::{self, CamMethod, CamTarget, render::DEFAULT_ALPHA};
use image::{RgbImage, imageops::FilterType};
use serde::Serialize;
use std::io::Cursor;

/// Longest side of the returned overlay; larger uploads are scaled down first.
pub const OVERLAY_MAX_SIDE: u32 = 512;
/// Smaller uploads are scaled up (nearest neighbour) to at least this, so a 32×32 overlay is
/// big enough to look at.
pub const OVERLAY_MIN_SIDE: u32 = 256;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Explained {
    pub method: &'static str,
    pub layer: String,
    /// The raw map's size (the layer's resolution).
    pub map_width: usize,
    pub map_height: usize,
    pub overlay_width: u32,
    pub overlay_height: u32,
    /// PNG of the map over the image, base64 (standard alphabet, padded).
    pub overlay_png: String,
}

/// The image at a size worth looking at: long side between the two bounds.
fn display_size(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let long = w.max(h);
    if long > OVERLAY_MAX_SIDE {
        let s = OVERLAY_MAX_SIDE as f64 / long as f64;
        let (nw, nh) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        image::imageops::resize(image, nw, nh, FilterType::Triangle)
    } else if long < OVERLAY_MIN_SIDE {
        let f = OVERLAY_MIN_SIDE.div_ceil(long);
        image::imageops::resize(image, w * f, h * f, FilterType::Nearest)
    } else {
        image.clone()
    }
}

/// Grad-CAM of `image` for the FAKE class at each model's block of `layers` (resolved once at
/// start-up): the model's map, or the mean of an ensemble's.
pub fn gradcam(ensemble: &Ensemble, image: &RgbImage, layers: &[String]) -> Result<Explained> {
    let map = explain::EnsembleCam::new(ensemble, layers, CamMethod::GradCam)?
        .map(image, CamTarget::Fake)?;
    let shown = explain::overlay(&display_size(image), &map, DEFAULT_ALPHA);
    let mut png = Cursor::new(Vec::new());
    shown
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::Model(format!("cannot encode the overlay: {e}")))?;
    Ok(Explained {
        method: CamMethod::GradCam.name(),
        layer: map.layer.clone(),
        map_width: map.width,
        map_height: map.height,
        overlay_width: shown.width(),
        overlay_height: shown.height(),
        overlay_png: crate::report::base64(&png.into_inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_size_bounds_the_long_side() {
        let small = RgbImage::new(32, 16);
        let s = display_size(&small);
        assert_eq!((s.width(), s.height()), (256, 128));
        let big = RgbImage::new(2048, 1024);
        let b = display_size(&big);
        assert_eq!((b.width(), b.height()), (512, 256));
    }
}
