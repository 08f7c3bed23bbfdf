//! `progress.gif`: the fixed-noise grids of a run, one frame per saved epoch, looping.

use crate::error::{Error, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage, RgbaImage};
use std::path::Path;

/// Encode frames (all the size of the first; others are skipped with an error) as a looping GIF.
pub fn encode(frames: &[RgbImage], frame_ms: u32) -> Result<Vec<u8>> {
    let first = frames
        .first()
        .ok_or_else(|| Error::Invalid("a GIF needs at least one frame".into()))?;
    let (w, h) = first.dimensions();
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut out, 10);
        enc.set_repeat(Repeat::Infinite)
            .map_err(|e| Error::Model(format!("GIF: {e}")))?;
        for (i, f) in frames.iter().enumerate() {
            if f.dimensions() != (w, h) {
                return Err(Error::Invalid(format!(
                    "GIF frame {i} is {}x{}, the first is {w}x{h}",
                    f.width(),
                    f.height()
                )));
            }
            let rgba: RgbaImage = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
            let frame = Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(frame_ms, 1));
            enc.encode_frame(frame)
                .map_err(|e| Error::Model(format!("GIF frame {i}: {e}")))?;
        }
    }
    Ok(out)
}

/// Write the frames to `path` as a GIF.
pub fn write(frames: &[RgbImage], frame_ms: u32, path: &Path) -> Result<()> {
    let bytes = encode(frames, frame_ms).map_err(|e| Error::output(path, e))?;
    crate::error::write_file(path, bytes)
}

/// Number of frames and size of a GIF (for checks and tests).
pub fn inspect(bytes: &[u8]) -> Result<(usize, u32, u32)> {
    use image::AnimationDecoder;
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::Model(format!("GIF: {e}")))?;
    let frames = dec
        .into_frames()
        .collect_frames()
        .map_err(|e| Error::Model(format!("GIF: {e}")))?;
    let (w, h) = frames
        .first()
        .map(|f| f.buffer().dimensions())
        .unwrap_or((0, 0));
    Ok((frames.len(), w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_count_and_size() {
        let frames: Vec<RgbImage> = (0..6)
            .map(|i| RgbImage::from_pixel(34, 18, image::Rgb([i * 40, 255 - i * 40, 7])))
            .collect();
        let bytes = encode(&frames, 200).unwrap();
        assert_eq!(inspect(&bytes).unwrap(), (6, 34, 18));
        assert!(encode(&[], 200).is_err());
        let mixed = [frames[0].clone(), RgbImage::new(5, 5)];
        assert!(
            encode(&mixed, 200)
                .unwrap_err()
                .to_string()
                .contains("frame 1")
        );
    }
}
