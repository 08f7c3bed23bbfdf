//! How a decoded image of any size becomes a model's square input: the one place an image is
//! brought to a network, for every model, member, command and the server.

use serde::{Deserialize, Serialize};

/// How an image of any size becomes the model's square input; stored in the model file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preprocess {
    /// Resize the whole image to the input size (aspect ratio not kept).
    #[default]
    Resize,
    /// A centre crop of the input size at the image's native resolution.
    CenterCrop,
}

/// The square input the model sees for a decoded image: resized whole, or a centre crop at
/// native resolution (upscaled first when the image is smaller than `size`).
pub fn prepare(img: &image::RgbImage, size: u32, how: Preprocess) -> image::RgbImage {
    match how {
        Preprocess::Resize => super::decode::resize_square(img, size),
        Preprocess::CenterCrop => {
            let (w, h) = img.dimensions();
            let short = w.min(h);
            let img = if short < size {
                let scale = size as f64 / short as f64;
                let (nw, nh) = (
                    ((w as f64 * scale).round() as u32).max(size),
                    ((h as f64 * scale).round() as u32).max(size),
                );
                image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle)
            } else {
                img.clone()
            };
            let (w, h) = img.dimensions();
            image::imageops::crop_imm(&img, (w - size) / 2, (h - size) / 2, size, size).to_image()
        }
    }
}
